-- An incident's evidence: the events its findings point at (the sample event ids in each
-- finding's evidence), with the finding that points at each. An event two findings point at
-- is listed once per finding. The snapshot holds the whole story (the query its notification
-- prints); these are the events each detector picked as its example. For the original record
-- add events.raw.
--
-- Parameters (in this order):
--   1. incident_id: the incident's id (from the page, or the incidents table)
WITH incident AS (
    SELECT finding_id
    FROM incidents
    CROSS JOIN UNNEST(finding_ids) AS f (finding_id)
    WHERE incident_id = ?
),
pointed AS (
    SELECT fi.finding_id, fi.detector, fi.severity, fi.first_seen, fi.last_seen, ev.event_id
    FROM findings fi
    JOIN incident i ON fi.finding_id = i.finding_id
    CROSS JOIN UNNEST(CAST(json_extract(fi.evidence, '$.event_ids') AS ARRAY(VARCHAR))) AS ev (event_id)
)
SELECT p.finding_id,
       p.detector,
       p.severity,
       e.event_time,
       e.source,
       e.action,
       e.actor_principal,
       e.actor_tenant,
       e.target_tenant,
       e.outcome,
       e.source_ip,
       e.resource,
       e.event_id
FROM pointed p
JOIN events e
  ON e.event_id = p.event_id
 -- a finding's events lie between its first and last seen: the days read are theirs
 AND e."date" BETWEEN CAST(CAST(p.first_seen AS DATE) AS VARCHAR)
                  AND CAST(CAST(p.last_seen AS DATE) AS VARCHAR)
 AND e.event_time BETWEEN p.first_seen AND p.last_seen
ORDER BY e.event_time, e.event_id, p.finding_id

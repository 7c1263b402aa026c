-- A tenant's incidents: those whose tenants (the target tenants and the actor's) include it,
-- by the day their dedup period starts, with their severity, whether and how they paged, what
-- they count, and the latest verdict people gave (null: open).
--
-- Parameters (in this order):
--   1. tenant: the tenant id, matched against incidents.tenants
--   2. first_day: 'YYYY-MM-DD', the first period day read
--   3. last_day: 'YYYY-MM-DD', the last period day read (inclusive)
WITH latest AS (
    SELECT incident_id, max_by(verdict, closed_at) AS verdict, max(closed_at) AS closed_at
    FROM verdicts
    GROUP BY incident_id
)
SELECT i.incident_id,
       i."date" AS period_day,
       i.severity,
       i.paged_severity,
       i.detector,
       i.title,
       i.actor,
       i.actor_tenant,
       i.first_seen,
       i.last_seen,
       i.finding_count,
       i.event_count,
       v.verdict,
       v.closed_at
FROM incidents i
LEFT JOIN latest v ON v.incident_id = i.incident_id
WHERE contains(i.tenants, ?)
  AND i."date" BETWEEN ? AND ?
ORDER BY i.first_seen, i.incident_id

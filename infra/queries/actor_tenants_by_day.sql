-- An actor's tenants over time: per day, each tenant a principal or session acted as (its
-- actor tenant) and each tenant whose data it acted on (the target tenant), with the events,
-- the denials among them, and the first and last event. A null tenant is one no strategy
-- resolved.
--
-- Parameters (in this order):
--   1. actor: a principal (role session ARN, API user) or a session (access key id, token
--      fingerprint), matched against actor_principal and actor_session
--   2. first_day: 'YYYY-MM-DD', the first event day read
--   3. last_day: 'YYYY-MM-DD', the last event day read (inclusive)
SELECT "date" AS day,
       actor_tenant,
       target_tenant,
       count(*) AS events,
       count_if(outcome = 'denied') AS denied,
       min(event_time) AS first_seen,
       max(event_time) AS last_seen
FROM events
WHERE ? IN (actor_principal, actor_session)
  AND "date" BETWEEN ? AND ?
GROUP BY "date", actor_tenant, target_tenant
ORDER BY day, actor_tenant NULLS LAST, target_tenant NULLS LAST

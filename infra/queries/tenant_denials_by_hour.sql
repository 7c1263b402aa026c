-- A tenant's denials per hour: the requests on the tenant's data (its target tenant) that were
-- refused, per hour and source, how many came from outside the tenant (another actor tenant,
-- or none resolved), and how many principals and addresses made them.
--
-- Parameters (in this order):
--   1. tenant: the tenant id, matched against target_tenant
--   2. first_day: 'YYYY-MM-DD', the first event day read
--   3. last_day: 'YYYY-MM-DD', the last event day read (inclusive)
SELECT date_trunc('hour', event_time) AS hour,
       source,
       count(*) AS denials,
       count_if(actor_tenant IS DISTINCT FROM target_tenant) AS from_outside,
       count(DISTINCT actor_principal) AS principals,
       count(DISTINCT source_ip) AS addresses
FROM events
WHERE target_tenant = ?
  AND outcome = 'denied'
  AND "date" BETWEEN ? AND ?
GROUP BY date_trunc('hour', event_time), source
ORDER BY hour, source

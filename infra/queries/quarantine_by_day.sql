-- What was quarantined and why, per day and input folder: for each reason, the entries and the
-- records they stand for, the inputs they came from, and an example input and detail. The day
-- is the input's delivery day (the date= partition of its record in ingested), so inputs whose
-- key has no day (recorded under prefix=) are not counted here; the quarantine table has them
-- all. The raw bytes are in quarantine.raw.
--
-- Parameters (in this order):
--   1. first_day: 'YYYY-MM-DD', the first delivery day read
--   2. last_day: 'YYYY-MM-DD', the last delivery day read (inclusive)
WITH inputs AS (
    SELECT DISTINCT uri, "date"
    FROM ingested
    WHERE "date" BETWEEN ? AND ?
)
SELECT i."date" AS day,
       regexp_replace(q.input_uri, '/[^/]*$', '') AS folder,
       q.reason,
       count(*) AS entries,
       sum(q.records) AS records,
       count(DISTINCT q.input_uri) AS inputs,
       min(q.input_uri) AS example_input,
       min(q.detail) AS example_detail
FROM quarantine q
JOIN inputs i ON i.uri = q.input_uri
GROUP BY i."date", regexp_replace(q.input_uri, '/[^/]*$', ''), q.reason
ORDER BY day, folder, q.reason

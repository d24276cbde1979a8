-- title: Time from diagnosis to first medication
-- question: For each patient diagnosed with the condition, how many days passed until the first medication request?
-- table: conditions and medication_requests (ViewDefinition views)
-- note: the diagnosis is the earliest onset of the code; patients without a later prescription have NULL days
-- param condition_system (varchar, default http://snomed.info/sct): code system of Condition.code ('' = any)
-- param condition_code (varchar, default 44054006): the condition's code (44054006 = Diabetes mellitus type 2)
WITH params AS (SELECT 'http://snomed.info/sct' AS condition_system, '44054006' AS condition_code),
diagnosis AS (
  SELECT c.patient_id, min(from_iso8601_timestamp(c.onset_datetime)) AS diagnosed
  FROM conditions AS c
  CROSS JOIN params
  WHERE c.code = params.condition_code
    AND (params.condition_system = '' OR c.code_system = params.condition_system)
  GROUP BY c.patient_id
),
first_medication AS (
  SELECT d.patient_id, min(from_iso8601_timestamp(m.authored_on)) AS first_prescribed
  FROM diagnosis AS d
  JOIN medication_requests AS m
    ON m.patient_id = d.patient_id
    AND from_iso8601_timestamp(m.authored_on) >= d.diagnosed
  GROUP BY d.patient_id
)
SELECT
  d.patient_id,
  d.diagnosed,
  f.first_prescribed,
  date_diff('day', d.diagnosed, f.first_prescribed) AS days_to_first_medication
FROM diagnosis AS d
LEFT JOIN first_medication AS f ON f.patient_id = d.patient_id
ORDER BY d.patient_id

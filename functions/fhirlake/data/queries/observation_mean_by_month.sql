-- title: Mean value of an observation by month
-- question: Across the population, what was the mean value of one observation code in each month?
-- table: observations (ViewDefinition view)
-- param code_system (varchar, default http://loinc.org): code system of Observation.code
-- param code (varchar, default 39156-5): the observation code (39156-5 = Body mass index)
WITH params AS (SELECT 'http://loinc.org' AS code_system, '39156-5' AS code)
SELECT
  CAST(date_trunc('month', from_iso8601_timestamp(o.effective_datetime)) AS date) AS month,
  avg(CAST(o.value_quantity AS double)) AS mean_value,
  count(*) AS observations,
  count(DISTINCT o.patient_id) AS patients,
  min(o.value_unit) AS unit
FROM observations AS o
CROSS JOIN params
WHERE o.code_system = params.code_system
  AND o.code = params.code
  AND o.value_quantity IS NOT NULL
  AND o.effective_datetime IS NOT NULL
GROUP BY CAST(date_trunc('month', from_iso8601_timestamp(o.effective_datetime)) AS date)
ORDER BY month

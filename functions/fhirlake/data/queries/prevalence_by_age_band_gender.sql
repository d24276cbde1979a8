-- title: Prevalence of a condition by age band and gender
-- question: On a given date, what share of each age band and gender had the condition active?
-- table: conditions and patient_demographics (ViewDefinition views)
-- note: age in whole years on as_of; bands 0-17, 18-39, 40-64, 65+
-- param condition_system (varchar, default http://snomed.info/sct): code system of Condition.code ('' = any)
-- param condition_code (varchar, default 15777000): the condition's code (15777000 = Prediabetes)
-- param as_of (date, default 2019-01-01): the date the population and the active conditions are taken on
WITH params AS (SELECT 'http://snomed.info/sct' AS condition_system, '15777000' AS condition_code, DATE '2019-01-01' AS as_of),
population AS (
  SELECT
    d.id AS patient_id,
    coalesce(d.gender, 'unknown') AS gender,
    date_diff('year', from_iso8601_date(d.birth_date), params.as_of) AS age
  FROM patient_demographics AS d
  CROSS JOIN params
  WHERE from_iso8601_date(d.birth_date) <= params.as_of
),
banded AS (
  SELECT
    patient_id,
    gender,
    CASE WHEN age < 18 THEN '0-17' WHEN age < 40 THEN '18-39' WHEN age < 65 THEN '40-64' ELSE '65+' END AS age_band
  FROM population
),
cases AS (
  SELECT DISTINCT c.patient_id
  FROM conditions AS c
  CROSS JOIN params
  WHERE c.code = params.condition_code
    AND (params.condition_system = '' OR c.code_system = params.condition_system)
    AND CAST(from_iso8601_timestamp(c.onset_datetime) AS date) <= params.as_of
    AND (
      c.abatement_datetime IS NULL
      OR CAST(from_iso8601_timestamp(c.abatement_datetime) AS date) > params.as_of
    )
)
SELECT
  b.age_band,
  b.gender,
  count(*) AS population,
  count(c.patient_id) AS cases,
  CAST(count(c.patient_id) AS double) / count(*) AS prevalence
FROM banded AS b
LEFT JOIN cases AS c ON c.patient_id = b.patient_id
GROUP BY b.age_band, b.gender
ORDER BY b.age_band, b.gender

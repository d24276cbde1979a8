-- title: Prevalence of a condition by month
-- question: Each month, what share of the patients born by then had the condition active?
-- table: conditions and patient_demographics (ViewDefinition views)
-- note: a condition is active in a month from its onset until its abatement (open when not abated)
-- param condition_system (varchar, default http://snomed.info/sct): code system of Condition.code ('' = any)
-- param condition_code (varchar, default 15777000): the condition's code (15777000 = Prediabetes)
-- param first_month (date, default 2000-01-01): first month of the series
-- param last_month (date, default 2019-12-01): last month of the series
WITH params AS (SELECT 'http://snomed.info/sct' AS condition_system, '15777000' AS condition_code, DATE '2000-01-01' AS first_month, DATE '2019-12-01' AS last_month),
months AS (
  SELECT month
  FROM params
  CROSS JOIN UNNEST(sequence(params.first_month, params.last_month, INTERVAL '1' MONTH)) AS t (month)
),
population AS (
  SELECT id AS patient_id, from_iso8601_date(birth_date) AS born
  FROM patient_demographics
  WHERE birth_date IS NOT NULL
),
cases AS (
  SELECT
    c.patient_id,
    CAST(from_iso8601_timestamp(c.onset_datetime) AS date) AS onset,
    CAST(from_iso8601_timestamp(c.abatement_datetime) AS date) AS abatement
  FROM conditions AS c
  CROSS JOIN params
  WHERE c.code = params.condition_code
    AND (params.condition_system = '' OR c.code_system = params.condition_system)
    AND c.onset_datetime IS NOT NULL
)
SELECT
  CAST(m.month AS date) AS month,
  count(DISTINCT p.patient_id) AS population,
  count(DISTINCT c.patient_id) AS cases,
  CAST(count(DISTINCT c.patient_id) AS double) / count(DISTINCT p.patient_id) AS prevalence
FROM months AS m
JOIN population AS p ON p.born < date_add('month', 1, m.month)
LEFT JOIN cases AS c
  ON c.patient_id = p.patient_id
  AND c.onset < date_add('month', 1, m.month)
  AND (c.abatement IS NULL OR c.abatement >= m.month)
GROUP BY m.month
ORDER BY month

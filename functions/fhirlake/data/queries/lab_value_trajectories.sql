-- title: Lab value trajectories per patient
-- question: How did each patient's HbA1c (LOINC 4548-4) and BMI (LOINC 39156-5) change over time?
-- table: observations (ViewDefinition view: one row per Observation, value_quantity flattened)
-- param codes (array(varchar), default 4548-4,39156-5): LOINC codes of the observations to follow
WITH params AS (SELECT ARRAY['4548-4', '39156-5'] AS codes)
SELECT
  o.patient_id,
  o.code,
  o.display,
  from_iso8601_timestamp(o.effective_datetime) AS effective,
  CAST(o.value_quantity AS double) AS value,
  o.value_unit AS unit,
  row_number() OVER (
    PARTITION BY o.patient_id, o.code ORDER BY from_iso8601_timestamp(o.effective_datetime), o.id
  ) AS measurement,
  CAST(o.value_quantity AS double) - lag(CAST(o.value_quantity AS double)) OVER (
    PARTITION BY o.patient_id, o.code ORDER BY from_iso8601_timestamp(o.effective_datetime), o.id
  ) AS change_since_previous
FROM observations AS o
CROSS JOIN params
WHERE o.code_system = 'http://loinc.org'
  AND contains(params.codes, o.code)
  AND o.value_quantity IS NOT NULL
ORDER BY o.patient_id, o.code, effective, o.id

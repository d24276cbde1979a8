-- title: Latest lab value per patient (nested observation table)
-- question: What is each patient's most recent value of one lab test, and is that result final?
-- table: observation (nested, current versions): code.coding, valueQuantity and the lossless resource_json
-- param code_system (varchar, default http://loinc.org): code system of Observation.code
-- param code (varchar, default 4548-4): the lab test code (4548-4 = Hemoglobin A1c/Hemoglobin.total in Blood)
WITH params AS (SELECT 'http://loinc.org' AS code_system, '4548-4' AS code),
ranked AS (
  SELECT
    o.patient_id,
    o.code.coding[1].display AS display,
    from_iso8601_timestamp(o.effectiveDateTime) AS effective,
    o.valueQuantity.value AS value,
    o.valueQuantity.unit AS unit,
    json_extract_scalar(o.resource_json, '$.status') AS status,
    row_number() OVER (
      PARTITION BY o.patient_id ORDER BY from_iso8601_timestamp(o.effectiveDateTime) DESC, o.id
    ) AS recency
  FROM observation AS o
  CROSS JOIN params
  WHERE any_match(o.code.coding, c -> c.system = params.code_system AND c.code = params.code)
)
SELECT patient_id, display, effective, value, unit, status
FROM ranked
WHERE recency = 1
ORDER BY patient_id

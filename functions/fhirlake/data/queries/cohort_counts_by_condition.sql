-- title: Cohort counts by condition
-- question: How many distinct patients have each condition code, and how many of them have it active?
-- table: condition (nested, current versions): every coding of Condition.code counts, UNNEST over code.coding
-- param min_patients (integer, default 1): leave out codes with fewer patients than this
WITH params AS (SELECT 1 AS min_patients)
SELECT
  coding.system AS code_system,
  coding.code AS code,
  min(coding.display) AS display,
  count(DISTINCT c.patient_id) AS patients,
  count(DISTINCT CASE WHEN c.clinicalStatus.coding[1].code = 'active' THEN c.patient_id END) AS active_patients
FROM condition AS c
CROSS JOIN UNNEST(c.code.coding) AS coding
CROSS JOIN params
GROUP BY coding.system, coding.code, params.min_patients
HAVING count(DISTINCT c.patient_id) >= params.min_patients
ORDER BY patients DESC, code_system, code

"""The analytics path end to end, over real HTTP against the local runtime.

FHIR API write -> DynamoDB stream -> lake function (Parquet + Glue) -> /_analytics/sql (DuckDB in place
of Athena) and /_analytics/trend: the same handlers and wiring as in AWS.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from tests.integration.fhir_http import FhirHttp

pytestmark = pytest.mark.http

BMI = {"system": "http://loinc.org", "code": "39156-5", "display": "Body Mass Index"}
# Locally the stream is polled continuously (AWS batches for up to 60 s), but the lake function works
# through the stream in order: in the suite, this worker's runtime may first have to write the thousands of
# resources an earlier module loaded (~5 s after the search oracle's load on a quiet machine, more under
# load). The product's target is 5 minutes.
FRESHNESS_SECONDS = 120


def post_sql(fhir: FhirHttp, statement: str) -> Any:
    return fhir.post("_analytics/sql", raw=statement.encode(), headers={"Content-Type": "text/plain"})


def sql(fhir: FhirHttp, statement: str) -> dict[str, Any]:
    response = post_sql(fhir, statement)
    assert response.status_code == 200, response.text
    return response.json()


def eventually(fhir: FhirHttp, statement: str, expected: list[list[Any]]) -> list[list[Any]]:
    """The rows once the lake caught up (a type's table appears with its first write)."""
    deadline = time.monotonic() + FRESHNESS_SECONDS
    answer: Any = None
    while time.monotonic() < deadline:
        response = post_sql(fhir, statement)
        answer = response.json()
        if response.status_code == 200 and answer["rows"] == expected:
            return answer["rows"]
        time.sleep(0.5)
    raise AssertionError(f"after {FRESHNESS_SECONDS}s the lake answers {answer}, not {expected}")


def observation(patient: str, value: str, when: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [BMI]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": when,
        "valueQuantity": {"value": float(value), "unit": "kg/m2", "system": "http://unitsofmeasure.org"},
    }


@pytest.fixture(scope="module")
def patient(fhir: FhirHttp) -> str:
    pid = f"lake-{uuid.uuid4().hex[:12]}"
    response = fhir.put(
        f"Patient/{pid}",
        {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1970-05-01"},
    )
    assert response.status_code == 201, response.text
    return pid


def test_writes_reach_the_lake_and_updates_and_deletes_are_reflected(fhir: FhirHttp, patient: str) -> None:
    ids = []
    for value, when in (("24.5", "2020-01-10"), ("26.0", "2021-01-10")):
        response = fhir.post("Observation", observation(patient, value, when))
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    current = (
        "SELECT id, version_id, valueQuantity.value FROM observation "
        f"WHERE patient_id = '{patient}' ORDER BY effectiveDateTime"
    )
    eventually(fhir, current, [[ids[0], 1, 24.5], [ids[1], 1, 26.0]])

    changed = observation(patient, "27.25", "2021-01-10") | {"id": ids[1]}
    assert fhir.put(f"Observation/{ids[1]}", changed).status_code == 200
    assert fhir.delete(f"Observation/{ids[0]}").status_code in (200, 204)
    eventually(fhir, current, [[ids[1], 2, 27.25]])

    history = sql(
        fhir,
        "SELECT id, version_id, deleted FROM observation_history "
        f"WHERE patient_id = '{patient}' OR id = '{ids[0]}' ORDER BY id, version_id",
    )["rows"]
    assert sorted(map(tuple, history)) == sorted(
        [(ids[0], 1, False), (ids[0], 2, True), (ids[1], 1, False), (ids[1], 2, False)]
    )
    # The shipped SQL on FHIR view follows the same current state.
    eventually(
        fhir,
        f"SELECT code, value_quantity, value_unit FROM observations WHERE patient_id = '{patient}'",
        [["39156-5", 27.25, "kg/m2"]],
    )


def test_patient_trend_is_a_png_chart_through_the_gateway(fhir: FhirHttp, patient: str) -> None:
    fhir.post("Observation", observation(patient, "25.0", "2019-06-01"))
    response = fhir.get(
        "_analytics/trend",
        headers={"Accept": "image/png"},
        patient=patient,
        code="http://loinc.org|39156-5",
        format="png",
    )
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "image/png"
    assert response.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert response.headers["Cache-Control"] == "no-store"  # one patient's values: PHI
    html = fhir.get("_analytics/trend", patient=patient, code="http://loinc.org|39156-5", format="html")
    assert html.status_code == 200 and "25" in html.text and "http://" not in html.text.replace(
        "http://www.w3.org/2000/svg", ""
    )


def test_bad_analytics_requests_get_operation_outcomes(fhir: FhirHttp) -> None:
    write = post_sql(fhir, "DELETE FROM patient")
    assert write.status_code == 400 and write.json()["resourceType"] == "OperationOutcome"
    unknown = post_sql(fhir, "SELECT * FROM no_such_table")
    assert unknown.status_code == 400 and "no_such_table" in unknown.text
    missing = fhir.get("_analytics/trend", patient="does-not-exist", code="http://loinc.org|39156-5")
    assert missing.status_code == 404 and missing.json()["resourceType"] == "OperationOutcome"
    assert fhir.get("_analytics/nothing-here").status_code == 404

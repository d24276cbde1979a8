"""batch and transaction Bundles posted to the base (http.html#transaction)."""

from __future__ import annotations

import uuid

import pytest

from tests.integration.fhir_http import FhirHttp

pytestmark = pytest.mark.http


def tx(*entries: dict, kind: str = "transaction") -> dict:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def org_entry(system: str, value: str, full_url: str | None = None, if_none_exist: bool = True) -> dict:
    entry = {
        "resource": {
            "resourceType": "Organization",
            "name": "General Hospital",
            "identifier": [{"system": system, "value": value}],
        },
        "request": {"method": "POST", "url": "Organization"},
    }
    if full_url:
        entry["fullUrl"] = full_url
    if if_none_exist:
        entry["request"]["ifNoneExist"] = f"identifier={system}|{value}"
    return entry


def test_transaction_resolves_urn_uuid_references(fhir: FhirHttp) -> None:
    patient_url, org_url = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
    bundle = tx(
        {
            "fullUrl": patient_url,
            "resource": {"resourceType": "Patient", "managingOrganization": {"reference": org_url}},
            "request": {"method": "POST", "url": "Patient"},
        },
        org_entry("urn:test", uuid.uuid4().hex, org_url),
    )
    response = fhir.post("", bundle)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in result["entry"]]
    assert statuses == ["201 Created", "201 Created"]  # in request order
    patient = result["entry"][0]["resource"]
    org_location = result["entry"][1]["response"]["location"]
    assert patient["managingOrganization"]["reference"] == org_location.split("/_history")[0]
    assert fhir.get(org_location.split("/_history")[0]).status_code == 200


def test_transaction_conditional_references_and_if_none_exist(fhir: FhirHttp) -> None:
    system, value = "http://hl7.org/fhir/sid/us-npi", uuid.uuid4().hex[:10]
    first = fhir.post("", tx(org_entry(system, value), kind="batch")).json()
    org_id = first["entry"][0]["response"]["location"].split("/")[1]
    again = fhir.post("", tx(org_entry(system, value), kind="batch")).json()
    assert again["entry"][0]["response"]["status"] == "200 OK"  # ifNoneExist matched: not duplicated
    bundle = tx(
        {
            "resource": {
                "resourceType": "Patient",
                "managingOrganization": {"reference": f"Organization?identifier={system}|{value}"},
            },
            "request": {"method": "POST", "url": "Patient"},
        }
    )
    patient = fhir.post("", bundle).json()["entry"][0]["resource"]
    assert patient["managingOrganization"]["reference"] == f"Organization/{org_id}"


def test_transaction_is_all_or_nothing(fhir: FhirHttp) -> None:
    marker = uuid.uuid4().hex
    bundle = tx(
        {
            "resource": {"resourceType": "Patient", "id": marker, "active": True},
            "request": {"method": "PUT", "url": f"Patient/{marker}"},
        },
        {
            "resource": {"resourceType": "Observation", "status": "not-a-status", "code": {"text": "x"}},
            "request": {"method": "POST", "url": "Observation"},
        },
    )
    response = fhir.post("", bundle)
    assert response.status_code == 400
    expressions = [e for i in response.json()["issue"] for e in i.get("expression", [])]
    assert "Bundle.entry[1].resource.status" in expressions
    assert fhir.get(f"Patient/{marker}").status_code == 404  # the valid entry was not stored either


def test_transaction_unresolvable_conditional_reference_fails(fhir: FhirHttp) -> None:
    bundle = tx(
        {
            "resource": {
                "resourceType": "Patient",
                "generalPractitioner": [{"reference": "Practitioner?identifier=urn:x|nobody"}],
            },
            "request": {"method": "POST", "url": "Patient"},
        }
    )
    assert fhir.post("", bundle).status_code == 412


def test_transaction_update_delete_and_read(fhir: FhirHttp) -> None:
    keep, drop = uuid.uuid4().hex, uuid.uuid4().hex
    fhir.put(f"Patient/{drop}", {"resourceType": "Patient", "id": drop})
    bundle = tx(
        {"request": {"method": "GET", "url": f"Patient/{keep}"}},
        {
            "resource": {"resourceType": "Patient", "id": keep, "gender": "female"},
            "request": {"method": "PUT", "url": f"Patient/{keep}"},
        },
        {"request": {"method": "DELETE", "url": f"Patient/{drop}"}},
    )
    result = fhir.post("", bundle).json()
    statuses = [e["response"]["status"] for e in result["entry"]]
    assert statuses == ["200 OK", "201 Created", "204 No Content"]
    assert result["entry"][0]["resource"]["gender"] == "female"  # GETs run after the writes
    assert fhir.get(f"Patient/{drop}").status_code == 410


def test_transaction_rejects_the_same_resource_twice(fhir: FhirHttp) -> None:
    rid = uuid.uuid4().hex
    entry = {
        "resource": {"resourceType": "Patient", "id": rid},
        "request": {"method": "PUT", "url": f"Patient/{rid}"},
    }
    assert fhir.post("", tx(entry, entry)).status_code == 400


def test_large_transaction_commits_every_entry(fhir: FhirHttp) -> None:
    tag = uuid.uuid4().hex
    entries = [
        {
            "resource": {"resourceType": "Basic", "code": {"text": tag}},
            "request": {"method": "POST", "url": "Basic"},
        }
        for _ in range(60)
    ]  # more than one DynamoDB transaction holds
    result = fhir.post("", tx(*entries), headers={"Prefer": "return=minimal"}).json()
    assert len(result["entry"]) == 60 and all(
        e["response"]["status"] == "201 Created" for e in result["entry"]
    )
    assert "resource" not in result["entry"][0]


def test_batch_entries_are_independent(fhir: FhirHttp) -> None:
    rid = uuid.uuid4().hex
    bundle = tx(
        {
            "resource": {"resourceType": "Patient", "id": rid},
            "request": {"method": "PUT", "url": f"Patient/{rid}"},
        },
        {
            "resource": {"resourceType": "Patient", "gender": "robot"},
            "request": {"method": "POST", "url": "Patient"},
        },
        {"request": {"method": "GET", "url": "Patient/does-not-exist-anywhere"}},
        {"request": {"method": "PATCH", "url": f"Patient/{rid}"}},
        kind="batch",
    )
    result = fhir.post("", bundle).json()
    assert result["type"] == "batch-response"
    statuses = [e["response"]["status"].split()[0] for e in result["entry"]]
    assert statuses == ["201", "400", "404", "400"]  # a PATCH entry without its patch document
    assert result["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert fhir.get(f"Patient/{rid}").status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"resourceType": "Patient"},
        {"resourceType": "Bundle", "type": "collection"},
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"resource": {"resourceType": "Patient"}}],
        },
    ],
)
def test_bad_bundles_are_400(fhir: FhirHttp, body: dict) -> None:
    response = fhir.post("", body)
    assert response.status_code == 400 and response.json()["resourceType"] == "OperationOutcome"

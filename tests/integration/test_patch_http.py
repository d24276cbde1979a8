"""The patch interaction over real HTTP (R4 http.html#patch): JSON Patch, FHIRPath Patch, conditional
patch and PATCH entries in batch/transaction Bundles."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest

from tests.integration.fhir_http import FhirHttp

pytestmark = pytest.mark.http

JSON_PATCH = {"Content-Type": "application/json-patch+json"}


def new_patient(fhir: FhirHttp, **extra: Any) -> dict[str, Any]:
    body = {
        "resourceType": "Patient",
        "active": True,
        "identifier": [{"system": "urn:test:patch", "value": uuid.uuid4().hex}],
        "name": [{"family": "Chalmers", "given": ["Peter"]}],
        **extra,
    }
    response = fhir.post("Patient", body)
    assert response.status_code == 201, response.text
    return response.json()


def json_patch(fhir: FhirHttp, path: str, operations: list[Any], **headers: str):
    return fhir.request("PATCH", path, raw=json.dumps(operations).encode(), headers={**JSON_PATCH, **headers})


def fhirpath_operation(kind: str, path: str, **parts: Any) -> dict[str, Any]:
    out: list[dict[str, Any]] = [{"name": "type", "valueCode": kind}, {"name": "path", "valueString": path}]
    for name, value in parts.items():
        out.append({"name": name, **value})
    return {"name": "operation", "part": out}


def parameters(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": list(operations)}


def outcome(response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    return body


def expressions(body: dict[str, Any]) -> set[str]:
    return {e for issue in body["issue"] for e in issue.get("expression", [])}


def test_json_patch_stores_a_new_version_like_an_update(fhir: FhirHttp) -> None:
    patient = new_patient(fhir)
    family = f"Patched{uuid.uuid4().hex[:8]}"
    response = json_patch(
        fhir,
        f"Patient/{patient['id']}",
        [
            {"op": "test", "path": "/name/0/family", "value": "Chalmers"},
            {"op": "replace", "path": "/name/0/family", "value": family},
            {"op": "add", "path": "/name/0/given/-", "value": "James"},
            {"op": "remove", "path": "/active"},
        ],
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["name"] == [{"family": family, "given": ["Peter", "James"]}] and "active" not in body
    assert body["meta"]["versionId"] == "2"
    assert response.headers["ETag"] == 'W/"2"'
    assert response.headers["Location"] == f"{fhir.base}/Patient/{patient['id']}/_history/2"
    assert "Last-Modified" in response.headers
    assert fhir.get(f"Patient/{patient['id']}").json() == body
    assert fhir.get(f"Patient/{patient['id']}/_history/1").json() == patient  # history kept
    history = fhir.get(f"Patient/{patient['id']}/_history").json()["entry"]
    assert [e["request"]["method"] for e in history] == ["PATCH", "POST"]  # newest first
    found = fhir.get("Patient", family=family).json()  # the search index follows the patch
    assert [e["resource"]["id"] for e in found.get("entry", [])] == [patient["id"]]


def test_fhirpath_patch_with_where_filter(fhir: FhirHttp) -> None:
    patient = new_patient(
        fhir, telecom=[{"system": "phone", "value": "1"}, {"system": "email", "value": "a@b"}]
    )
    patch = parameters(
        fhirpath_operation(
            "replace", "Patient.telecom.where(system = 'email').value", value={"valueString": "c@d"}
        ),
        fhirpath_operation(
            "add", "Patient", name={"valueString": "birthDate"}, value={"valueDate": "1974-12-25"}
        ),
        fhirpath_operation("delete", "Patient.name.given.first()"),
    )
    response = fhir.request("PATCH", f"Patient/{patient['id']}", patch)  # application/fhir+json
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["telecom"] == [{"system": "phone", "value": "1"}, {"system": "email", "value": "c@d"}]
    assert body["birthDate"] == "1974-12-25"
    assert body["name"] == [{"family": "Chalmers"}]


def test_if_match_is_honoured(fhir: FhirHttp) -> None:
    patient = new_patient(fhir)
    operations = [{"op": "replace", "path": "/active", "value": False}]
    outcome(json_patch(fhir, f"Patient/{patient['id']}", operations, **{"If-Match": 'W/"7"'}), 412)
    response = json_patch(fhir, f"Patient/{patient['id']}", operations, **{"If-Match": 'W/"1"'})
    assert response.status_code == 200 and response.json()["active"] is False


def test_missing_and_deleted_resources(fhir: FhirHttp) -> None:
    operations = [{"op": "replace", "path": "/active", "value": False}]
    outcome(json_patch(fhir, f"Patient/{uuid.uuid4().hex}", operations), 404)
    patient = new_patient(fhir)
    assert fhir.delete(f"Patient/{patient['id']}").status_code == 204
    outcome(json_patch(fhir, f"Patient/{patient['id']}", operations), 410)


def test_failed_patches_change_nothing(fhir: FhirHttp) -> None:
    patient = new_patient(fhir)
    url = f"Patient/{patient['id']}"
    failing_test = [
        {"op": "replace", "path": "/active", "value": False},
        {"op": "test", "path": "/name/0/family", "value": "Someone else"},
    ]
    assert expressions(outcome(json_patch(fhir, url, failing_test), 422)) == {"/1"}
    missing_target = [{"op": "remove", "path": "/birthDate"}]
    assert expressions(outcome(json_patch(fhir, url, missing_target), 422)) == {"/0/path"}
    malformed = [{"op": "replace", "path": "/active", "value": False}, {"op": "add", "value": 1}]
    assert expressions(outcome(json_patch(fhir, url, malformed), 400)) == {"/1/path"}
    bad_parameters = parameters(fhirpath_operation("delete", "Patient.active"), {"name": "operation"})
    body = outcome(fhir.request("PATCH", url, bad_parameters), 400)
    assert expressions(body) == {"Parameters.parameter[1]"}
    unsupported = parameters(fhirpath_operation("delete", "Patient.descendants()"))
    body = outcome(fhir.request("PATCH", url, unsupported), 400)
    assert "descendants()" in body["issue"][0]["diagnostics"]
    invalid_result = [{"op": "add", "path": "/gender", "value": "robot"}]
    assert any("gender" in e for e in expressions(outcome(json_patch(fhir, url, invalid_result), 400)))
    for identity in ("/id", "/resourceType"):
        outcome(json_patch(fhir, url, [{"op": "replace", "path": identity, "value": "Other"}]), 422)
    xml = fhir.request(
        "PATCH", url, raw=b"<Parameters/>", headers={"Content-Type": "application/xml-patch+xml"}
    )
    outcome(xml, 415)
    assert fhir.get(url).json() == patient


def test_prefer_return(fhir: FhirHttp) -> None:
    patient = new_patient(fhir)
    operations = [{"op": "replace", "path": "/active", "value": False}]
    minimal = json_patch(fhir, f"Patient/{patient['id']}", operations, Prefer="return=minimal")
    assert minimal.status_code == 200 and minimal.content == b""
    assert minimal.headers["ETag"] == 'W/"2"'
    oo = json_patch(fhir, f"Patient/{patient['id']}", operations, Prefer="return=OperationOutcome")
    assert outcome(oo, 200)["issue"][0]["severity"] == "information"


def test_conditional_patch(fhir: FhirHttp) -> None:
    patient = new_patient(fhir)
    identifier = patient["identifier"][0]["value"]
    operations = [{"op": "replace", "path": "/active", "value": False}]
    response = json_patch(fhir, f"Patient?identifier=urn:test:patch|{identifier}", operations)
    assert response.status_code == 200, response.text
    assert response.json()["id"] == patient["id"] and response.json()["active"] is False
    outcome(json_patch(fhir, f"Patient?identifier=urn:test:patch|{uuid.uuid4().hex}", operations), 404)
    shared = uuid.uuid4().hex
    for _ in range(2):
        new_patient(fhir, identifier=[{"system": "urn:test:shared", "value": shared}])
    outcome(json_patch(fhir, f"Patient?identifier=urn:test:shared|{shared}", operations), 412)


def binary_patch(operations: list[Any]) -> dict[str, Any]:
    data = base64.b64encode(json.dumps(operations).encode()).decode()
    return {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": data}


def test_patch_entries_in_a_batch(fhir: FhirHttp) -> None:
    first, second = new_patient(fhir), new_patient(fhir)
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "resource": binary_patch([{"op": "replace", "path": "/active", "value": False}]),
                "request": {"method": "PATCH", "url": f"Patient/{first['id']}"},
            },
            {
                "resource": parameters(fhirpath_operation("delete", "Patient.active")),
                "request": {"method": "PATCH", "url": f"Patient/{second['id']}", "ifMatch": 'W/"1"'},
            },
            {
                "resource": binary_patch([{"op": "test", "path": "/active", "value": "no"}]),
                "request": {"method": "PATCH", "url": f"Patient/{second['id']}"},
            },
        ],
    }
    result = fhir.post("", bundle).json()
    statuses = [e["response"]["status"].split()[0] for e in result["entry"]]
    assert statuses == ["200", "200", "422"], result
    assert result["entry"][0]["resource"]["active"] is False
    assert result["entry"][1]["response"]["etag"] == 'W/"2"'
    assert "active" not in fhir.get(f"Patient/{second['id']}").json()


def test_patch_entries_in_a_transaction_are_all_or_nothing(fhir: FhirHttp) -> None:
    patient = new_patient(fhir)
    identifier = patient["identifier"][0]["value"]
    organization_url = f"urn:uuid:{uuid.uuid4()}"
    link = parameters(
        fhirpath_operation(
            "add",
            "Patient",
            name={"valueString": "managingOrganization"},
            value={"valueReference": {"reference": organization_url}},
        )
    )
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": organization_url,
                "resource": {"resourceType": "Organization", "name": "Patch Clinic"},
                "request": {"method": "POST", "url": "Organization"},
            },
            {  # a conditional patch, resolved like a conditional update
                "resource": link,
                "request": {"method": "PATCH", "url": f"Patient?identifier=urn:test:patch|{identifier}"},
            },
        ],
    }
    response = fhir.post("", bundle)
    assert response.status_code == 200, response.text
    entries = response.json()["entry"]
    assert [e["response"]["status"] for e in entries] == ["201 Created", "200 OK"]
    organization_id = entries[0]["response"]["location"].split("/")[1]
    stored = fhir.get(f"Patient/{patient['id']}").json()
    assert stored["managingOrganization"] == {"reference": f"Organization/{organization_id}"}

    failing = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {"resourceType": "Organization", "name": "Never stored"},
                "request": {"method": "POST", "url": "Organization"},
            },
            {
                "resource": binary_patch([{"op": "remove", "path": "/birthDate"}]),
                "request": {"method": "PATCH", "url": f"Patient/{patient['id']}"},
            },
        ],
    }
    body = outcome(fhir.post("", failing), 422)
    assert expressions(body) == {"Bundle.entry[1]", "/0/path"}  # the entry, and the operation in its patch
    assert fhir.get(f"Patient/{patient['id']}").json() == stored


def test_capability_statement_claims_patch(fhir: FhirHttp) -> None:
    statement = fhir.get("metadata").json()
    assert statement["patchFormat"] == ["application/json-patch+json", "application/fhir+json"]
    observation = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Observation")
    assert {"code": "patch"} in observation["interaction"]

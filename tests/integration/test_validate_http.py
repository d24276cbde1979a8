"""$validate over HTTP (http://hl7.org/fhir/R4/resource-operation-validate.html)."""

from __future__ import annotations

import pytest

from tests.integration.fhir_http import FhirHttp

pytestmark = pytest.mark.http

GOOD = {
    "resourceType": "Observation",
    "status": "final",
    "code": {"text": "weight"},
    "valueQuantity": {"value": 72.50, "unit": "kg"},
}
BAD = {
    "resourceType": "Observation",
    "status": "bogus",
    "code": {"text": "weight"},
    "component": [{"code": {"text": "x"}, "valueQuantity": {"value": "heavy"}}],
}


def errors(outcome: dict) -> list[dict]:
    assert outcome["resourceType"] == "OperationOutcome"
    return [i for i in outcome["issue"] if i["severity"] in ("error", "fatal")]


def test_valid_resource_gives_an_all_ok_outcome(fhir: FhirHttp) -> None:
    response = fhir.post("Observation/$validate", GOOD)
    assert response.status_code == 200
    assert errors(response.json()) == []


def test_invalid_resource_reports_every_problem_with_its_path(fhir: FhirHttp) -> None:
    response = fhir.post("Observation/$validate", BAD)
    assert response.status_code == 200  # the operation worked; the outcome carries the verdict
    found = {(i["code"], e) for i in errors(response.json()) for e in i.get("expression", [])}
    assert ("code-invalid", "Observation.status") in found
    assert any(e == "Observation.component[0].valueQuantity.value" for _, e in found)


def test_parameters_form_and_system_level(fhir: FhirHttp) -> None:
    parameters = {
        "resourceType": "Parameters",
        "parameter": [{"name": "resource", "resource": BAD}, {"name": "mode", "valueCode": "create"}],
    }
    response = fhir.post("$validate", parameters)
    assert response.status_code == 200 and errors(response.json())


def test_type_in_url_must_match(fhir: FhirHttp) -> None:
    response = fhir.post("Patient/$validate", GOOD)
    assert any("resourceType" in e for i in errors(response.json()) for e in i.get("expression", []))


def test_update_mode_checks_the_id(fhir: FhirHttp) -> None:
    response = fhir.post("Observation/abc/$validate", {**GOOD, "id": "xyz"}, mode="update")
    assert errors(response.json())
    assert not errors(fhir.post("Observation/abc/$validate", {**GOOD, "id": "abc"}, mode="update").json())


def test_validate_does_not_store_anything(fhir: FhirHttp) -> None:
    fhir.post("Observation/never-stored/$validate", {**GOOD, "id": "never-stored"}, mode="update")
    assert fhir.get("Observation/never-stored").status_code == 404


def test_malformed_json_and_bad_mode(fhir: FhirHttp) -> None:
    assert fhir.post("Observation/$validate", raw=b'{"resourceType": "Observation",}').status_code == 400
    assert fhir.post("Observation/$validate", GOOD, mode="sideways").status_code == 400


def test_capability_statement_lists_validate(fhir: FhirHttp) -> None:
    rest = fhir.get("metadata").json()["rest"][0]
    assert {
        "name": "validate",
        "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate",
    } in rest["operation"]

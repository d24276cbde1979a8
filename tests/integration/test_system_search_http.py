"""System-level search, composite parameters and token ``:in``/``:below`` over real HTTP (search.html#all,
#composite, #token), with the CapabilityStatement saying so.

Every resource is tagged with a per-module random tag; searches narrow with ``_tag`` so that other tests'
data in the same runtime never shows up.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import requests

from tests.integration.fhir_http import FhirHttp
from tests.integration.test_search_http import search

pytestmark = pytest.mark.http

TAG_SYSTEM = "http://fhirlake.test/system-search"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"


@pytest.fixture(scope="module")
def tag() -> str:
    return uuid.uuid4().hex[:12]


def _bp(rid: str, systolic: int, diastolic: int, subject: str) -> dict[str, Any]:
    def component(code: str, value: int) -> dict[str, Any]:
        return {
            "code": {"coding": [{"system": LOINC, "code": code}]},
            "valueQuantity": {"value": value, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"},
        }

    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
        "subject": {"reference": subject},
        "component": [component("8480-6", systolic), component("8462-4", diastolic)],
    }


@pytest.fixture(scope="module")
def data(fhir: FhirHttp, tag: str) -> dict[str, str]:
    """Two patients, three observations (two blood pressures, one weight), a condition: logical -> id."""
    ids = {k: f"{k}-{tag}" for k in ("ann", "bob", "high", "normal", "weight", "cond")}
    patient = f"Patient/{ids['ann']}"
    resources = [
        {"resourceType": "Patient", "id": ids["ann"], "gender": "female"},
        {"resourceType": "Patient", "id": ids["bob"], "gender": "male"},
        _bp(ids["high"], 150, 95, patient),
        _bp(ids["normal"], 115, 75, f"Patient/{ids['bob']}"),
        {
            "resourceType": "Observation",
            "id": ids["weight"],
            "status": "preliminary",
            "code": {"coding": [{"system": LOINC, "code": "29463-7"}]},
            "subject": {"reference": patient},
            "valueQuantity": {"value": 72.5, "unit": "kg", "system": UCUM, "code": "kg"},
        },
        {
            "resourceType": "Condition",
            "id": ids["cond"],
            "subject": {"reference": patient},
            "clinicalStatus": {"coding": [{"system": CLINICAL, "code": "relapse"}]},
        },
    ]
    for resource in resources:
        resource["meta"] = {"tag": [{"system": TAG_SYSTEM, "code": tag}]}
        response = fhir.put(f"{resource['resourceType']}/{resource['id']}", resource)
        assert response.status_code in (200, 201), response.text
    return ids


def found(fhir: FhirHttp, tag: str, path: str, *params: tuple[str, str]) -> dict[str, set[str]]:
    """Every page of a search: resource type -> ids of the matches."""
    response = search(fhir, path, [("_tag", f"{TAG_SYSTEM}|{tag}"), *params])
    out: dict[str, set[str]] = {}
    while True:
        assert response.status_code == 200, response.text
        bundle = response.json()
        for entry in bundle.get("entry", []):
            if entry["search"]["mode"] == "match":
                resource = entry["resource"]
                assert resource["id"] not in out.get(resource["resourceType"], set()), "an id on two pages"
                out.setdefault(resource["resourceType"], set()).add(resource["id"])
        nxt = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
        if nxt is None:
            return out
        response = fhir.http.get(nxt, headers={"Accept": "application/fhir+json"}, timeout=60)


def diagnostics(response: requests.Response) -> str:
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    return " ".join(i.get("diagnostics", "") for i in outcome["issue"])


# -- system search ----------------------------------------------------------------------------------------
def test_type_lists_the_types_searched(fhir: FhirHttp, tag: str, data: dict[str, str]) -> None:
    result = found(fhir, tag, "", ("_type", "Patient,Condition"))
    assert result == {"Patient": {data["ann"], data["bob"]}, "Condition": {data["cond"]}}


def test_without_type_every_type_is_searched_with_common_parameters(fhir, tag, data) -> None:
    result = found(fhir, tag, "", ("_count", "2"))  # 6 resources of 3 types, 2 per page
    assert result == {
        "Patient": {data["ann"], data["bob"]},
        "Observation": {data["high"], data["normal"], data["weight"]},
        "Condition": {data["cond"]},
    }
    assert found(fhir, tag, "", ("_id", data["weight"])) == {"Observation": {data["weight"]}}


def test_parameters_shared_by_the_listed_types(fhir: FhirHttp, tag: str, data: dict[str, str]) -> None:
    # Observation and Condition both have "subject" and "patient" (reference) parameters.
    result = found(fhir, tag, "", ("_type", "Observation,Condition"), ("subject", f"Patient/{data['ann']}"))
    assert result == {"Observation": {data["high"], data["weight"]}, "Condition": {data["cond"]}}


def test_paging_sort_and_links(fhir: FhirHttp, tag: str, data: dict[str, str]) -> None:
    params = [
        ("_tag", f"{TAG_SYSTEM}|{tag}"),
        ("_type", "Patient,Observation"),
        ("_sort", "-_id"),
        ("_count", "2"),
    ]
    response = search(fhir, "", params)
    assert response.status_code == 200, response.text
    bundle = response.json()
    links = {link["relation"]: link["url"] for link in bundle["link"]}
    assert links["self"].startswith(f"{fhir.base}?") and "_type=Patient,Observation" in links["self"]
    seen = [e["resource"]["id"] for e in bundle["entry"]]
    while "next" in links:
        bundle = fhir.http.get(links["next"], headers={"Accept": "application/fhir+json"}, timeout=60).json()
        links = {link["relation"]: link["url"] for link in bundle["link"]}
        seen += [e["resource"]["id"] for e in bundle.get("entry", [])]
    expected = [data[k] for k in ("ann", "bob", "high", "normal", "weight")]
    assert seen == sorted(expected, reverse=True)


def test_post_search_total_and_includes(fhir: FhirHttp, tag: str, data: dict[str, str]) -> None:
    body = f"_tag={TAG_SYSTEM}|{tag}&_type=Condition&_include=Condition:subject&_total=accurate"
    response = fhir.http.post(
        f"{fhir.base}/_search",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/fhir+json"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert bundle["total"] == 1
    modes = {(e["resource"]["id"], e["search"]["mode"]) for e in bundle["entry"]}
    assert modes == {(data["cond"], "match"), (data["ann"], "include")}


def test_system_search_errors(fhir: FhirHttp, tag: str, data: dict[str, str]) -> None:
    strict = {"Prefer": "handling=strict"}
    response = search(fhir, "", [("_type", "Patient,Observation"), ("gender", "male")], **strict)
    assert response.status_code == 400 and "gender" in diagnostics(response)
    response = search(fhir, "", [("_type", "NoSuchType")])
    assert response.status_code == 400 and "NoSuchType" in diagnostics(response)
    response = search(fhir, "", [("_cursor", "garbage")])
    assert response.status_code == 400
    # Lenient: the parameter is ignored for every type (never applied to some of them), with a warning.
    lenient = search(
        fhir, "", [("_tag", f"{TAG_SYSTEM}|{tag}"), ("_type", "Patient,Condition"), ("gender", "male")]
    )
    assert lenient.status_code == 200
    entries = lenient.json()["entry"]
    assert {e["resource"]["id"] for e in entries if e["search"]["mode"] == "match"} == {
        data["ann"],
        data["bob"],
        data["cond"],
    }
    assert any(e["search"]["mode"] == "outcome" for e in entries)
    assert search(fhir, "Patient", [("_type", "Patient")]).status_code == 400  # _type is for system search


# -- composite and terminology modifiers ------------------------------------------------------------------
def test_composite_matches_components_of_the_same_element(fhir, tag, data) -> None:
    # The "normal" pressure has a diastolic of 75: "systolic < 120" must not match "high" through it.
    assert found(fhir, tag, "Observation", ("component-code-value-quantity", f"{LOINC}|8480-6$lt120")) == {
        "Observation": {data["normal"]}
    }
    assert found(fhir, tag, "Observation", ("component-code-value-quantity", "8480-6$ge150,8462-4$le75")) == {
        "Observation": {data["high"], data["normal"]}
    }
    assert found(fhir, tag, "Observation", ("code-value-quantity", f"29463-7$72.5|{UCUM}|kg")) == {
        "Observation": {data["weight"]}
    }
    assert found(fhir, tag, "Observation", ("combo-code-value-quantity", "8462-4$gt90")) == {
        "Observation": {data["high"]}
    }


def test_composite_bad_values_are_400(fhir: FhirHttp, data: dict[str, str]) -> None:
    response = search(fhir, "Observation", [("component-code-value-quantity", "8480-6")])
    assert response.status_code == 400 and "'$'" in diagnostics(response)


def test_token_in_not_in_below_above(fhir: FhirHttp, tag: str, data: dict[str, str]) -> None:
    status_vs = "http://hl7.org/fhir/ValueSet/observation-status"
    everything = {"Observation": {data["high"], data["normal"], data["weight"]}}
    assert found(fhir, tag, "Observation", ("status:in", status_vs)) == everything
    assert found(fhir, tag, "Observation", ("status:not-in", status_vs)) == {}
    assert found(fhir, tag, "Condition", ("clinical-status:below", f"{CLINICAL}|active")) == {
        "Condition": {data["cond"]}
    }
    assert found(fhir, tag, "Condition", ("clinical-status:above", f"{CLINICAL}|active")) == {}
    response = search(fhir, "Condition", [("code:in", "http://hl7.org/fhir/ValueSet/condition-code")])
    assert response.status_code == 501 and "terminology service" in diagnostics(response)
    response = search(fhir, "Condition", [("code:in", "http://example.org/unknown")])
    assert response.status_code == 400 and "Unknown value set" in diagnostics(response)


# -- CapabilityStatement ----------------------------------------------------------------------------------
def test_capability_statement_lists_system_search_and_composites(fhir: FhirHttp) -> None:
    rest = fhir.get("metadata").json()["rest"][0]
    assert "search-system" in {i["code"] for i in rest["interaction"]}
    assert {p["name"] for p in rest["searchParam"]} == {
        "_id",
        "_lastUpdated",
        "_tag",
        "_profile",
        "_security",
        "_source",
        "_type",
    }
    observation = next(r for r in rest["resource"] if r["type"] == "Observation")
    types = {p["name"]: p["type"] for p in observation["searchParam"]}
    assert types["component-code-value-quantity"] == "composite"
    assert types["code"] == "token" and types["date"] == "date"

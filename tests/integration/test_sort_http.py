"""_sort (search.html#sort)."""

from __future__ import annotations

import uuid

import pytest

from tests.integration.fhir_http import FhirHttp

pytestmark = pytest.mark.http


@pytest.fixture(scope="module")
def people(fhir: FhirHttp) -> tuple[str, dict[str, str]]:
    tag = uuid.uuid4().hex
    births = {"a": "1990-05-01", "b": "1970-01-01", "c": "1990-05-01", "d": None, "e": "2001-12-31"}
    ids = {}
    for name, birth in births.items():
        body = {
            "resourceType": "Patient",
            "id": f"{tag[:20]}-{name}",
            "name": [{"family": tag, "given": [name]}],
        }
        if birth:
            body["birthDate"] = birth
        ids[name] = fhir.put(f"Patient/{body['id']}", body).json()["id"]
    return tag, ids


def collect(fhir: FhirHttp, **params: str) -> list[str]:
    out, url, kwargs = [], "Patient", params
    while url:
        bundle = fhir.get(url, **kwargs).json()
        out += [e["resource"]["id"] for e in bundle.get("entry", [])]
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
        kwargs = {}
    return out


def test_sort_ascending_descending_multiple_keys_and_missing_last(fhir: FhirHttp, people) -> None:
    tag, ids = people
    ascending = collect(fhir, family=tag, _sort="birthdate,_id", _count="2")
    assert ascending == [ids["b"], ids["a"], ids["c"], ids["e"], ids["d"]]
    descending = collect(fhir, family=tag, _sort="-birthdate,-_id", _count="2")
    assert descending == [ids["e"], ids["c"], ids["a"], ids["b"], ids["d"]]


def test_sort_is_stable_when_a_resource_is_added_between_pages(fhir: FhirHttp, people) -> None:
    tag, ids = people
    first = fhir.get("Patient", family=tag, _sort="birthdate,_id", _count="2").json()
    fhir.post("Patient", {"resourceType": "Patient", "name": [{"family": tag}], "birthDate": "1900-01-01"})
    rest = collect(
        fhir,
        **dict(
            p.split("=", 1)
            for p in next(link["url"] for link in first["link"] if link["relation"] == "next")
            .split("?", 1)[1]
            .split("&")
        ),
    )
    got = [e["resource"]["id"] for e in first["entry"]] + rest
    assert got == [ids["b"], ids["a"], ids["c"], ids["e"], ids["d"]]  # the newcomer sorts before page 2


def test_bad_sort_parameter(fhir: FhirHttp) -> None:
    assert fhir.get("Patient", _sort="not-a-parameter").status_code == 400

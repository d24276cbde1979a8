"""Type-level search over real HTTP (R4 search.html): what a client sees, one behaviour per test.

Every test writes its own resources, tagged with a per-module random tag, and narrows its searches with
``_tag`` so that other tests' data in the same runtime never shows up.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from tests.integration.fhir_http import FhirHttp

pytestmark = pytest.mark.http

TAG_SYSTEM = "http://fhirlake.test/search"


@pytest.fixture(scope="module")
def tag() -> str:
    return uuid.uuid4().hex[:12]


def tagged(tag: str, resource: dict[str, Any]) -> dict[str, Any]:
    return {**resource, "meta": {**resource.get("meta", {}), "tag": [{"system": TAG_SYSTEM, "code": tag}]}}


def search(fhir: FhirHttp, path: str, params: list[tuple[str, str]], **headers: str) -> requests.Response:
    return fhir.http.get(
        f"{fhir.base}/{path}",
        params=params,
        headers={"Accept": "application/fhir+json", **headers},
        timeout=60,
    )


def ids(fhir: FhirHttp, tag: str, path: str, *params: tuple[str, str]) -> set[str]:
    response = search(fhir, path, [("_tag", f"{TAG_SYSTEM}|{tag}"), *params])
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    assert "next" not in {link["relation"] for link in bundle.get("link", [])}
    return {e["resource"]["id"] for e in bundle.get("entry", [])}


def put(fhir: FhirHttp, tag: str, resource: dict[str, Any]) -> dict[str, Any]:
    response = fhir.put(f"{resource['resourceType']}/{resource['id']}", tagged(tag, resource))
    assert response.status_code in (200, 201), response.text
    return response.json()


@pytest.fixture(scope="module")
def people(fhir: FhirHttp, tag: str) -> dict[str, str]:
    """Patients with names, identifiers, dates, references; returns logical name -> id."""
    p = {k: f"{k}-{tag}" for k in ("muller", "mueller", "smith", "nobirth", "org")}
    put(fhir, tag, {"resourceType": "Organization", "id": p["org"], "name": "Acme, Inc"})
    put(
        fhir,
        tag,
        {
            "resourceType": "Patient",
            "id": p["muller"],
            "name": [{"family": "Müller", "given": ["Jürgen"]}],
            "gender": "male",
            "birthDate": "1970-03-15",
            "identifier": [
                {
                    "system": "http://hospital.example/mrn",
                    "value": "A,1",
                    "type": {
                        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}],
                        "text": "Medical record",
                    },
                }
            ],
            "managingOrganization": {"reference": f"Organization/{p['org']}"},
            "generalPractitioner": [{"identifier": {"system": "http://npi.example", "value": "npi-1"}}],
        },
    )
    put(
        fhir,
        tag,
        {
            "resourceType": "Patient",
            "id": p["mueller"],
            "name": [{"family": "Mueller", "given": ["Anna"]}],
            "gender": "female",
            "birthDate": "1970",
            "identifier": [{"value": "no-system"}],
        },
    )
    put(
        fhir,
        tag,
        {
            "resourceType": "Patient",
            "id": p["smith"],
            "name": [{"family": "Smith", "given": ["Joan"]}],
            "gender": "female",
            "birthDate": "1985-12-31",
            "deceasedDateTime": "2020-01-01T10:00:00+02:00",
        },
    )
    put(fhir, tag, {"resourceType": "Patient", "id": p["nobirth"], "gender": "other"})
    return p


# -- string ---------------------------------------------------------------------------------------------
def test_string_default_is_case_and_accent_insensitive_prefix(fhir, tag, people) -> None:
    assert ids(fhir, tag, "Patient", ("family", "muller")) == {people["muller"]}
    assert ids(fhir, tag, "Patient", ("family", "MÜL")) == {people["muller"]}
    assert ids(fhir, tag, "Patient", ("family", "mu")) == {people["muller"], people["mueller"]}
    assert ids(fhir, tag, "Patient", ("name", "jurg")) == {people["muller"]}
    assert ids(fhir, tag, "Patient", ("family", "ller")) == set()  # not a prefix


def test_string_exact_and_contains(fhir, tag, people) -> None:
    assert ids(fhir, tag, "Patient", ("family:exact", "Müller")) == {people["muller"]}
    assert ids(fhir, tag, "Patient", ("family:exact", "müller")) == set()
    assert ids(fhir, tag, "Patient", ("family:exact", "Muller")) == set()
    assert ids(fhir, tag, "Patient", ("family:contains", "ELL")) == {people["mueller"]}
    assert ids(fhir, tag, "Patient", ("family:contains", "LLER")) == {people["muller"], people["mueller"]}


def test_or_with_escaped_comma(fhir, tag, people) -> None:
    assert ids(fhir, tag, "Organization", ("name", "Acme\\, Inc")) == {people["org"]}
    assert ids(fhir, tag, "Organization", ("name", "Acme, Inc")) == {people["org"]}  # OR: "Acme" or " Inc"
    assert ids(fhir, tag, "Organization", ("name:exact", "Acme\\, Inc")) == {people["org"]}
    assert ids(fhir, tag, "Patient", ("family", "smith,mueller")) == {people["smith"], people["mueller"]}


def test_and_by_repeating_a_parameter(fhir, tag, people) -> None:
    assert ids(fhir, tag, "Patient", ("family", "mu"), ("given", "anna")) == {people["mueller"]}
    assert ids(fhir, tag, "Patient", ("name", "mu"), ("name", "ju")) == {people["muller"]}


# -- token ----------------------------------------------------------------------------------------------
def test_token_forms(fhir, tag, people) -> None:
    mrn = "http://hospital.example/mrn"
    assert ids(fhir, tag, "Patient", ("identifier", "A\\,1")) == {people["muller"]}
    assert ids(fhir, tag, "Patient", ("identifier", f"{mrn}|A\\,1")) == {people["muller"]}
    assert ids(fhir, tag, "Patient", ("identifier", "http://other|A\\,1")) == set()
    assert ids(fhir, tag, "Patient", ("identifier", f"{mrn}|")) == {people["muller"]}
    assert ids(fhir, tag, "Patient", ("identifier", "|no-system")) == {people["mueller"]}
    assert ids(fhir, tag, "Patient", ("identifier", "|A\\,1")) == set()
    assert ids(fhir, tag, "Patient", ("gender", "female")) == {people["mueller"], people["smith"]}
    assert ids(fhir, tag, "Patient", ("gender", "http://hl7.org/fhir/administrative-gender|male")) == {
        people["muller"]
    }


def test_token_not_text_and_of_type(fhir, tag, people) -> None:
    everyone = {people[k] for k in ("muller", "mueller", "smith", "nobirth")}
    # :not includes resources without any value (search.html#modifiers)
    assert ids(fhir, tag, "Patient", ("gender:not", "female")) == everyone - {
        people["mueller"],
        people["smith"],
    }
    assert ids(fhir, tag, "Patient", ("identifier:text", "medical")) == {people["muller"]}
    v2 = "http://terminology.hl7.org/CodeSystem/v2-0203"
    assert ids(fhir, tag, "Patient", ("identifier:of-type", f"{v2}|MR|A\\,1")) == {people["muller"]}
    assert ids(fhir, tag, "Patient", ("identifier:of-type", f"{v2}|MR|other")) == set()


def test_id_tag_and_missing(fhir, tag, people) -> None:
    assert ids(fhir, tag, "Patient", ("_id", f"{people['smith']},{people['muller']}")) == {
        people["smith"],
        people["muller"],
    }
    assert ids(fhir, tag, "Patient", ("birthdate:missing", "true")) == {people["nobirth"]}
    assert people["nobirth"] not in ids(fhir, tag, "Patient", ("birthdate:missing", "false"))
    assert ids(fhir, tag, "Patient", ("_tag", f"{TAG_SYSTEM}|not-{tag}")) == set()


# -- reference ------------------------------------------------------------------------------------------
def test_reference_forms(fhir, tag, people) -> None:
    org = people["org"]
    expected = {people["muller"]}
    assert ids(fhir, tag, "Patient", ("organization", f"Organization/{org}")) == expected
    assert ids(fhir, tag, "Patient", ("organization", org)) == expected
    assert ids(fhir, tag, "Patient", ("organization", f"{fhir.base}/Organization/{org}")) == expected
    assert ids(fhir, tag, "Patient", ("organization:Organization", org)) == expected
    assert (
        ids(fhir, tag, "Patient", ("general-practitioner:identifier", "http://npi.example|npi-1")) == expected
    )
    assert ids(fhir, tag, "Patient", ("general-practitioner:identifier", "http://other|npi-1")) == set()


# -- date -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1970", {"muller", "mueller"}),
        ("1970-03", {"muller"}),
        ("eq1970-03-15", {"muller"}),
        ("ne1970", {"smith"}),
        ("gt1970-06", {"mueller", "smith"}),  # the year 1970 extends beyond June
        ("lt1970-06", {"muller", "mueller"}),
        ("ge1985-12-31", {"smith"}),
        ("le1970-01-01", set()),  # nothing of 1970 lies before that day, and the day does not contain 1970
        ("le1970-03-15", {"muller", "mueller"}),
        ("sa1970-12-31", {"smith"}),
        ("eb1971", {"muller", "mueller"}),
        ("1970-03-15T00:00:00Z", set()),  # a day is not contained in one second
        ("ap1985-12-30", {"smith"}),
    ],
)
def test_date_prefixes(fhir, tag, people, value: str, expected: set[str]) -> None:
    assert ids(fhir, tag, "Patient", ("birthdate", value)) == {people[k] for k in expected}


def test_datetime_with_time_zone_and_period(fhir, tag, people) -> None:
    # deceasedDateTime 2020-01-01T10:00:00+02:00 is 08:00 UTC
    assert ids(fhir, tag, "Patient", ("death-date", "2020-01-01")) == {people["smith"]}
    assert ids(fhir, tag, "Patient", ("death-date", "gt2020-01-01T08:30:00Z")) == set()
    assert ids(fhir, tag, "Patient", ("death-date", "lt2020-01-01T08:30:00Z")) == {people["smith"]}
    enc = f"enc-{tag}"
    put(
        fhir,
        tag,
        {
            "resourceType": "Encounter",
            "id": enc,
            "status": "finished",
            "class": {"code": "AMB"},
            "period": {"start": "2021-05-01T10:00:00Z", "end": "2021-05-03T12:00:00Z"},
        },
    )
    assert ids(fhir, tag, "Encounter", ("date", "2021-05")) == {enc}
    assert ids(fhir, tag, "Encounter", ("date", "2021-05-02")) == set()  # the period is not inside that day
    assert ids(fhir, tag, "Encounter", ("date", "ge2021-05-02"), ("date", "le2021-05-02")) == {enc}
    assert ids(fhir, tag, "Encounter", ("date", "sa2021-04-30")) == {enc}
    assert ids(fhir, tag, "Encounter", ("date", "eb2021-05-03")) == set()


def test_last_updated(fhir, tag, people) -> None:
    before = datetime.now(UTC) - timedelta(hours=1)
    stamp = before.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert people["smith"] in ids(fhir, tag, "Patient", ("_lastUpdated", f"gt{stamp}"))
    assert ids(fhir, tag, "Patient", ("_lastUpdated", f"lt{stamp}")) == set()


# -- number, quantity, uri ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def measures(fhir: FhirHttp, tag: str) -> dict[str, str]:
    out = {}
    for name, value, unit in (("a", 100, "mg"), ("b", 100.5, "mg"), ("c", 5.4, "g"), ("d", 120, "mg")):
        out[name] = f"obs-{name}-{tag}"
        put(
            fhir,
            tag,
            {
                "resourceType": "Observation",
                "id": out[name],
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}], "text": "Glucose"},
                "valueQuantity": {
                    "value": value,
                    "unit": unit,
                    "system": "http://unitsofmeasure.org",
                    "code": unit,
                },
            },
        )
    out["risk"] = f"risk-{tag}"
    put(
        fhir,
        tag,
        {
            "resourceType": "RiskAssessment",
            "id": out["risk"],
            "status": "final",
            "subject": {"reference": "Patient/x"},
            "prediction": [{"probabilityDecimal": 0.25}],
        },
    )
    return out


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("100", {"a"}),  # 100 covers [99.5, 100.5)
        ("100.0", {"a"}),
        ("ne100", {"b", "c", "d"}),
        ("gt100", {"b", "d"}),
        ("ge100", {"a", "b", "d"}),
        ("lt100.5", {"a", "c"}),
        ("le100.5", {"a", "b", "c"}),
        ("100|http://unitsofmeasure.org|mg", {"a"}),
        ("5.4|http://unitsofmeasure.org|g", {"c"}),
        ("5.4|http://unitsofmeasure.org|mg", set()),
        ("gt1||mg", {"a", "b", "d"}),
        ("ap110", {"a", "b", "d"}),
    ],
)
def test_quantity_prefixes_and_units(fhir, tag, measures, value: str, expected: set[str]) -> None:
    assert ids(fhir, tag, "Observation", ("value-quantity", value)) == {measures[k] for k in expected}


def test_number(fhir, tag, measures) -> None:
    assert ids(fhir, tag, "RiskAssessment", ("probability", "0.25")) == {measures["risk"]}
    assert ids(fhir, tag, "RiskAssessment", ("probability", "gt0.2")) == {measures["risk"]}
    assert ids(fhir, tag, "RiskAssessment", ("probability", "lt0.2")) == set()


def test_uri_below_above_and_profile(fhir, tag) -> None:
    vs = f"vs-{tag}"
    put(
        fhir,
        tag,
        {
            "resourceType": "ValueSet",
            "id": vs,
            "status": "active",
            "url": f"http://acme.example/fhir/ValueSet/{tag}",
        },
    )
    sd = "http://acme.example/StructureDefinition/special"
    put(
        fhir,
        tag,
        {"resourceType": "Basic", "id": f"basic-{tag}", "code": {"text": "x"}, "meta": {"profile": [sd]}},
    )
    url = f"http://acme.example/fhir/ValueSet/{tag}"
    assert ids(fhir, tag, "ValueSet", ("url", url)) == {vs}
    assert ids(fhir, tag, "ValueSet", ("url", "http://acme.example/fhir")) == set()
    assert ids(fhir, tag, "ValueSet", ("url:below", "http://acme.example/fhir")) == {vs}
    assert ids(fhir, tag, "ValueSet", ("url:above", f"{url}/extra/part")) == {vs}
    response = search(fhir, "Basic", [("_profile", sd), ("_id", f"basic-{tag}")])
    assert [e["resource"]["id"] for e in response.json().get("entry", [])] == [f"basic-{tag}"]


# -- paging, totals, summary, elements, POST ------------------------------------------------------------
def _pages(fhir: FhirHttp, first: requests.Response, between=None) -> list[list[str]]:
    pages = []
    response = first
    while True:
        assert response.status_code == 200, response.text
        bundle = response.json()
        pages.append([e["resource"]["id"] for e in bundle.get("entry", [])])
        nxt = next((link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None)
        if nxt is None:
            return pages
        if between:
            between()
        response = fhir.http.get(nxt, headers={"Accept": "application/fhir+json"}, timeout=60)


def test_paging_through_every_page_stable_under_writes(fhir, tag) -> None:
    group = f"page-{tag}"
    made = {
        put(fhir, tag, {"resourceType": "Basic", "id": f"{group}-{i}", "code": {"text": group}})["id"]
        for i in range(17)
    }
    created: list[str] = []

    def write_between() -> None:  # new matches arriving while paging must not shift later pages
        rid = f"{group}-new-{len(created)}"
        put(fhir, tag, {"resourceType": "Basic", "id": rid, "code": {"text": group}})
        created.append(rid)

    params = [("_tag", f"{TAG_SYSTEM}|{tag}"), ("code:text", group), ("_count", "4")]
    pages = _pages(fhir, search(fhir, "Basic", params), write_between)
    seen = [rid for page in pages for rid in page]
    assert all(len(page) <= 4 for page in pages) and len(pages) >= 5
    assert len(seen) == len(set(seen))  # no repeats
    assert made <= set(seen)  # no gaps
    assert set(seen) <= made | set(created)


def test_total_accurate_and_summary_count(fhir, tag, people) -> None:
    base = [("_tag", f"{TAG_SYSTEM}|{tag}"), ("gender", "female,male")]
    bundle = search(fhir, "Patient", [*base, ("_count", "1"), ("_total", "accurate")]).json()
    assert bundle["total"] == 3 and len(bundle["entry"]) == 1
    counted = search(fhir, "Patient", [*base, ("_summary", "count")]).json()
    assert counted["total"] == 3 and not counted.get("entry")


def test_elements(fhir, tag, people) -> None:
    bundle = search(fhir, "Patient", [("_id", people["smith"]), ("_elements", "gender")]).json()
    resource = bundle["entry"][0]["resource"]
    assert resource["gender"] == "female" and "name" not in resource and "birthDate" not in resource
    assert resource["id"] == people["smith"]


def test_post_search_with_form_body(fhir, tag, people) -> None:
    response = fhir.http.post(
        f"{fhir.base}/Patient/_search",
        data={"family": "smith", "_tag": f"{TAG_SYSTEM}|{tag}"},
        headers={"Accept": "application/fhir+json"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    assert {e["resource"]["id"] for e in response.json()["entry"]} == {people["smith"]}


# -- errors ---------------------------------------------------------------------------------------------
def test_unknown_parameter_strict_vs_lenient(fhir, tag, people) -> None:
    strict = search(fhir, "Patient", [("nonsense", "1")], Prefer="handling=strict")
    assert strict.status_code == 400 and strict.json()["resourceType"] == "OperationOutcome"
    lenient = search(
        fhir, "Patient", [("nonsense", "1"), ("_id", people["smith"])], Prefer="handling=lenient"
    )
    assert lenient.status_code == 200
    entries = lenient.json()["entry"]
    assert [e["resource"]["id"] for e in entries if e["search"]["mode"] == "match"] == [people["smith"]]
    outcomes = [e["resource"] for e in entries if e["resource"]["resourceType"] == "OperationOutcome"]
    assert outcomes and outcomes[0]["issue"][0]["severity"] == "warning"


@pytest.mark.parametrize(
    "params",
    [
        [("birthdate", "not-a-date")],
        [("birthdate", "1970-13")],
        [("probability", "abc")],
        [("gender:missing", "maybe")],
        [("_count", "-1")],
        [("family:unknownmod", "x")],
    ],
)
def test_bad_values_are_400_outcomes(fhir, params) -> None:
    path = "RiskAssessment" if params[0][0] == "probability" else "Patient"
    response = search(fhir, path, params)
    assert response.status_code == 400, response.text
    assert response.json()["resourceType"] == "OperationOutcome"


# -- read your writes -----------------------------------------------------------------------------------
def test_create_update_delete_are_visible_immediately(fhir, tag) -> None:
    created = fhir.post("Patient", tagged(tag, {"resourceType": "Patient", "name": [{"family": "Ryw"}]}))
    rid = created.json()["id"]
    assert ids(fhir, tag, "Patient", ("family", "ryw")) == {rid}
    body = tagged(tag, {"resourceType": "Patient", "id": rid, "name": [{"family": "Moved"}]})
    assert fhir.put(f"Patient/{rid}", body).status_code == 200
    assert ids(fhir, tag, "Patient", ("family", "ryw")) == set()
    assert ids(fhir, tag, "Patient", ("family", "moved")) == {rid}
    assert fhir.delete(f"Patient/{rid}").status_code in (200, 204)
    assert ids(fhir, tag, "Patient", ("family", "moved")) == set()
    assert rid not in ids(fhir, tag, "Patient")

"""The shipped ViewDefinitions (fhirlake/data/views) on real R4 data: Synthea bulk NDJSON and HL7 examples.

Each row is checked against the resource it came from, so a wrong path (a choice type missed, a
reference key taken from the wrong element) shows up as a mismatch, not as a quietly null column.
"""

from __future__ import annotations

import gzip
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from fhirlake.fhir.json import loads
from fhirlake.views import CompiledView, compile_view, default_views

from tests.conftest import SHARED_DATA

SYNTHEA = SHARED_DATA / "synthea" / "bulk-ndjson-10-patients"
EXAMPLES = SHARED_DATA / "r4-examples"

# The contract with the SQL helper (docs: analytics contract): view -> columns, in order, with types.
CONTRACT: dict[str, list[tuple[str, str]]] = {
    "patient_demographics": [
        ("id", "id"),
        ("gender", "code"),
        ("birth_date", "date"),
        ("deceased", "boolean"),
        ("family", "string"),
        ("given", "string"),
        ("city", "string"),
        ("state", "string"),
        ("country", "string"),
        ("postal_code", "string"),
    ],
    "conditions": [
        ("id", "id"),
        ("patient_id", "id"),
        ("code_system", "uri"),
        ("code", "code"),
        ("display", "string"),
        ("clinical_status", "code"),
        ("verification_status", "code"),
        ("onset_datetime", "dateTime"),
        ("abatement_datetime", "dateTime"),
        ("recorded_date", "dateTime"),
        ("encounter_id", "id"),
    ],
    "observations": [
        ("id", "id"),
        ("patient_id", "id"),
        ("status", "code"),
        ("category", "code"),
        ("code_system", "uri"),
        ("code", "code"),
        ("display", "string"),
        ("effective_datetime", "dateTime"),
        ("value_quantity", "decimal"),
        ("value_unit", "string"),
        ("value_code", "code"),
        ("value_string", "string"),
    ],
    "observation_components": [
        ("id", "id"),
        ("patient_id", "id"),
        ("effective_datetime", "dateTime"),
        ("code", "code"),
        ("display", "string"),
        ("value_quantity", "decimal"),
        ("value_unit", "string"),
    ],
    "medication_requests": [
        ("id", "id"),
        ("patient_id", "id"),
        ("status", "code"),
        ("intent", "code"),
        ("medication_code", "code"),
        ("medication_display", "string"),
        ("authored_on", "dateTime"),
        ("encounter_id", "id"),
    ],
    "encounters": [
        ("id", "id"),
        ("patient_id", "id"),
        ("status", "code"),
        ("class_code", "code"),
        ("type_code", "code"),
        ("type_display", "string"),
        ("period_start", "dateTime"),
        ("period_end", "dateTime"),
        ("reason_code", "code"),
    ],
    "immunizations": [
        ("id", "id"),
        ("patient_id", "id"),
        ("status", "code"),
        ("vaccine_code", "code"),
        ("vaccine_display", "string"),
        ("occurrence_datetime", "dateTime"),
    ],
    "procedures": [
        ("id", "id"),
        ("patient_id", "id"),
        ("status", "code"),
        ("code", "code"),
        ("display", "string"),
        ("performed_start", "dateTime"),
        ("performed_end", "dateTime"),
    ],
}


@cache
def views() -> dict[str, CompiledView]:
    return {v["name"]: compile_view(v) for v in default_views()}


@cache
def synthea() -> dict[str, list[dict[str, Any]]]:
    if not SYNTHEA.is_dir():
        pytest.fail(f"Synthea NDJSON not found at {SYNTHEA}")
    by_type: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(SYNTHEA.glob("*.ndjson.gz")):
        with gzip.open(path, "rb") as lines:
            for line in lines:
                resource = loads(line)
                by_type.setdefault(resource["resourceType"], []).append(resource)
    return by_type


def example(name: str) -> dict[str, Any]:
    return loads((EXAMPLES / f"{name}.json").read_bytes())


def examples(resource_type: str) -> list[dict[str, Any]]:
    return [loads(p.read_bytes()) for p in sorted(EXAMPLES.glob(f"{resource_type}-*.json"))]


def rows_by_id(view: str, resources: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The view's rows keyed by resource id, asserting exactly one row per resource."""
    compiled = views()[view]
    out: dict[str, dict[str, Any]] = {}
    for resource in resources:
        rows = compiled.rows(resource)
        assert len(rows) == 1, f"{view}: {resource['id']} gave {len(rows)} rows"
        out[resource["id"]] = rows[0]
    return out


def ref_id(reference: dict[str, Any] | None) -> str | None:
    return reference["reference"].split("/")[-1] if reference else None


def first_code(concept: dict[str, Any] | None) -> str | None:
    return concept["coding"][0]["code"] if concept and concept.get("coding") else None


def test_shipped_views_are_exactly_the_contract() -> None:
    assert {name: [(c.name, c.type) for c in v.columns] for name, v in views().items()} == CONTRACT
    for definition in default_views():
        assert definition["status"] == "active"
        assert Path(definition["name"]).name == definition["name"]


def test_default_views_returns_fresh_copies() -> None:
    default_views()[0]["name"] = "changed"
    assert default_views()[0]["name"] != "changed"


def test_patient_demographics_on_synthea() -> None:
    patients = synthea()["Patient"]
    rows = rows_by_id("patient_demographics", patients)
    for p in patients:
        row = rows[p["id"]]
        official = next(n for n in p["name"] if n.get("use") == "official")
        home = p["address"][0]
        assert (row["gender"], row["birth_date"]) == (p["gender"], p["birthDate"])
        assert row["deceased"] is ("deceasedDateTime" in p or None)
        assert (row["family"], row["given"]) == (official["family"], " ".join(official["given"]))
        assert (row["city"], row["state"], row["country"]) == (home["city"], home["state"], home["country"])
        assert row["postal_code"] == home.get("postalCode")
    assert any(r["deceased"] for r in rows.values())


def test_every_synthea_condition_gives_one_matching_row() -> None:
    conditions = synthea()["Condition"]
    rows = rows_by_id("conditions", conditions)
    for c in conditions:
        row = rows[c["id"]]
        coding = c["code"]["coding"][0]
        assert row["patient_id"] == ref_id(c["subject"])
        assert (row["code_system"], row["code"], row["display"]) == (
            coding["system"],
            coding["code"],
            coding["display"],
        )
        assert row["clinical_status"] == first_code(c.get("clinicalStatus"))
        assert row["verification_status"] == first_code(c.get("verificationStatus"))
        assert (row["onset_datetime"], row["abatement_datetime"]) == (
            c.get("onsetDateTime"),
            c.get("abatementDateTime"),
        )
        assert row["encounter_id"] == ref_id(c.get("encounter"))
    assert any(r["abatement_datetime"] for r in rows.values())


def test_condition_onset_variants() -> None:
    period = {
        "resourceType": "Condition",
        "id": "p",
        "subject": {"reference": "Patient/1"},
        "onsetPeriod": {"start": "2020-02"},
        "abatementPeriod": {"start": "2021-03-04", "end": "2021-05"},
    }
    rows = rows_by_id("conditions", [period, example("Condition-f202"), example("Condition-example2")])
    assert (rows["p"]["onset_datetime"], rows["p"]["abatement_datetime"]) == ("2020-02", "2021-03-04")
    assert rows["f202"]["onset_datetime"] is None  # onsetAge is not a point in time
    assert rows["example2"]["onset_datetime"] is None  # onsetString neither


def test_every_synthea_medication_request_gives_one_matching_row() -> None:
    requests = synthea()["MedicationRequest"]
    rows = rows_by_id("medication_requests", requests)
    for m in requests:
        row = rows[m["id"]]
        concept = m["medicationCodeableConcept"]
        assert (row["patient_id"], row["status"], row["intent"]) == (
            ref_id(m["subject"]),
            m["status"],
            m["intent"],
        )
        assert (row["medication_code"], row["medication_display"]) == (
            concept["coding"][0]["code"],
            concept["coding"][0]["display"],
        )
        assert (row["authored_on"], row["encounter_id"]) == (m["authoredOn"], ref_id(m["encounter"]))


def test_medication_reference_keeps_its_display_and_no_code() -> None:
    rows = rows_by_id("medication_requests", [example("MedicationRequest-medrx002")])
    assert rows["medrx002"]["medication_code"] is None
    assert rows["medrx002"]["medication_display"] == "prescribed medication"


@pytest.mark.parametrize(
    ("view", "resource_type", "patient_key", "code_element", "date_check"),
    [
        (
            "encounters",
            "Encounter",
            "subject",
            None,
            lambda r, row: row["period_start"] == r["period"]["start"],
        ),
        (
            "immunizations",
            "Immunization",
            "patient",
            "vaccineCode",
            lambda r, row: row["occurrence_datetime"] == r["occurrenceDateTime"],
        ),
        (
            "procedures",
            "Procedure",
            "subject",
            "code",
            lambda r, row: (
                row["performed_start"]
                == r.get("performedDateTime", r.get("performedPeriod", {}).get("start"))
            ),
        ),
    ],
)
def test_every_synthea_resource_gives_one_matching_row(
    view: str, resource_type: str, patient_key: str, code_element: str | None, date_check: Any
) -> None:
    resources = synthea()[resource_type]
    rows = rows_by_id(view, resources)
    code_column = {"immunizations": "vaccine_code", "procedures": "code"}.get(view)
    for r in resources:
        row = rows[r["id"]]
        assert row["patient_id"] == ref_id(r[patient_key])
        assert row["status"] == r["status"]
        assert date_check(r, row)
        if code_element:
            assert row[code_column] == first_code(r[code_element])
    assert len(rows) == len(resources) > 100


def test_encounter_columns() -> None:
    encounters = synthea()["Encounter"]
    rows = rows_by_id("encounters", encounters)
    for e in encounters:
        row = rows[e["id"]]
        assert (row["class_code"], row["type_code"]) == (e["class"]["code"], first_code(e["type"][0]))
        assert row["period_end"] == e["period"].get("end")
        assert row["reason_code"] == (first_code(e["reasonCode"][0]) if e.get("reasonCode") else None)


def test_observations_on_the_hl7_examples() -> None:
    observations = examples("Observation")
    rows = rows_by_id("observations", observations)
    kinds: Counter[str] = Counter()
    for o in observations:
        row = rows[o["id"]]
        quantity = o.get("valueQuantity")
        assert row["value_quantity"] == (quantity.get("value") if quantity else None)
        assert row["value_code"] == first_code(o.get("valueCodeableConcept"))
        assert row["value_string"] == o.get("valueString")
        assert row["code"] == first_code(o["code"])
        effective = (
            o.get("effectiveDateTime")
            or o.get("effectiveInstant")
            or o.get("effectivePeriod", {}).get("start")
        )
        assert row["effective_datetime"] == effective
        subject = o.get("subject", {}).get("reference", "")
        assert row["patient_id"] == (subject.split("/")[-1] if subject.startswith("Patient/") else None)
        kinds.update(k for k in ("value_quantity", "value_code", "value_string") if row[k] is not None)
    assert min(kinds.values()) >= 3, kinds  # every value[x] kind occurs in the examples


def test_observation_components_one_row_per_component() -> None:
    observations = examples("Observation")
    compiled = views()["observation_components"]
    rows = [row for o in observations for row in compiled.rows(o)]
    assert len(rows) == sum(len(o.get("component", [])) for o in observations) > 20
    bp = [row for row in rows if row["id"] == "blood-pressure"]
    assert [(r["code"], r["value_quantity"], r["value_unit"]) for r in bp] == [
        ("8480-6", 107, "mmHg"),
        ("8462-4", 60, "mmHg"),
    ]

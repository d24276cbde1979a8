"""Composite parameters, token ``:in``/``:not-in`` and ``:above``/``:below`` (search.html#composite, #token):
parsing, matching on the same element, and the index entries a search drives on."""

from __future__ import annotations

import pytest
from fhirlake.fhir.outcome import FhirError
from fhirlake.persistence import search_index
from fhirlake.search.extract import parameter_values

from tests.search.test_query import criterion, driven_by_an_own_entry, hit

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


def _component(code: str, value: int) -> dict:
    return {
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "valueQuantity": {"value": value, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"},
    }


BLOOD_PRESSURE = {
    "resourceType": "Observation",
    "id": "bp",
    "status": "final",
    "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
    "component": [_component("8480-6", 150), _component("8462-4", 80)],
    "interpretation": [{"coding": [{"system": INTERPRETATION, "code": "HH"}]}],
}
CONDITION = {
    "resourceType": "Condition",
    "id": "c",
    "subject": {"reference": "Patient/p"},
    "clinicalStatus": {"coding": [{"system": CLINICAL, "code": "recurrence"}]},
}


# -- composite --------------------------------------------------------------------------------------------
def test_composite_components_match_on_the_same_component() -> None:
    # Systolic 150 and diastolic 80: "systolic below 100" must not match through the diastolic value.
    assert hit(BLOOD_PRESSURE, "component-code-value-quantity", f"{LOINC}|8480-6$gt140")
    assert not hit(BLOOD_PRESSURE, "component-code-value-quantity", f"{LOINC}|8480-6$lt100")
    assert hit(BLOOD_PRESSURE, "component-code-value-quantity", "8462-4$lt100")
    assert hit(BLOOD_PRESSURE, "component-code-value-quantity", f"8462-4$80|{UCUM}|mm[Hg]")
    assert not hit(BLOOD_PRESSURE, "component-code-value-quantity", f"8462-4$80|{UCUM}|kg")


def test_composite_or_values_and_combo_over_resource_and_components() -> None:
    assert hit(BLOOD_PRESSURE, "component-code-value-quantity", "8480-6$lt100,8462-4$lt100")
    assert hit(BLOOD_PRESSURE, "combo-code-value-quantity", "8480-6$150")
    assert not hit(BLOOD_PRESSURE, "code-value-quantity", "8480-6$150")  # the resource has no valueQuantity


def test_composite_missing() -> None:
    assert hit(BLOOD_PRESSURE, "code-value-quantity:missing", "true")
    assert hit(BLOOD_PRESSURE, "component-code-value-quantity:missing", "false")


def test_composite_entries_are_indexed_and_found_through_the_first_component() -> None:
    for value in (f"{LOINC}|8480-6$gt140", "8462-4$lt100"):
        assert driven_by_an_own_entry(BLOOD_PRESSURE, "component-code-value-quantity", value)
    # A range driven by another code holds no entry of this resource.
    c = criterion("Observation", "component-code-value-quantity", "9999-9$1")
    entries = search_index.entries("t", "Observation", "bp", parameter_values(c.param, BLOOD_PRESSURE))
    assert not any(sk.startswith(p) for _, sk in entries for p in search_index.driver_prefixes(c) or [])


@pytest.mark.parametrize(
    "value",
    ["8480-6", "8480-6$1$2", "8480-6$", "$5", "8480-6$notanumber"],
)
def test_malformed_composite_values_are_400(value: str) -> None:
    with pytest.raises(FhirError) as err:
        criterion("Observation", "component-code-value-quantity", value)
    assert err.value.status == 400


def test_composite_modifiers_other_than_missing_are_400() -> None:
    with pytest.raises(FhirError) as err:
        criterion("Observation", "code-value-quantity:exact", "1$2")
    assert err.value.status == 400


# -- :in / :not-in ----------------------------------------------------------------------------------------
def test_in_and_not_in_an_enumerable_value_set() -> None:
    # observation-status (required binding: the validator's table) and v3 interpretation codes (not
    # bound required: the search's own table).
    assert hit(BLOOD_PRESSURE, "status:in", "http://hl7.org/fhir/ValueSet/observation-status")
    assert not hit(BLOOD_PRESSURE, "status:not-in", "http://hl7.org/fhir/ValueSet/observation-status")
    assert hit(CONDITION, "clinical-status:in", "http://hl7.org/fhir/ValueSet/condition-clinical")
    assert not hit(CONDITION, "clinical-status:in", "http://hl7.org/fhir/ValueSet/condition-ver-status")
    assert hit(CONDITION, "clinical-status:not-in", "http://hl7.org/fhir/ValueSet/condition-ver-status")


def test_in_with_few_codes_drives_on_one_range_per_code() -> None:
    assert driven_by_an_own_entry(
        CONDITION, "clinical-status:in", "http://hl7.org/fhir/ValueSet/condition-clinical"
    )


@pytest.mark.parametrize(
    ("value", "status", "reason"),
    [
        ("http://hl7.org/fhir/ValueSet/condition-code", 501, "filter"),  # SNOMED CT is-a filter
        ("http://hl7.org/fhir/ValueSet/ucum-units", 501, "unitsofmeasure"),
        ("http://example.org/no-such-value-set", 400, "Unknown value set"),
    ],
)
def test_value_sets_that_cannot_be_enumerated_say_why(value: str, status: int, reason: str) -> None:
    with pytest.raises(FhirError) as err:
        criterion("Condition", "code:in", value)
    assert err.value.status == status
    assert reason in err.value.outcome()["issue"][0]["diagnostics"]


# -- :above / :below --------------------------------------------------------------------------------------
def test_below_and_above_follow_the_code_system_hierarchy() -> None:
    # condition-clinical: active > recurrence, relapse
    assert hit(CONDITION, "clinical-status:below", f"{CLINICAL}|active")
    assert hit(CONDITION, "clinical-status:below", f"{CLINICAL}|recurrence")  # a code subsumes itself
    assert not hit(CONDITION, "clinical-status:below", f"{CLINICAL}|inactive")
    assert not hit(CONDITION, "clinical-status:above", f"{CLINICAL}|active")
    assert hit(CONDITION, "clinical-status:above", "recurrence")  # without system: where the code is known
    # v3 ActCode (nesting several levels deep): _ActEncounterCode > AMB
    encounter = {
        "resourceType": "Encounter",
        "id": "e",
        "status": "finished",
        "class": {"system": ACT, "code": "AMB"},
    }
    assert hit(encounter, "class:below", f"{ACT}|_ActEncounterCode")
    assert hit(encounter, "class:above", f"{ACT}|AMB")
    assert not hit(encounter, "class:above", f"{ACT}|_ActEncounterCode")
    assert not hit(encounter, "class:below", f"{ACT}|IMP")


def test_below_outside_the_package_code_systems_is_501() -> None:
    with pytest.raises(FhirError) as err:
        criterion("Condition", "code:below", "http://snomed.info/sct|73211009")
    assert err.value.status == 501
    with pytest.raises(FhirError) as err:
        criterion("Condition", "code:below", "not-a-known-code")
    assert err.value.status == 400
    with pytest.raises(FhirError) as err:
        criterion("Condition", "code:below", f"{LOINC}|")
    assert err.value.status == 400

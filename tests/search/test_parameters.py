"""The search-parameter registry against the official R4 SearchParameter bundle."""

from __future__ import annotations

import pytest
from fhirlake.fhir.types import resource_types
from fhirlake.search.parameters import MODIFIERS, parameter, parameters, unsupported

COMMON = {"_id", "_lastUpdated", "_tag", "_profile", "_security", "_source"}


def test_common_parameters_on_every_type() -> None:
    for rtype in sorted(resource_types()):
        codes = set(parameters(rtype))
        assert codes >= COMMON, rtype
        assert {"_content", "_query"} <= set(unsupported(rtype)), rtype
        assert not {"_text", "_content", "_query"} & codes


def test_text_is_domain_resource_only() -> None:
    assert "_text" in unsupported("Patient")
    assert "_text" not in unsupported("Bundle")


def test_patient_parameters() -> None:
    p = parameters("Patient")
    assert p["name"].type == "string" and p["name"].expression == "Patient.name"
    assert p["birthdate"].type == "date"
    assert p["gender"].type == "token"
    assert set(p["general-practitioner"].targets) == {"Organization", "Practitioner", "PractitionerRole"}
    assert p["email"].expression == "Patient.telecom.where(system='email')"
    assert p["_lastUpdated"].expression == "Patient.meta.lastUpdated"
    assert p["_id"].type == "token"
    assert p["_profile"].type == "uri"
    assert p["name"].modifiers == MODIFIERS["string"]


def test_union_expressions_are_restricted_to_the_base() -> None:
    code = parameter("Observation", "code")
    assert code is not None and code.expression == "Observation.code"
    patient = parameter("Observation", "patient")
    assert patient is not None and patient.expression == "Observation.subject.where(resolve() is Patient)"
    assert patient.parts[0].resolve_type == "Patient"
    vq = parameter("Observation", "value-quantity")
    assert vq is not None
    assert vq.expression == "(Observation.value as Quantity) | (Observation.value as SampledData)"
    assert vq.parts[0].alternatives[0].keys == ("valueQuantity",)
    assert parameter("Condition", "onset-date").expression == (
        "Condition.onset.as(dateTime) | Condition.onset.as(Period)"
    )
    # a single-base parameter written without its type
    assert parameter("InsurancePlan", "name").expression == "InsurancePlan.name | InsurancePlan.alias"


def test_composite_components() -> None:
    cvq = parameter("Observation", "code-value-quantity")
    assert cvq is not None and cvq.type == "composite"
    assert cvq.components == (("code", "code"), ("value-quantity", "value.as(Quantity)"))
    assert cvq.component_types == ("token", "quantity")
    assert cvq.multiple_or is False
    combo = parameter("Observation", "component-code-value-quantity")
    assert combo is not None and combo.expression == "Observation.component"


def test_comparators_and_choice_types() -> None:
    date = parameter("Observation", "date")
    assert date is not None and "sa" in date.comparators
    types = {a.element_type for part in date.parts for a in part.alternatives}
    assert types == {"dateTime", "Period", "Timing", "instant"}


def test_unknown() -> None:
    assert parameter("Patient", "nope") is None
    with pytest.raises(KeyError):
        parameters("NotAType")
    assert "near" in unsupported("Location")


def test_every_registry_parameter_is_covered(search_parameter_bundle) -> None:
    """Every (base, code) of the bundle is either a parameter of that type or listed as unsupported."""
    types = resource_types()
    for entry in search_parameter_bundle["entry"]:
        sp = entry["resource"]
        for base in sp["base"]:
            bases = sorted(types) if base in ("Resource", "DomainResource") else [base]
            for rtype in bases:
                if base == "DomainResource" and rtype in ("Bundle", "Binary", "Parameters"):
                    continue
                got = parameter(rtype, sp["code"])
                if got is None:
                    assert sp["code"] in unsupported(rtype), (rtype, sp["code"])
                else:
                    assert got.type == sp["type"], (rtype, sp["code"])


def test_plain_paths_dominate() -> None:
    """Nearly every expression part is walked natively; fhirpathpy only for where()/exists() forms."""
    native = other = 0
    for rtype in resource_types():
        for sp in parameters(rtype).values():
            for part in sp.parts:
                if part.alternatives is None:
                    other += 1
                    assert ".where(" in part.expression or "exists()" in part.expression, part.expression
                else:
                    native += 1
    assert native > 20 * other

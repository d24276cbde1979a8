"""ViewDefinition engine behaviour beyond the official suite: error paths, compile-once, FHIR data."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from fhirlake.fhir.json import loads
from fhirlake.views import ViewDefinitionError, compile_view, evaluate

PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "name": [{"use": "official", "family": "Chalmers", "given": ["Peter", "James"]}, {"given": ["Jim"]}],
    "deceasedDateTime": "2020-01-01",
    "managingOrganization": {"reference": "Organization/1"},
}


def view(*columns: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"resource": "Patient", "select": [{"column": list(columns)}], **extra}


def error_of(definition: Any, resources: list[dict[str, Any]] | None = None) -> str:
    with pytest.raises(ViewDefinitionError) as caught:
        evaluate(definition, resources or [PATIENT])
    return str(caught.value)


def test_error_names_the_offending_column_path() -> None:
    definition = view(
        {"name": "id", "path": "id"},
        {"name": "family", "path": "name.family"},
        {"name": "bad", "path": "name.nosuchfunction()"},
    )
    message = error_of(definition)
    assert message.startswith("select[0].column[2].path:")
    assert "nosuchfunction" in message


def test_error_names_nested_select_and_union_branches() -> None:
    nested = {
        "resource": "Patient",
        "select": [{"select": [{"forEach": "name", "column": [{"name": "f", "path": "family.("}]}]}],
    }
    assert error_of(nested).startswith("select[0].select[0].column[0].path:")
    mismatch = {
        "resource": "Patient",
        "select": [
            {
                "unionAll": [
                    {"column": [{"name": "a", "path": "id"}]},
                    {"column": [{"name": "b", "path": "id"}]},
                ]
            }
        ],
    }
    assert error_of(mismatch).startswith("select[0].unionAll[1]:")


@pytest.mark.parametrize(
    ("definition", "where"),
    [
        ({"select": [{"column": [{"name": "id", "path": "id"}]}]}, "resource:"),
        ({"resource": "Patientt", "select": [{"column": [{"name": "id", "path": "id"}]}]}, "resource:"),
        ({"resource": "Patient", "select": []}, "select:"),
        (view({"name": "id", "path": "id"}, status="published"), "status:"),
        (view({"name": "id", "path": "id"}, name="1st view"), "name:"),
        (view({"name": "first name", "path": "id"}), "select[0].column[0].name:"),
        (view({"name": "id"}), "select[0].column[0].path:"),
        (view({"name": "id", "path": "id", "collection": "yes"}), "select[0].column[0].collection:"),
        (view({"name": "id", "path": "%nope"}), "select[0].column[0].path: undefined environment variable"),
        (view({"name": "id", "path": "id"}, constant=[{"name": "c"}]), "constant[0]:"),
        (view({"name": "id", "path": "id"}, where=[{"path": "active = "}]), "where[0].path:"),
    ],
)
def test_invalid_views_are_rejected_with_the_element_path(definition: dict[str, Any], where: str) -> None:
    assert error_of(definition).startswith(where)


def test_duplicate_column_names_across_selects_are_an_error() -> None:
    definition = {
        "resource": "Patient",
        "select": [{"column": [{"name": "id", "path": "id"}]}, {"column": [{"name": "id", "path": "id"}]}],
    }
    assert "'id' is used more than once" in error_of(definition)


def test_a_non_collection_column_with_several_values_is_an_error_naming_the_column() -> None:
    message = error_of(view({"name": "id", "path": "id"}, {"name": "given", "path": "name.given"}))
    assert message.startswith("select[0].column[1].path: Collection value")


def test_a_where_that_is_not_boolean_is_an_error_but_empty_drops_the_resource() -> None:
    assert error_of(view({"name": "id", "path": "id"}, where=[{"path": "name.family"}])).startswith(
        "where[0]"
    )
    assert evaluate(view({"name": "id", "path": "id"}, where=[{"path": "active"}]), [PATIENT]) == []


def test_compiled_view_exposes_columns_and_skips_other_resource_types() -> None:
    compiled = compile_view(
        {
            "name": "people",
            "resource": "Patient",
            "select": [
                {"column": [{"name": "id", "path": "id", "type": "id"}]},
                {"forEach": "name", "column": [{"name": "given", "path": "given", "collection": True}]},
            ],
        }
    )
    assert (compiled.name, compiled.resource) == ("people", "Patient")
    assert [(c.name, c.type, c.collection) for c in compiled.columns] == [
        ("id", "id", False),
        ("given", None, True),
    ]
    assert compiled.rows({"resourceType": "Observation", "id": "o1"}) == []
    assert compiled.rows(PATIENT) == [
        {"id": "p1", "given": ["Peter", "James"]},
        {"id": "p1", "given": ["Jim"]},
    ]


def test_compiled_view_is_reusable_and_does_not_keep_state_between_resources() -> None:
    compiled = compile_view(view({"name": "family", "path": "name.family.first()"}))
    other = {"resourceType": "Patient", "id": "p2"}
    assert [compiled.rows(r) for r in (PATIENT, other, PATIENT)] == [
        [{"family": "Chalmers"}],
        [{"family": None}],
        [{"family": "Chalmers"}],
    ]


def test_fhirpath_functions_views_rely_on() -> None:
    columns = [
        {"name": "key", "path": "getResourceKey()"},
        {"name": "org", "path": "managingOrganization.getReferenceKey(Organization)"},
        {"name": "not_patient", "path": "managingOrganization.getReferenceKey(Patient)"},
        {"name": "dead", "path": "deceased.ofType(dateTime).exists()"},
        {"name": "choice", "path": "deceased"},
        {"name": "given", "path": "name.where(use = 'official').given.join(' ')"},
        {"name": "last_given", "path": "name.given.last()"},
        {"name": "n", "path": "name.given.count() + 1"},
        {"name": "upper", "path": "name.family.first().upper() & '!'"},
        {"name": "iif", "path": "iif(name.count() > 1, 'many', 'one')"},
        {"name": "low", "path": "deceased.ofType(dateTime).lowBoundary()"},
        {"name": "is_string", "path": "name.family.first() is string"},
        {"name": "date_cmp", "path": "deceased.ofType(dateTime) > @2019-12-31"},
    ]
    assert evaluate(view(*columns), [PATIENT]) == [
        {
            "key": "p1",
            "org": "1",
            "not_patient": None,
            "dead": True,
            "choice": "2020-01-01",
            "given": "Peter James",
            "last_given": "Jim",
            "n": 4,
            "upper": "CHALMERS!",
            "iif": "many",
            "low": "2020-01-01T00:00:00.000000000+14:00",
            "is_string": True,
            "date_cmp": True,
        }
    ]


@pytest.mark.parametrize(
    ("reference", "key"),
    [
        ("Patient/123", "123"),
        ("Patient/123/_history/4", "123"),
        ("https://fhir.example.org/r4/Patient/123", "123"),
        ("urn:uuid:5b4b3a1e-0000-4000-8000-000000000001", None),  # typed: a uuid names no type
        ("#contained", None),
        ("Patient?identifier=http://hospital|42", None),
        ("Group/7", None),
    ],
)
def test_get_reference_key_of_patient(reference: str, key: str | None) -> None:
    condition = {"resourceType": "Condition", "id": "c1", "subject": {"reference": reference}}
    definition = {
        "resource": "Condition",
        "select": [{"column": [{"name": "k", "path": "subject.getReferenceKey(Patient)"}]}],
    }
    assert evaluate(definition, [condition]) == [{"k": key}]


def test_decimals_keep_their_precision_through_a_view() -> None:
    observation = loads(b'{"resourceType":"Observation","id":"o","valueQuantity":{"value":7.50,"unit":"%"}}')
    definition = {
        "resource": "Observation",
        "select": [{"column": [{"name": "v", "path": "value.ofType(Quantity).value", "type": "decimal"}]}],
    }
    [row] = evaluate(definition, [observation])
    assert row["v"] == Decimal("7.50") and row["v"].text == "7.50"


def test_constants_of_every_kind_are_folded_in() -> None:
    definition = view(
        {"name": "official", "path": "name.where(use = %use).family"},
        {"name": "second", "path": "name[%index].given.first()"},
        {"name": "before", "path": "deceased.ofType(dateTime) < %day"},
        constant=[
            {"name": "use", "valueCode": "official"},
            {"name": "index", "valueInteger": 1},
            {"name": "day", "valueDate": "2021-06-01"},
        ],
    )
    assert evaluate(definition, [PATIENT]) == [{"official": "Chalmers", "second": "Jim", "before": True}]


def test_nulls_that_align_primitive_extensions_are_not_values() -> None:
    patient = {
        "resourceType": "Patient",
        "id": "p",
        "name": [
            {"given": [None, "Bo"], "_given": [{"extension": [{"url": "u", "valueString": "x"}]}, None]}
        ],
    }
    definition = view({"name": "given", "path": "name.given", "collection": True})
    assert evaluate(definition, [patient]) == [{"given": ["Bo"]}]


def test_evaluation_errors_name_the_element_that_failed() -> None:
    # '+' on a collection of two strings is an error in FHIRPath (a singleton operator)
    message = error_of(view({"name": "id", "path": "id"}, {"name": "x", "path": "name.given + 'x'"}))
    assert message.startswith("select[0].column[1].path:")
    for_each = {"resource": "Patient", "select": [{"forEach": "name.given.substring(name.given)", "column": [
        {"name": "g", "path": "$this"}]}]}  # fmt: skip
    assert error_of(for_each).startswith("select[0].forEach:")


def test_date_and_time_literals_compare_with_fhir_json_values() -> None:
    observation = {
        "resourceType": "Observation",
        "id": "o",
        "valueTime": "12:30:00",
        "issued": "2021-03-04T10:00:00Z",
    }
    definition = {
        "resource": "Observation",
        "select": [{"column": [
            {"name": "after_noon", "path": "value.ofType(time) > @T12:00"},
            {"name": "same_time", "path": "value.ofType(time) = @T12:30:00"},
            {"name": "issued_2021", "path": "issued >= @2021-01-01T00:00:00Z and issued < @2022"},
        ]}],
    }  # fmt: skip
    assert evaluate(definition, [observation]) == [
        {"after_noon": True, "same_time": True, "issued_2021": True}
    ]

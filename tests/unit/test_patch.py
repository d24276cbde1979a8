"""The patch documents (fhirlake.fhir.patch): JSON Patch (RFC 6902) and FHIRPath Patch (fhirpatch.html)."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
from fhirlake.fhir.outcome import FhirError
from fhirlake.fhir.patch import (
    apply_fhirpath_patch,
    apply_json_patch,
    json_equal,
    patch_document,
    patch_from_bundle_resource,
)


def raises(status: int, call: Any, *args: Any, **kwargs: Any) -> FhirError:
    with pytest.raises(FhirError) as caught:
        call(*args, **kwargs)
    assert caught.value.status == status, caught.value.issues
    return caught.value


# == JSON Patch: RFC 6902 appendix A ==================================================================
RFC_6902_APPENDIX_A = [
    ("A.1", {"foo": "bar"}, [{"op": "add", "path": "/baz", "value": "qux"}], {"baz": "qux", "foo": "bar"}),
    (
        "A.2",
        {"foo": ["bar", "baz"]},
        [{"op": "add", "path": "/foo/1", "value": "qux"}],
        {"foo": ["bar", "qux", "baz"]},
    ),
    ("A.3", {"baz": "qux", "foo": "bar"}, [{"op": "remove", "path": "/baz"}], {"foo": "bar"}),
    ("A.4", {"foo": ["bar", "qux", "baz"]}, [{"op": "remove", "path": "/foo/1"}], {"foo": ["bar", "baz"]}),
    (
        "A.5",
        {"baz": "qux", "foo": "bar"},
        [{"op": "replace", "path": "/baz", "value": "boo"}],
        {"baz": "boo", "foo": "bar"},
    ),
    (
        "A.6",
        {"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
        [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
        {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}},
    ),
    (
        "A.7",
        {"foo": ["all", "grass", "cows", "eat"]},
        [{"op": "move", "from": "/foo/1", "path": "/foo/3"}],
        {"foo": ["all", "cows", "eat", "grass"]},
    ),
    (
        "A.8",
        {"baz": "qux", "foo": ["a", 2, "c"]},
        [{"op": "test", "path": "/baz", "value": "qux"}, {"op": "test", "path": "/foo/1", "value": 2}],
        {"baz": "qux", "foo": ["a", 2, "c"]},
    ),
    (
        "A.10",
        {"foo": "bar"},
        [{"op": "add", "path": "/child", "value": {"grandchild": {}}}],
        {"foo": "bar", "child": {"grandchild": {}}},
    ),
    (
        "A.11",
        {"foo": "bar"},
        [{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}],
        {"foo": "bar", "baz": "qux"},
    ),
    ("A.14", {"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": 10}], {"/": 9, "~1": 10}),
    (
        "A.16",
        {"foo": ["bar"]},
        [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}],
        {"foo": ["bar", ["abc", "def"]]},
    ),
]


@pytest.mark.parametrize(
    ("document", "operations", "expected"),
    [case[1:] for case in RFC_6902_APPENDIX_A],
    ids=[case[0] for case in RFC_6902_APPENDIX_A],
)
def test_rfc6902_appendix_a(document: Any, operations: list[Any], expected: Any) -> None:
    before = copy.deepcopy(document)
    assert apply_json_patch(document, operations) == expected
    assert document == before  # the input is never modified


@pytest.mark.parametrize(
    ("name", "document", "operations"),
    [
        ("A.9 test error", {"baz": "qux"}, [{"op": "test", "path": "/baz", "value": "bar"}]),
        ("A.12 add to a nonexistent target", {"foo": "bar"}, [{"op": "add", "path": "/baz/bat", "value": 1}]),
        (
            "A.15 a string is not a number",
            {"/": 9, "~1": 10},
            [{"op": "test", "path": "/~01", "value": "10"}],
        ),
    ],
)
def test_rfc6902_appendix_a_errors_are_unprocessable(name: str, document: Any, operations: list[Any]) -> None:
    error = raises(422, apply_json_patch, document, operations)
    assert error.issues[0].expression[0].startswith("/0"), name


def test_json_patch_is_all_or_nothing() -> None:
    document = {"a": 1}
    operations = [
        {"op": "replace", "path": "/a", "value": 2},
        {"op": "add", "path": "/b", "value": 3},
        {"op": "test", "path": "/a", "value": 1},  # fails after two changes
    ]
    error = raises(422, apply_json_patch, document, operations)
    assert error.issues[0].expression == ("/2",)
    assert document == {"a": 1}


@pytest.mark.parametrize(
    ("operations", "expression"),
    [
        ({"op": "add"}, "/"),
        ([{"op": "add", "path": "/a", "value": 1}, "not an object"], "/1"),
        ([{"op": "frobnicate", "path": "/a"}], "/0/op"),
        ([{"op": "add", "value": 1}], "/0/path"),
        ([{"op": "add", "path": "/a"}], "/0/value"),
        ([{"op": "move", "path": "/a"}], "/0/from"),
        ([{"op": "remove", "path": "a"}], "/0/path"),
        ([{"op": "test", "path": "/a", "value": 1}, {"op": "remove", "path": "/a~2"}], "/1/path"),
    ],
)
def test_malformed_json_patch_is_400_at_the_operation(operations: Any, expression: str) -> None:
    error = raises(400, apply_json_patch, {"a": 1}, operations)
    assert error.issues[0].expression == (expression,)


@pytest.mark.parametrize(
    "operation",
    [
        {"op": "add", "path": "/list/00", "value": 1},  # leading zeros are not array indexes
        {"op": "add", "path": "/list/3", "value": 1},  # beyond the end
        {"op": "replace", "path": "/list/-", "value": 1},  # '-' is only for add
        {"op": "remove", "path": "/missing"},
        {"op": "copy", "from": "/missing", "path": "/b"},
        {"op": "move", "from": "/list", "path": "/list/0"},  # into itself
    ],
)
def test_json_patch_operations_that_cannot_apply(operation: dict[str, Any]) -> None:
    with pytest.raises(FhirError) as caught:
        apply_json_patch({"list": [1, 2]}, [operation])
    assert caught.value.status in (400, 422)


def test_json_patch_copy_is_independent_and_root_add_replaces_the_document() -> None:
    result = apply_json_patch({"a": {"x": 1}}, [{"op": "copy", "from": "/a", "path": "/b"}])
    result["b"]["x"] = 2
    assert result["a"] == {"x": 1}
    assert apply_json_patch({"a": 1}, [{"op": "add", "path": "", "value": {"b": 2}}]) == {"b": 2}


def test_json_equality_follows_rfc6902() -> None:
    assert json_equal(1, 1.0) and json_equal({"a": [1, "x"]}, {"a": [1.0, "x"]})
    assert not json_equal(True, 1) and not json_equal(0, False) and not json_equal(None, 0)
    assert not json_equal([1, 2], [2, 1]) and not json_equal({"a": 1}, {"a": 1, "b": 2})


# == FHIRPath Patch ===================================================================================
PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "p1",
    "active": True,
    "identifier": [{"system": "urn:mrn", "value": "1"}, {"system": "urn:ssn", "value": "2"}],
    "name": [{"family": "Chalmers", "given": ["Peter", "James"], "_given": [None, {"id": "g2"}]}],
}


def operation(kind: str, path: str, **parts: Any) -> dict[str, Any]:
    """One FHIRPath Patch operation; ``value`` is the value part's body (value[x] or part)."""
    out: list[dict[str, Any]] = [
        {"name": "type", "valueCode": kind},
        {"name": "path", "valueString": path},
    ]
    for name, value in parts.items():
        if name == "value":
            out.append({"name": "value", **value})
        elif name == "name":
            out.append({"name": "name", "valueString": value})
        else:
            out.append({"name": name, "valueInteger": value})
    return {"name": "operation", "part": out}


def fhirpath_patch(resource: dict[str, Any], *operations: dict[str, Any]) -> dict[str, Any]:
    return apply_fhirpath_patch(resource, {"resourceType": "Parameters", "parameter": list(operations)})


def test_replace_with_where_filter() -> None:
    patched = fhirpath_patch(
        PATIENT,
        operation(
            "replace", "Patient.identifier.where(system = 'urn:ssn').value", value={"valueString": "3"}
        ),
    )
    assert patched["identifier"] == [{"system": "urn:mrn", "value": "1"}, {"system": "urn:ssn", "value": "3"}]
    assert PATIENT["identifier"][1]["value"] == "2"  # the input is never modified


def test_add_appends_to_repeating_elements_and_sets_single_ones() -> None:
    patched = fhirpath_patch(
        PATIENT,
        operation("add", "Patient", name="birthDate", value={"valueDate": "1974-12-25"}),
        operation(
            "add", "Patient", name="telecom", value={"valueContactPoint": {"system": "phone", "value": "1"}}
        ),
        operation("add", "Patient.name[0]", name="given", value={"valueString": "Jim"}),
    )
    assert patched["birthDate"] == "1974-12-25"
    assert patched["telecom"] == [{"system": "phone", "value": "1"}]  # created as an array: 0..*
    assert patched["name"][0]["given"] == ["Peter", "James", "Jim"]
    assert patched["name"][0]["_given"] == [None, {"id": "g2"}, None]  # extensions stay aligned


def test_add_of_a_backbone_element_from_nested_parts() -> None:
    contact = {
        "part": [
            {"name": "name", "valueHumanName": {"family": "Du Marché"}},
            {"name": "telecom", "valueContactPoint": {"system": "phone", "value": "0690383372"}},
            {"name": "gender", "valueCode": "female"},
        ]
    }
    patched = fhirpath_patch(PATIENT, operation("add", "Patient", name="contact", value=contact))
    assert patched["contact"] == [
        {
            "name": {"family": "Du Marché"},
            "telecom": [{"system": "phone", "value": "0690383372"}],
            "gender": "female",
        }
    ]


def test_insert_and_move_in_a_list() -> None:
    patched = fhirpath_patch(
        PATIENT,
        operation("insert", "Patient.identifier", index=0, value={"valueIdentifier": {"value": "0"}}),
        operation("move", "Patient.name.given", source=1, destination=0),
    )
    assert [i["value"] for i in patched["identifier"]] == ["0", "1", "2"]
    assert patched["name"][0]["given"] == ["James", "Peter"]
    assert patched["name"][0]["_given"] == [{"id": "g2"}, None]


def test_delete_prunes_empty_arrays_and_objects_and_ignores_a_missing_element() -> None:
    patched = fhirpath_patch(
        PATIENT,
        operation("delete", "Patient.name.given.first()"),
        operation("delete", "Patient.name.given.last()"),
        operation("delete", "Patient.name[0].family"),
        operation("delete", "Patient.birthDate"),  # not there: nothing to do (fhirpatch.html)
    )
    assert "name" not in patched  # given, _given, then the empty HumanName and the empty array went


def test_replace_of_a_choice_element_may_change_its_type() -> None:
    observation = {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"text": "weight"},
        "valueQuantity": {"value": 70, "unit": "kg"},
    }
    patched = fhirpath_patch(
        observation, operation("replace", "Observation.value", value={"valueString": "heavy"})
    )
    assert "valueQuantity" not in patched and patched["valueString"] == "heavy"
    removed = fhirpath_patch(observation, operation("delete", "Observation.value.ofType(Quantity)"))
    assert "valueQuantity" not in removed
    added = fhirpath_patch(
        removed, operation("add", "Observation", name="value", value={"valueBoolean": True})
    )
    assert added["valueBoolean"] is True


@pytest.mark.parametrize(
    ("op", "status", "message"),
    [
        (operation("delete", "Patient.identifier"), 422, "selects 2"),
        (
            operation("add", "Patient", name="active", value={"valueBoolean": False}),
            422,
            "already has a value",
        ),
        (operation("add", "Patient", name="telecom", value={"valueHumanName": {"family": "x"}}), 422, "type"),
        (operation("add", "Patient", name="nickname", value={"valueString": "x"}), 422, "not an element"),
        (operation("insert", "Patient.identifier", index=5, value={"valueIdentifier": {}}), 422, "beyond"),
        (operation("move", "Patient.identifier", source=0, destination=2), 422, "below 2"),
        (operation("replace", "Patient.gender", value={"valueCode": "male"}), 422, "selects 0"),
        (operation("replace", "Observation.status", value={"valueCode": "final"}), 422, "Observation"),
        (operation("delete", "Patient.descendants()"), 400, "descendants()"),
        (operation("delete", "Patient.managingOrganization.resolve().name"), 400, "resolve()"),
        (operation("delete", "Patient.name.where(family = )"), 400, "where()"),
        (operation("delete", "Patient.name{0}"), 400, "Unexpected"),
        (
            operation("insert", "Patient.identifier.first()", index=0, value={"valueIdentifier": {}}),
            400,
            "end with",
        ),
    ],
)
def test_operations_that_cannot_apply_or_are_unsupported(
    op: dict[str, Any], status: int, message: str
) -> None:
    error = raises(status, fhirpath_patch, PATIENT, op)
    assert message in error.issues[0].diagnostics
    assert error.issues[0].expression[0].startswith("Parameters.parameter[0]")


@pytest.mark.parametrize(
    ("parameters", "expression"),
    [
        ({"resourceType": "Parameters"}, "Parameters"),
        ({"resourceType": "Parameters", "parameter": [{"name": "op"}]}, "Parameters.parameter[0]"),
        (
            {
                "resourceType": "Parameters",
                "parameter": [operation("delete", "Patient.active"), {"name": "operation"}],
            },
            "Parameters.parameter[1]",
        ),
        (
            {"resourceType": "Parameters", "parameter": [operation("remove", "Patient.active")]},
            "Parameters.parameter[0].part[0]",
        ),
        (
            {"resourceType": "Parameters", "parameter": [operation("add", "Patient", name="gender")]},
            "Parameters.parameter[0]",
        ),
        (
            {
                "resourceType": "Parameters",
                "parameter": [operation("insert", "Patient.identifier", index=-1)],
            },
            "Parameters.parameter[0]",
        ),
    ],
)
def test_malformed_fhirpath_patch_is_400_at_the_parameter(
    parameters: dict[str, Any], expression: str
) -> None:
    error = raises(400, apply_fhirpath_patch, PATIENT, parameters)
    assert error.issues[0].expression[0].startswith(expression)


def test_fhirpath_patch_is_all_or_nothing() -> None:
    before = copy.deepcopy(PATIENT)
    raises(
        422,
        fhirpath_patch,
        PATIENT,
        operation("delete", "Patient.active"),
        operation("delete", "Patient.identifier"),
    )
    assert before == PATIENT


# == documents =======================================================================================
def test_a_patch_cannot_change_id_or_resource_type() -> None:
    for change in (
        {"op": "replace", "path": "/id", "value": "other"},
        {"op": "remove", "path": "/resourceType"},
    ):
        raises(422, patch_document([change], json_patch=True).apply, PATIENT)
    raises(
        422,
        patch_document(
            {"resourceType": "Parameters", "parameter": [operation("delete", "Patient.id")]}, json_patch=False
        ).apply,
        PATIENT,
    )


def test_patch_document_formats() -> None:
    assert patch_document([], json_patch=False).format == "json-patch"  # an array is a JSON Patch
    assert patch_document({"resourceType": "Parameters"}, json_patch=False).format == "fhirpath-patch"
    raises(400, patch_document, {"resourceType": "Patient"}, json_patch=False)
    raises(400, patch_document, {"resourceType": "Parameters"}, json_patch=True)


def test_bundle_entry_patches() -> None:
    operations = [{"op": "replace", "path": "/active", "value": False}]
    binary = {
        "resourceType": "Binary",
        "contentType": "application/json-patch+json",
        "data": base64.b64encode(json.dumps(operations).encode()).decode(),
    }
    assert patch_from_bundle_resource(binary, "Bundle.entry[0].resource").apply(PATIENT)["active"] is False
    raises(415, patch_from_bundle_resource, {**binary, "contentType": "text/plain"}, "x")
    raises(400, patch_from_bundle_resource, {**binary, "data": "%%%"}, "x")
    raises(400, patch_from_bundle_resource, {"resourceType": "Patient"}, "x")
    parameters = {"resourceType": "Parameters", "parameter": [operation("delete", "Patient.active")]}
    assert "active" not in patch_from_bundle_resource(parameters, "x").apply(PATIENT)


# == the service: a patch is an update of the current version ==========================================
def test_patch_is_reapplied_on_top_of_a_concurrent_write(settings: Any) -> None:
    from fhirlake.bootstrap import build_store
    from fhirlake.service.crud import ResourceService
    from fhirlake.validation import get_validator

    from tests.unit.test_service import RacingStore

    store = build_store(settings)
    ResourceService(store, get_validator("strict")).update("Patient", "p1", PATIENT, None)
    add_gender = patch_document([{"op": "add", "path": "/gender", "value": "female"}], json_patch=True)
    racing = ResourceService(RacingStore(store, losses=1), get_validator("strict"))
    result = racing.patch("Patient", "p1", add_gender, None)
    assert result.version.version_id == 3 and not result.created
    # the rival's change (active: false in v2) is kept, not overwritten by a patch of v1
    assert result.version.resource["active"] is False and result.version.resource["gender"] == "female"
    with pytest.raises(FhirError) as caught:
        ResourceService(RacingStore(store, losses=1), get_validator("strict")).patch(
            "Patient", "p1", add_gender, 'W/"3"'
        )
    assert caught.value.status == 412

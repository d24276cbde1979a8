"""The lake's columns: derived from the R4 StructureDefinitions, finite, and declared alike for Glue/Trino."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
from fhirlake.fhir import json as fhir_json
from fhirlake.fhir.types import resource_types
from fhirlake.lake.rows import history_table, patient_id
from fhirlake.lake.schema import hive_type, resource_schema, trino_type
from fhirlake.lake.viewdefs import load_views
from fhirlake.persistence import StoredVersion
from fhirlake.views import default_views

GLUE_TYPE_LIMIT = 131_072  # characters of one Glue column type


def fields(t: pa.DataType) -> dict[str, pa.DataType]:
    return {f.name: f.type for f in t}


def test_every_r4_type_has_a_schema_glue_accepts() -> None:
    for resource_type in sorted(resource_types()):
        schema = resource_schema(resource_type).history
        assert schema.names[:5] == ["id", "version_id", "last_updated", "patient_id", "deleted"]
        assert schema.names[-1] == "resource_json"
        assert all(len(hive_type(f.type)) < GLUE_TYPE_LIMIT for f in schema), resource_type


def test_elements_keep_the_json_nesting_and_names() -> None:
    observation = fields(resource_schema("Observation").elements)
    assert observation["status"] == pa.string()
    assert observation["valueQuantity"] == pa.struct(
        [("value", pa.float64()), ("comparator", pa.string()), ("unit", pa.string()), ("system", pa.string()),
         ("code", pa.string())]
    )  # fmt: skip
    assert {"valueString", "valueBoolean", "valueInteger", "valuePeriod", "effectiveDateTime"} <= set(
        observation
    )
    assert observation["valueInteger"] == pa.int32()
    assert observation["effectiveDateTime"] == pa.string()  # partial dates stay ISO strings
    coding = fields(fields(observation["code"])["coding"].value_type)
    assert list(coding) == ["system", "version", "code", "display", "userSelected"]
    assert pa.types.is_list(observation["component"])
    assert "contained" not in observation and "modifierExtension" not in observation


def test_recursion_and_open_types_are_cut() -> None:
    patient = fields(resource_schema("Patient").elements)
    reference = fields(patient["managingOrganization"])
    identifier = fields(reference["identifier"])
    assert "assigner" not in identifier  # Reference.identifier.assigner would recurse
    assert list(identifier) == ["use", "type", "system", "value", "period"]
    questionnaire_item = fields(fields(resource_schema("Questionnaire").elements)["item"].value_type)
    assert "item" not in questionnaire_item  # Questionnaire.item.item
    extension = fields(patient["extension"].value_type)
    nested = fields(extension["extension"].value_type)
    assert "extension" not in nested  # two levels: US Core race/ethnicity
    assert {"url", "valueCoding", "valueString", "valueAddress"} <= set(nested)
    assert "valueHumanName" not in extension  # open choices keep primitives and a few common types


def test_the_same_schema_gives_hive_and_trino_types() -> None:
    quantity = fields(resource_schema("Observation").elements)["referenceRange"]
    assert hive_type(quantity).startswith("array<struct<low:struct<value:double,")
    assert trino_type(quantity).startswith('array(row("low" row("value" double, ')
    period = fields(resource_schema("Encounter").elements)["period"]
    assert hive_type(period) == "struct<start:string,end:string>"
    assert trino_type(period) == 'row("start" varchar, "end" varchar)'
    assert resource_schema("Patient") is resource_schema("Patient")  # built once per process


def version(resource: dict, version_id: int = 1) -> StoredVersion:
    return StoredVersion(
        resource["resourceType"], resource["id"], version_id, "2025-01-02T03:04:05.678Z", "PUT", resource
    )


def test_values_that_do_not_fit_become_null_and_resource_json_keeps_them() -> None:
    exact = fhir_json.loads(
        b'{"resourceType":"Observation","id":"o1","status":"final","valueQuantity":{"value":1.50}}'
    )
    assert isinstance(exact["valueQuantity"]["value"], Decimal)
    odd = {"resourceType": "Observation", "id": "o2", "status": 7, "code": {"coding": {"code": "x"}}}
    table = history_table("Observation", [version(exact), version(odd)])
    rows = {r["id"]: r for r in table.to_pylist()}
    assert rows["o1"]["valueQuantity"]["value"] == 1.5
    assert '"value":1.50' in rows["o1"]["resource_json"]  # the exact decimal text survives
    assert rows["o2"]["status"] is None and rows["o2"]["code"] == {"coding": None, "text": None}
    assert fhir_json.loads(rows["o2"]["resource_json"]) == odd


def test_a_tombstone_is_a_row_without_elements() -> None:
    table = history_table(
        "Observation", [StoredVersion("Observation", "o1", 3, "2025-01-02T03:04:05.678Z", "DELETE", None)]
    )
    (row,) = table.to_pylist()
    assert (row["id"], row["version_id"], row["deleted"], row["resource_json"], row["patient_id"]) == (
        "o1", 3, True, None, None
    )  # fmt: skip


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        ({"resourceType": "Patient", "id": "p1"}, "p1"),
        ({"resourceType": "Observation", "id": "o", "subject": {"reference": "Patient/p2"}}, "p2"),
        ({"resourceType": "Observation", "id": "o", "subject": {"reference": "Group/g"}}, None),
        (  # a performer only: still in the patient's compartment
            {"resourceType": "Observation", "id": "o", "performer": [{"reference": "Patient/p3"}]},
            "p3",
        ),
        ({"resourceType": "Immunization", "id": "i", "patient": {"reference": "Patient/p4"}}, "p4"),
        (
            {
                "resourceType": "Encounter",
                "id": "e",
                "subject": {"reference": "https://x.org/fhir/Patient/p5"},
            },
            "p5",
        ),
        ({"resourceType": "Practitioner", "id": "pr"}, None),
    ],
)
def test_patient_id_comes_from_the_patient_compartment(resource: dict, expected: str | None) -> None:
    assert patient_id(resource) == expected


def test_deployments_add_and_replace_views_with_a_folder(tmp_path: Path) -> None:
    shipped = {v["name"]: v for v in default_views()}
    (tmp_path / "a1c.json").write_text(json.dumps({**shipped["observations"], "name": "hba1c_values"}))
    replaced = {**shipped["conditions"], "select": [{"column": [{"name": "id", "path": "id"}]}]}
    (tmp_path / "conditions.json").write_text(json.dumps(replaced))
    (tmp_path / "broken.json").write_text(json.dumps({"name": "broken", "resource": "Patient", "select": 3}))
    (tmp_path / "clash.json").write_text(json.dumps({**shipped["conditions"], "name": "condition"}))
    (tmp_path / "nameless.json").write_text(
        json.dumps({k: v for k, v in shipped["procedures"].items() if k != "name"})
    )
    (tmp_path / "truncated.json").write_text('{"resourceType": "ViewDefinition", "name": "half"')
    views = {v.name: v for v in load_views(str(tmp_path))}
    # the broken, clashing, nameless and unreadable ones are left out, the others still load
    assert set(views) == set(shipped) | {"hba1c_values"}
    assert [c.name for c in views["conditions"].columns] == ["id"]

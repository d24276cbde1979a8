"""The lake handler on the table's real stream: what SQL sees equals what the FHIR API serves."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import duckdb
import pytest
from fhirlake.fhir import json as fhir_json
from fhirlake.fhir.outcome import FhirError
from fhirlake.lake.storage import view_sql
from fhirlake.service.crud import ResourceService

from tests.lake.conftest import Delivery, World, lake_world


def observation(patient: str, code: str, value: float | str, status: str = "final") -> dict:
    return {
        "resourceType": "Observation",
        "status": status,
        "code": {
            "coding": [{"system": "http://loinc.org", "code": code}, {"system": "urn:local", "code": "x"}]
        },
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": "2024-03",
        "valueQuantity": {"value": value, "unit": "%"},
    }


def write_scenario(service: ResourceService) -> dict[str, str]:
    """Two patients and their observations, with an update and a delete."""
    alice = service.create("Patient", {"resourceType": "Patient", "name": [{"family": "A", "given": ["Al"]}]})
    bob = service.create("Patient", {"resourceType": "Patient", "name": [{"family": "B"}]})
    a, b = alice.version.id, bob.version.id
    hba1c = service.create("Observation", observation(a, "4548-4", 6.1))
    service.update(
        "Observation", hba1c.version.id, {**observation(a, "4548-4", 7.2), "id": hba1c.version.id}, None
    )
    gone = service.create("Observation", observation(b, "39156-5", 31.0))
    service.delete("Observation", gone.version.id, None)
    bmi = service.create("Observation", observation(b, "39156-5", 29.5))
    return {"alice": a, "bob": b, "hba1c": hba1c.version.id, "gone": gone.version.id, "bmi": bmi.version.id}


@dataclass
class Streamed:
    world: World
    ids: dict[str, str]
    deliveries: list[Delivery]
    db: duckdb.DuckDBPyConnection

    def rows(self, query: str) -> list[tuple[Any, ...]]:
        return self.db.execute(query).fetchall()


@pytest.fixture(scope="module")
def streamed() -> Iterator[Streamed]:
    """One scenario written and streamed into the lake, shared by the tests that only read it."""
    with lake_world() as world:
        ids = write_scenario(world.service)
        deliveries = world.pump()
        with world.sql.connect() as db:
            yield Streamed(world, ids, deliveries, db)


def api_state(service: ResourceService, resource_type: str, ids: list[str]) -> set[tuple[str, int]]:
    """(id, version) of the live resources among ``ids``, as the FHIR API reads them."""
    live = set()
    for rid in ids:
        try:
            live.add((rid, service.read(resource_type, rid).version_id))
        except FhirError as gone:
            assert gone.status == 410
    return live


def test_current_view_equals_the_api_and_history_keeps_every_version(streamed: Streamed) -> None:
    ids = streamed.ids
    assert streamed.deliveries and all(d.response == {"batchItemFailures": []} for d in streamed.deliveries)
    observations = [ids["hba1c"], ids["gone"], ids["bmi"]]
    expected = api_state(streamed.world.service, "Observation", observations)
    assert set(streamed.rows("SELECT id, version_id FROM observation")) == expected
    assert expected == {(ids["hba1c"], 2), (ids["bmi"], 1)}
    hba1c = streamed.rows(f"SELECT valueQuantity.value FROM observation WHERE id = '{ids['hba1c']}'")
    assert hba1c == [(7.2,)]  # the update, not the first version
    history = streamed.rows("SELECT id, version_id, deleted FROM observation_history")
    assert sorted(history) == sorted(
        [
            (ids["hba1c"], 1, False),
            (ids["hba1c"], 2, False),
            (ids["gone"], 1, False),
            (ids["gone"], 2, True),
            (ids["bmi"], 1, False),
        ]
    )
    assert {r[0] for r in streamed.rows("SELECT id FROM patient")} == {ids["alice"], ids["bob"]}


def test_nested_columns_patient_and_resource_json(streamed: Streamed) -> None:
    ids = streamed.ids
    rows = streamed.rows(
        "SELECT id, patient_id, code.coding[1].code, code.coding[2].system, effectiveDateTime, "
        "valueQuantity.unit, resource_json, last_updated FROM observation"
    )
    by_id = {r[0]: r for r in rows}
    assert by_id[ids["hba1c"]][1:6] == (ids["alice"], "4548-4", "urn:local", "2024-03", "%")
    assert by_id[ids["bmi"]][1] == ids["bob"]
    stored = streamed.world.service.read("Observation", ids["hba1c"])
    assert fhir_json.loads(by_id[ids["hba1c"]][6]) == stored.resource  # lossless
    assert by_id[ids["hba1c"]][7].isoformat(timespec="milliseconds") + "Z" == stored.last_updated
    # UNNEST over a repeating element, as Trino SQL writes it
    codes = streamed.rows("SELECT c.code FROM observation CROSS JOIN UNNEST(code.coding) AS t(c) ORDER BY 1")
    assert [c for (c,) in codes] == ["39156-5", "4548-4", "x", "x"]
    assert streamed.rows(f"SELECT patient_id FROM patient WHERE id = '{ids['alice']}'") == [(ids["alice"],)]


def test_catalog_declares_tables_and_presto_views(streamed: Streamed) -> None:
    lake = streamed.world.lake
    tables = lake.catalog.tables()
    history = tables["observation_history"]
    assert history["TableType"] == "EXTERNAL_TABLE"
    storage = history["StorageDescriptor"]
    assert storage["SerdeInfo"]["SerializationLibrary"].endswith("ParquetHiveSerDe")
    assert storage["Location"] == f"s3://{lake.files.bucket}/tables/observation_history/"
    columns = [(c["Name"], c["Type"]) for c in storage["Columns"]]
    assert columns[:5] == [
        ("id", "string"),
        ("version_id", "bigint"),
        ("last_updated", "timestamp"),
        ("patient_id", "string"),
        ("deleted", "boolean"),
    ]
    assert columns[-1] == ("resource_json", "string")
    quantity = "struct<value:double,comparator:string,unit:string,system:string,code:string>"
    assert ("valuequantity", quantity) in columns

    view = tables["observation"]
    assert view["TableType"] == "VIRTUAL_VIEW"
    assert view["Parameters"]["presto_view"] == "true"
    assert view["ViewExpandedText"] == "/* Presto View */"
    assert "observation_history" in view_sql(view["ViewOriginalText"])
    view_columns = [c["Name"] for c in view["StorageDescriptor"]["Columns"]]
    assert view_columns[:4] == ["id", "version_id", "last_updated", "patient_id"]
    assert "deleted" not in view_columns
    assert {"observation_codes_history", "observation_codes", "patient_names", "patient"} <= set(tables)


def test_view_definitions_show_the_rows_of_current_versions(streamed: Streamed) -> None:
    ids = streamed.ids
    rows = streamed.rows("SELECT id, patient_id, code, value FROM observation_codes ORDER BY id, code")
    assert rows == sorted(
        [
            (ids["hba1c"], ids["alice"], "4548-4", 7.2),
            (ids["hba1c"], ids["alice"], "x", 7.2),
            (ids["bmi"], ids["bob"], "39156-5", 29.5),
            (ids["bmi"], ids["bob"], "x", 29.5),
        ]
    )
    assert streamed.rows("SELECT family, given FROM patient_names ORDER BY family") == [
        ("A", ["Al"]),
        ("B", None),
    ]
    names = [
        c["Name"]
        for c in streamed.world.lake.catalog.tables()["patient_names"]["StorageDescriptor"]["Columns"]
    ]
    assert names == ["id", "family", "given"]

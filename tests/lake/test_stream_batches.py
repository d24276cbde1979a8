"""The lake handler on batches that need care: redelivery, other records, unreadable bodies."""

from __future__ import annotations

import base64
import zlib

import pytest
from fhirlake.fhir import json as fhir_json
from fhirlake.topology import LAKE_STREAM_FILTER

from tests.lake.conftest import Pump, World, invoke_lake
from tests.lake.test_stream_to_lake import write_scenario


@pytest.fixture
def written(world: World) -> dict[str, str]:
    return write_scenario(world.service)


def test_a_version_without_view_rows_hides_the_older_rows(world: World, written: dict[str, str]) -> None:
    world.service.update(
        "Patient", written["alice"], {"resourceType": "Patient", "id": written["alice"]}, None
    )
    world.pump()
    assert world.sql.rows("SELECT family FROM patient_names") == [("B",)]
    assert world.sql.rows("SELECT count(*) FROM patient_names_history WHERE _row = 0") == [(1,)]


def test_redelivered_batches_change_nothing_users_see(world: World, written: dict[str, str]) -> None:
    deliveries = world.pump()
    before_files = world.files()
    queries = [
        "SELECT id, version_id FROM observation ORDER BY id",
        "SELECT * FROM observation_codes ORDER BY id, code",
        "SELECT count(*), count(DISTINCT (id, version_id)) FROM observation_history",
    ]
    before = [world.sql.rows(q) for q in queries]
    for delivery in deliveries:  # the same events again, as after a timeout
        invoke_lake(delivery.event)
    assert world.files() == before_files  # same batch -> same objects
    assert [world.sql.rows(q) for q in queries] == before
    # after compaction merged the first copies, a redelivery adds rows, which the current views ignore
    bmi = world.service.read("Observation", written["bmi"]).resource
    world.service.update("Observation", written["bmi"], {**bmi, "status": "amended"}, None)
    world.pump()
    before = [world.sql.rows(q) for q in queries]
    assert world.lake.maintenance.compact().compacted["observation_history"] == 2
    for delivery in deliveries:
        invoke_lake(delivery.event)
    assert [world.sql.rows(q) for q in queries[:2]] == before[:2]
    total, distinct = world.sql.rows(queries[2])[0]
    assert distinct == before[2][0][1] and total > distinct  # history: count DISTINCT id, version_id


def test_records_that_are_not_new_versions_are_ignored(world: World) -> None:
    item = {"pk": {"S": "default#Patient#p1"}, "sk": {"S": "cur"}, "tenant": {"S": "default"}}
    events = [
        {"eventName": "MODIFY", "dynamodb": {"NewImage": item, "SequenceNumber": "1"}},
        {"eventName": "INSERT", "dynamodb": {"NewImage": item, "SequenceNumber": "2"}},
        {"eventName": "REMOVE", "dynamodb": {"OldImage": item, "SequenceNumber": "3"}},
        {
            "eventName": "INSERT",
            "dynamodb": {
                "NewImage": {**item, "sk": {"S": "v#0000000001"}, "tenant": {"S": "other"}},
                "SequenceNumber": "4",
            },
        },
    ]
    assert invoke_lake({"Records": events}) == {"batchItemFailures": []}
    assert world.lake.files.tables() == []


def _version_record(sequence: str, rid: str, body: dict | None = None, body_key: str | None = None) -> dict:
    image = {
        "pk": {"S": f"default#Basic#{rid}"},
        "sk": {"S": "v#0000000001"},
        "tenant": {"S": "default"},
        "type": {"S": "Basic"},
        "id": {"S": rid},
        "vid": {"N": "1"},
        "lu": {"S": "2025-01-02T03:04:05.678Z"},
        "method": {"S": "PUT"},
    }
    if body_key:
        image["body_key"] = {"S": body_key}
    else:  # Lambda delivers binary attributes base64-encoded in its JSON event
        image["body"] = {"B": base64.b64encode(zlib.compress(fhir_json.dumps(body))).decode()}
    return {
        "eventName": "INSERT",
        "eventSource": "aws:dynamodb",
        "dynamodb": {"NewImage": image, "SequenceNumber": sequence},
    }


def test_an_unreadable_record_checkpoints_the_batch_before_it(world: World) -> None:
    basic = {"resourceType": "Basic", "id": "b1", "code": {"text": "one"}}
    big = {"resourceType": "Basic", "id": "b2", "code": {"text": "big"}}
    world.lake.blobs.put("default/Basic/b2/1.json.z", zlib.compress(fhir_json.dumps(big)))
    records = [
        _version_record("100", "b1", basic),
        _version_record("101", "b2", body_key="default/Basic/b2/1.json.z"),  # a body kept in the blob bucket
        _version_record("102", "b3", body_key="default/Basic/missing.json.z"),
        _version_record("103", "b4", {**basic, "id": "b4"}),
    ]
    response = invoke_lake({"Records": records})
    assert response == {"batchItemFailures": [{"itemIdentifier": "102"}]}
    assert world.sql.rows("SELECT id, code.text FROM basic ORDER BY id") == [("b1", "one"), ("b2", "big")]


def test_the_topology_event_filter_passes_exactly_what_the_lake_needs(
    world: World, written: dict[str, str]
) -> None:
    filtered = Pump(world.aws, batch_size=100, event_filter=LAKE_STREAM_FILTER)()
    assert sum(len(d.event["Records"]) for d in filtered) == 7  # the versions only: no cur items
    assert all(d.response == {"batchItemFailures": []} for d in filtered)
    assert world.sql.rows("SELECT count(*) FROM observation_history") == [(5,)]


def test_the_shipped_sample_event_lands_in_the_lake(world: World) -> None:
    import json
    from pathlib import Path

    event = json.loads(
        (Path(__file__).resolve().parents[2] / "events" / "lake" / "stream-insert.json").read_text()
    )
    assert invoke_lake(event) == {"batchItemFailures": []}
    assert world.sql.rows("SELECT id, version_id, gender FROM patient") == [("example", 1, "female")]

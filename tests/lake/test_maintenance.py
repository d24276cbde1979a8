"""Compaction, GDPR erasure and backfill leave users' query results exactly as they should be."""

from __future__ import annotations

import pytest
from fhirlake.lake.maintenance import table_versions
from fhirlake.lake.storage import COMPACTION_PREFIX, read_parquet

from tests.lake.conftest import Pump, World
from tests.lake.test_stream_to_lake import observation, write_scenario

QUERIES = (
    "SELECT id, version_id, patient_id, valueQuantity.value FROM observation ORDER BY id",
    "SELECT id, version_id, name[1].family FROM patient ORDER BY id",
    "SELECT id, code, value FROM observation_codes ORDER BY id, code",
    "SELECT id, family, given FROM patient_names ORDER BY id",
    "SELECT id, version_id, deleted FROM observation_history ORDER BY id, version_id",
)


def results(world: World) -> list[list[tuple]]:
    with world.sql.connect() as db:
        return [db.execute(q).fetchall() for q in QUERIES]


def old_versions_with(world: World, patient_id: str) -> int:
    """How many noncurrent object versions in the lake hold a row of the patient."""
    files, found = world.lake.files, 0
    for key, version_id in files.old_versions("tables/"):
        rows = read_parquet(files.get(key, version_id))
        column = "_patient_id" if "_patient_id" in rows.column_names else "patient_id"
        found += patient_id in rows[column].to_pylist()
    return found


@pytest.fixture
def written(world: World) -> dict[str, str]:
    """The scenario streamed in small batches: many small files per table."""
    ids = write_scenario(world.service)
    Pump(world.aws, batch_size=2)()
    return ids


def test_compaction_merges_small_files_and_keeps_results(world: World, written: dict[str, str]) -> None:
    before_files, before = world.files(), results(world)
    assert len(before_files["observation_history"]) > 2
    report = world.lake.maintenance.compact()
    after_files = world.files()
    assert report.compacted["observation_history"] == len(before_files["observation_history"])
    assert all(len(keys) == 1 and "/c-" in keys[0] for keys in after_files.values())
    assert results(world) == before
    assert world.lake.maintenance.compact().compacted == {}  # nothing left to merge
    assert world.files() == after_files


def test_an_interrupted_compaction_is_finished_by_the_next_run(
    world: World, written: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = results(world)
    files = world.lake.files
    real_delete = files.delete

    def crash_before_cleanup(keys: list[str]) -> None:
        raise RuntimeError("function timed out")

    monkeypatch.setattr(files, "delete", crash_before_cleanup)
    with pytest.raises(RuntimeError):
        world.lake.maintenance.compact(["observation_history"])
    monkeypatch.setattr(files, "delete", real_delete)
    assert list(files.list(COMPACTION_PREFIX))  # the manifest tells the next run what was under way
    # inputs and output side by side: the current views show no copy (history does, until cleanup)
    assert results(world)[:4] == before[:4]

    world.lake.maintenance.compact(["observation_history"])
    assert not list(files.list(COMPACTION_PREFIX))
    assert len(world.files()["observation_history"]) == 1
    assert results(world) == before
    counts = world.sql.rows("SELECT count(*), count(DISTINCT (id, version_id)) FROM observation_history")
    assert counts == [(5, 5)]


def test_erasing_a_patient_removes_exactly_their_rows(world: World, written: dict[str, str]) -> None:
    alice, bob = written["alice"], written["bob"]
    world.lake.maintenance.compact(["patient_history"])  # one patient's rows sharing a file with another's
    assert old_versions_with(world, alice) > 0  # the compacted inputs, kept by bucket versioning
    before = results(world)
    report = world.lake.maintenance.erase_patient(alice)

    # the Patient, 2 Observation versions, their 2x2 code rows, 1 name row
    assert report.rows_erased == 1 + 2 + 4 + 1
    remaining = [
        f"SELECT count(*) FROM patient_history WHERE id = '{alice}'",
        f"SELECT count(*) FROM observation_history WHERE patient_id = '{alice}'",
        f"SELECT count(*) FROM observation_codes_history WHERE _patient_id = '{alice}'",
        f"SELECT count(*) FROM patient_names_history WHERE _patient_id = '{alice}'",
    ]
    assert [world.sql.rows(q) for q in remaining] == [[(0,)]] * 4
    theirs = {alice, written["hba1c"]}
    assert [[r for r in rows if r[0] not in theirs] for rows in before] == results(world)
    assert world.sql.rows(f"SELECT id FROM patient WHERE id = '{bob}'") == [(bob,)]
    assert old_versions_with(world, alice) == 0  # nor in the bytes a versioned bucket keeps
    assert world.lake.maintenance.erase_patient(alice).rows_erased == 0  # idempotent


def test_backfill_rebuilds_the_same_lake_from_the_table(world: World, written: dict[str, str]) -> None:
    before = results(world)
    settings, lake = world.lake.settings, world.lake
    versions = table_versions(lake.dynamodb, settings.table_name, lake.blobs, settings.tenant)
    assert lake.maintenance.backfill(versions, lake.writer) == 7  # every version, the tombstone too
    assert results(world) == before
    counts = world.sql.rows("SELECT count(*), count(DISTINCT (id, version_id)) FROM observation_history")
    assert counts == [(5, 5)]  # replaced, not added to


def test_backfill_fills_an_empty_lake(world: World) -> None:
    alice = world.service.create("Patient", {"resourceType": "Patient", "name": [{"family": "A"}]}).version.id
    world.service.create("Observation", observation(alice, "4548-4", 6.5))
    lake, settings = world.lake, world.lake.settings
    versions = table_versions(lake.dynamodb, settings.table_name, lake.blobs, settings.tenant)
    assert lake.maintenance.backfill(versions, lake.writer) == 2
    assert world.sql.rows("SELECT patient_id, valueQuantity.value FROM observation") == [(alice, 6.5)]

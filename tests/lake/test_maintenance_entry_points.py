"""The scheduled maintenance handler and the ``fhirlake lake ...`` commands drive the same core."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from fhirlake.lake import cli
from fhirlake.local.lambda_context import LocalLambdaContext

from tests.lake.conftest import Pump, World
from tests.lake.test_stream_to_lake import write_scenario

SCHEDULED = {"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}}


@pytest.fixture
def written(world: World, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    ids = write_scenario(world.service)
    Pump(world.aws, batch_size=3)()
    return ids


def maintenance(event: dict) -> dict:
    import handlers.lake_maintenance

    return handlers.lake_maintenance.handler(
        event, LocalLambdaContext(function_name="fhirlake-lake-maintenance")
    )


def test_the_schedule_compacts_every_table(world: World, written: dict[str, str]) -> None:
    before = world.sql.rows("SELECT id, version_id FROM observation ORDER BY id")
    report = maintenance(SCHEDULED)
    assert report["compacted"]["observation_history"] > 1
    assert all(len(keys) == 1 for keys in world.files().values())
    assert world.sql.rows("SELECT id, version_id FROM observation ORDER BY id") == before


def test_erase_and_backfill_run_on_request(world: World, written: dict[str, str]) -> None:
    assert maintenance({"action": "erase", "patient_id": written["bob"]})["rows_erased"] > 0
    assert world.sql.rows(f"SELECT count(*) FROM observation WHERE patient_id = '{written['bob']}'") == [(0,)]
    assert maintenance({"action": "backfill"}) == {
        "versions": 7
    }  # the store still has Bob: erase it there first
    assert world.sql.rows(f"SELECT count(*) FROM observation WHERE patient_id = '{written['bob']}'") == [(1,)]


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fhirlake")
    cli.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_commands_reach_the_running_store_lake(
    world: World, written: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(cli, "_local_lake", lambda args: world.lake)  # the state file's endpoint, resolved
    args = parse("lake", "erase", "--patient", written["alice"])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)["rows_erased"] == 1 + 2 + 4 + 1
    args = parse("lake", "compact")
    assert args.func(args) == 0 and json.loads(capsys.readouterr().out)["compacted"]
    args = parse("lake", "backfill")
    assert args.func(args) == 0 and "Wrote 7 version(s)" in capsys.readouterr().out


def test_commands_without_a_running_store_say_how_to_start_one(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    args = parse("lake", "compact", "--state", str(tmp_path / "missing.json"))
    assert args.func(args) == 2
    assert "make run" in capsys.readouterr().err

"""`fhirlake sql` and `fhirlake trend` against a running local store (the runtime on loopback)."""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import urllib.request
from pathlib import Path
from unittest import mock

import pytest
from fhirlake.analytics import cli
from fhirlake.analytics.charts import PNG_SIGNATURE

from tests.analytics.lake_fixture import FixtureLake, LakeWriter, synthea_resources, versions_with_changes

# A database of its own: the runtime's lake function (when wired) may keep the default one up to date.
DATABASE = "cli_test"


def main(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="fhirlake")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    with mock.patch.dict(os.environ):  # the commands point the SDK at the store: keep that to this call
        return args.func(args)


@pytest.fixture(scope="module")
def store(runtime, shared_data: Path) -> dict:
    resources = synthea_resources(shared_data)
    writer = LakeWriter(runtime.client("s3"), runtime.client("glue"), database=DATABASE)
    lake = FixtureLake(versions_with_changes(resources))
    writer.write_flat_view("conditions", lake.versions)
    writer.write_flat_view("patient_demographics", lake.versions)
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    mine = [patient] + [
        r
        for r in resources
        if (r.get("subject") or {}).get("reference") == f"Patient/{patient['id']}"
        and (r["resourceType"] != "Observation" or r["code"]["coding"][0]["code"] == "4548-4")
    ]
    for resource in mine:
        request = urllib.request.Request(
            f"{runtime.api_url}/{resource['resourceType']}/{resource['id']}",
            data=json.dumps(resource).encode(),
            method="PUT",
            headers={"Content-Type": "application/fhir+json"},
        )
        with urllib.request.urlopen(request) as response:
            assert response.status in (200, 201)
    return {"endpoint": runtime.moto_url, "patient": patient["id"], "lake": lake}


def test_sql_prints_a_table_csv_and_json(store, capsys) -> None:
    query = (
        "SELECT code, count(DISTINCT patient_id) AS patients FROM conditions GROUP BY code ORDER BY 2 DESC, 1"
    )
    common = ("--endpoint", store["endpoint"], "--database", DATABASE)

    assert main("sql", query, *common) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split("|")[0].strip() == "code" and table[-1].endswith("rows)")

    assert main("sql", query, *common, "--format", "csv") == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["code", "patients"] and len(rows) == len(table) - 2

    assert main("sql", query, *common, "--format", "json") == 0
    records = json.loads(capsys.readouterr().out)
    assert records[0]["patients"] >= records[-1]["patients"]
    assert [[r["code"], str(r["patients"])] for r in records] == rows[1:]


def test_sql_runs_a_shipped_query_with_parameters(store, capsys) -> None:
    common = ("--endpoint", store["endpoint"], "--database", DATABASE, "--format", "json")
    assert main("sql", "--query", "prevalence_by_month", "--param", "first_month=2019-01-01", *common) == 0
    months = json.loads(capsys.readouterr().out)
    assert months[0]["month"] == "2019-01-01" and len(months) == 12


def test_sql_errors_exit_non_zero_with_a_message(store, capsys) -> None:
    assert main("sql", "DROP TABLE conditions", "--endpoint", store["endpoint"]) == 1
    assert "read-only" in capsys.readouterr().err
    assert main("sql", "SELECT 1", "--state", "/nonexistent/local.json") == 1
    assert "make run" in capsys.readouterr().err


def test_trend_for_a_patient_reads_the_running_store(store, tmp_path: Path, capsys) -> None:
    out = tmp_path / "hba1c.html"
    code = "http://loinc.org|4548-4"
    assert (
        main(
            "trend",
            "--patient",
            store["patient"],
            "--code",
            code,
            "--endpoint",
            store["endpoint"],
            "--out",
            str(out),
        )
        == 0
    )
    page = out.read_text()
    assert page.count("<circle") >= 1 and "Hemoglobin A1c" in page


def test_population_trend_png(store, tmp_path: Path) -> None:
    out = tmp_path / "prevalence.png"
    assert (
        main(
            "trend",
            "--code",
            "http://snomed.info/sct|15777000",
            "--measure",
            "prevalence",
            "--since",
            "2018-01",
            "--until",
            "2019-12",
            "--endpoint",
            store["endpoint"],
            "--database",
            DATABASE,
            "--out",
            str(out),
        )
        == 0
    )
    assert out.read_bytes().startswith(PNG_SIGNATURE)


def test_trend_needs_patient_or_measure(capsys) -> None:
    assert main("trend", "--code", "4548-4") == 2
    assert main("trend", "--code", "4548-4", "--patient", "p", "--athena") == 2


def test_sql_list_names_every_shipped_query(capsys) -> None:
    from fhirlake.analytics.queries import shipped_queries

    assert main("sql", "--list") == 0
    listed = capsys.readouterr().out
    assert all(f"{name}\n" in listed for name in shipped_queries())
    assert "condition_code=44054006" in listed

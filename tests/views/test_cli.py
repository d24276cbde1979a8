"""`fhirlake view run`: the views CLI, called through its own argparse registration."""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
from pathlib import Path

import pytest
from fhirlake.views.cli import register

VIEW = {
    "resource": "Patient",
    "select": [
        {"column": [{"name": "id", "path": "id"}, {"name": "active", "path": "active"}]},
        {"forEachOrNull": "name", "column": [{"name": "given", "path": "given", "collection": True}]},
    ],
}
PATIENTS = [
    {"resourceType": "Patient", "id": "a", "active": True, "name": [{"given": ["Ann", "Bo"]}]},
    {"resourceType": "Observation", "id": "o"},
    {"resourceType": "Patient", "id": "b"},
]


def run(*argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="fhirlake")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    out, err = io.StringIO(), io.StringIO()
    code = args.func(args, out, err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    view = tmp_path / "view.json"
    view.write_text(json.dumps(VIEW))
    data = tmp_path / "data.ndjson.gz"
    with gzip.open(data, "wt") as out:
        out.write("\n".join(json.dumps(r) for r in PATIENTS) + "\n\n")
    return view, data


def test_view_run_prints_ndjson_rows(files: tuple[Path, Path]) -> None:
    code, out, err = run("view", "run", str(files[0]), str(files[1]))
    assert (code, err) == (0, "")
    assert [json.loads(line) for line in out.splitlines()] == [
        {"id": "a", "active": True, "given": ["Ann", "Bo"]},
        {"id": "b", "active": None, "given": None},
    ]


def test_view_run_csv_has_a_header_and_json_collections(files: tuple[Path, Path]) -> None:
    code, out, _ = run("view", "run", "--format", "csv", str(files[0]), str(files[1]))
    assert code == 0
    assert list(csv.reader(io.StringIO(out))) == [
        ["id", "active", "given"],
        ["a", "true", '["Ann","Bo"]'],
        ["b", "", ""],
    ]


def test_view_run_reads_bundles_and_keeps_decimal_text(tmp_path: Path) -> None:
    view = tmp_path / "obs.json"
    view.write_text(
        json.dumps(
            {
                "resource": "Observation",
                "select": [
                    {"column": [{"name": "v", "path": "value.ofType(Quantity).value", "type": "decimal"}]}
                ],
            }
        )
    )
    bundle = tmp_path / "bundle.json"
    bundle.write_text(
        '{"resourceType":"Bundle","type":"collection","entry":[{"resource":'
        '{"resourceType":"Observation","id":"o","valueQuantity":{"value":5.70}}}]}'
    )
    code, out, _ = run("view", "run", str(view), str(bundle))
    assert (code, out) == (0, '{"v":5.70}\n')


def test_invalid_view_exits_2_with_the_element_path(tmp_path: Path, files: tuple[Path, Path]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps({"resource": "Patient", "select": [{"column": [{"name": "x", "path": "foo("}]}]})
    )
    code, out, err = run("view", "run", str(bad), str(files[1]))
    assert (code, out) == (2, "")
    assert "select[0].column[0].path" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json\n", "data.ndjson:1: not valid JSON"),
        ('{"id": "x"}\n', "data.ndjson:1: not a FHIR resource"),
    ],
)
def test_bad_input_lines_exit_2_with_file_and_line(
    tmp_path: Path, files: tuple[Path, Path], content: str, message: str
) -> None:
    data = tmp_path / "data.ndjson"
    data.write_text(content)
    code, _, err = run("view", "run", str(files[0]), str(data))
    assert code == 2
    assert message in err


def test_missing_view_file_exits_2(tmp_path: Path, files: tuple[Path, Path]) -> None:
    code, _, err = run("view", "run", str(tmp_path / "nope.json"), str(files[1]))
    assert code == 2 and "nope.json" in err


def test_shipped_views_run_by_name_and_are_listed(files: tuple[Path, Path]) -> None:
    code, out, _ = run("view", "run", "patient_demographics", str(files[1]))
    assert code == 0
    assert [json.loads(line)["id"] for line in out.splitlines()] == ["a", "b"]
    code, out, _ = run("view", "list")
    assert code == 0
    assert "conditions (Condition): id, patient_id, code_system, code, display," in out
    assert len(out.splitlines()) == 8

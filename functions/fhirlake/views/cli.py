"""``fhirlake view run VIEW INPUT...``: run a SQL on FHIR ViewDefinition over FHIR files, locally.

VIEW is a ViewDefinition JSON file or the name of a shipped view (``fhirlake view list`` shows them).

Inputs are NDJSON (``.ndjson``, optionally ``.gz``) or JSON files holding one resource or a Bundle.
Rows go to stdout as NDJSON (default) or CSV with a header; an invalid view is reported on stderr with
the path of the offending element, exit status 2.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from fhirlake.fhir import json as fhir_json
from fhirlake.fhir.outcome import FhirError
from fhirlake.views import default_views
from fhirlake.views.definition import CompiledView, ViewDefinitionError, compile_view


class InputError(Exception):
    """An input file is missing or is not FHIR JSON / NDJSON."""


def register(subparsers: Any) -> None:
    """Add ``view run`` to the ``fhirlake`` command line (``subparsers`` from ``add_subparsers``)."""
    p_view = subparsers.add_parser("view", help="SQL on FHIR v2 ViewDefinitions")
    view_commands = p_view.add_subparsers(dest="view_command", required=True)
    p_run = view_commands.add_parser(
        "run", help="print the rows of a ViewDefinition over NDJSON / JSON FHIR files"
    )
    p_run.add_argument("view", type=Path, help="a ViewDefinition JSON file, or the name of a shipped view")
    p_run.add_argument(
        "inputs", type=Path, nargs="+", help="NDJSON (.ndjson[.gz]) or JSON resource/Bundle files"
    )
    p_run.add_argument("--format", choices=("ndjson", "csv"), default="ndjson", help="output format")
    p_run.set_defaults(func=run_view)
    p_list = view_commands.add_parser(
        "list", help="the ViewDefinitions shipped with fhirlake and their columns"
    )
    p_list.set_defaults(func=list_views)


def list_views(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    for view in default_views():
        columns = ", ".join(f"{c['name']}" for s in _all_selects(view["select"]) for c in s.get("column", []))
        print(f"{view['name']} ({view['resource']}): {columns}", file=out)
    return 0


def _all_selects(selects: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for select in selects:
        yield select
        yield from _all_selects(select.get("select", []))
        yield from _all_selects(select.get("unionAll", [])[:1])


def run_view(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        compiled = compile_view(_load_view(args.view))
    except InputError as exc:
        print(f"{args.view}: {exc}", file=err)
        return 2
    except ViewDefinitionError as exc:
        print(f"{args.view}: invalid ViewDefinition: {exc}", file=err)
        return 2
    write = _csv_writer(out, compiled) if args.format == "csv" else _ndjson_writer(out)
    try:
        for path in args.inputs:
            for resource in _resources(path):
                for row in compiled.rows(resource):
                    write(row)
    except InputError as exc:
        print(str(exc), file=err)
        return 2
    except ViewDefinitionError as exc:  # data broke a rule of the view (e.g. several values, one column)
        print(f"{args.view}: {exc}", file=err)
        return 1
    return 0


def _ndjson_writer(out: TextIO) -> Any:
    def write(row: dict[str, Any]) -> None:
        out.write(fhir_json.dumps(row).decode())
        out.write("\n")

    return write


def _csv_writer(out: TextIO, compiled: CompiledView) -> Any:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(compiled.column_names)

    def cell(value: Any) -> Any:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (list, dict)):  # collection / complex columns as JSON text
            return fhir_json.dumps(value).decode()
        return getattr(value, "text", value)  # decimals keep their written precision

    def write(row: dict[str, Any]) -> None:
        writer.writerow([cell(v) for v in row.values()])

    return write


def _load_view(path: Path) -> Any:
    if not path.exists():
        shipped = {v["name"]: v for v in default_views()}
        if str(path) in shipped:
            return shipped[str(path)]
    return _read_json(path)


def _read_json(path: Path) -> Any:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(exc.strerror or "cannot be read") from None
    try:
        return fhir_json.loads(raw)
    except FhirError:
        raise InputError("not valid JSON") from None


def _resources(path: Path) -> Iterator[dict[str, Any]]:
    name = path.name.lower()
    if name.endswith((".ndjson", ".ndjson.gz", ".jsonl")):
        opener = gzip.open if name.endswith(".gz") else open
        try:
            with opener(path, "rb") as lines:
                for number, line in enumerate(lines, start=1):
                    if line.strip():
                        yield _resource(line, f"{path}:{number}")
        except OSError as exc:
            raise InputError(f"{path}: {exc.strerror or exc}") from None
        return
    document = _read_json(path) if path.exists() else None
    if document is None:
        raise InputError(f"{path}: no such file")
    if isinstance(document, dict) and document.get("resourceType") == "Bundle":
        yield from (e["resource"] for e in document.get("entry", []) if isinstance(e.get("resource"), dict))
    elif isinstance(document, dict):
        yield document
    else:
        raise InputError(f"{path}: not a FHIR resource")


def _resource(line: bytes, where: str) -> dict[str, Any]:
    try:
        resource = fhir_json.loads(line)
    except FhirError:
        raise InputError(f"{where}: not valid JSON") from None
    if not isinstance(resource, dict) or "resourceType" not in resource:
        raise InputError(f"{where}: not a FHIR resource")
    return resource

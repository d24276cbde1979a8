"""``fhirlake sql`` and ``fhirlake trend``: analytics from the command line.

    fhirlake sql "SELECT code, count(*) FROM conditions GROUP BY code" [--format table|csv|json]
    fhirlake sql --query prevalence_by_month --param condition_code=44054006 --param first_month=2015-01-01
    fhirlake sql --list                                  the shipped example queries
    fhirlake sql ... --athena                            through the Athena workgroup of a deployment
    fhirlake trend --patient ID --code http://loinc.org|4548-4 --out hba1c.html
    fhirlake trend --code http://snomed.info/sct|44054006 --measure prevalence --out prevalence.png

Locally both run against the store `fhirlake serve` (make run) started: its endpoints come from the state
file it writes (or --endpoint). With --athena the standard AWS configuration (profile, region) applies.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from datetime import date
from pathlib import Path
from typing import Any, TextIO

from fhirlake import topology
from fhirlake.analytics.engine import QueryError, QueryResult, SqlEngine, jsonable
from fhirlake.fhir.outcome import FhirError
from fhirlake.local.state import NoLocalStore, add_store_arguments, use_local_store


def register(subparsers: Any) -> None:
    sql = subparsers.add_parser("sql", help="run Athena (Trino) SQL on the analytics lake")
    sql.add_argument("statement", nargs="?", help="one read-only SQL statement (or use --query)")
    sql.add_argument("--query", help="run a shipped example query by name (see --list)")
    sql.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="a --query parameter")
    sql.add_argument("--list", action="store_true", help="list the shipped example queries")
    sql.add_argument("--format", choices=["table", "csv", "json"], default="table")
    sql.add_argument("--max-rows", type=int, default=None, help="stop after this many rows")
    _connection_arguments(sql)
    sql.set_defaults(func=run_sql)

    trend = subparsers.add_parser("trend", help="chart one patient's progression or a population trend")
    trend.add_argument("--code", required=True, help="system|code of the observation or condition")
    trend.add_argument("--patient", help="a Patient id: that patient's values, conditions and medications")
    trend.add_argument(
        "--measure", choices=["prevalence", "mean"], help="population trend (without --patient)"
    )
    trend.add_argument("--since", type=_month, help="first month (YYYY-MM) of a population trend")
    trend.add_argument("--until", type=_month, help="last month (YYYY-MM) of a population trend")
    trend.add_argument("--out", type=Path, help="chart file: .png, .html or .json (default: JSON on stdout)")
    _connection_arguments(trend)
    trend.set_defaults(func=run_trend)


def _connection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--athena", action="store_true", help="use Athena in AWS instead of the local store")
    add_store_arguments(parser)
    parser.add_argument("--database", help="Glue database (default: $FHIRLAKE_GLUE_DATABASE or fhirlake)")
    parser.add_argument("--workgroup", help="Athena workgroup (default: $FHIRLAKE_ATHENA_WORKGROUP)")


def _month(value: str) -> date:
    try:
        return date.fromisoformat(value + "-01" if len(value) == 7 else value)
    except ValueError:
        raise argparse.ArgumentTypeError("expected YYYY-MM") from None


# -- commands ---------------------------------------------------------------------------------------
def run_sql(args: argparse.Namespace) -> int:
    from fhirlake.analytics.queries import shipped_queries, shipped_query

    if args.list:
        for query in shipped_queries().values():
            params = ", ".join(f"{p.name}={p.default}" for p in query.parameters)
            print(f"{query.name}\n    {query.title}: {query.question}\n    parameters: {params or '-'}")
        return 0
    try:
        if args.query:
            values = dict(_pair(item) for item in args.param)
            statement = shipped_query(args.query).with_parameters(values)
        elif args.statement:
            statement = args.statement
        else:
            print("Give a SQL statement, --query NAME or --list", file=sys.stderr)
            return 2
        result = _engine(args).run(statement, max_rows=args.max_rows)
    except (QueryError, NoLocalStore) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    write_result(result, args.format, sys.stdout)
    if result.truncated:
        print(f"(stopped after {len(result.rows)} rows)", file=sys.stderr)
    return 0


def run_trend(args: argparse.Namespace) -> int:
    from fhirlake.analytics.trends import Code, patient_progression, population_trend

    if bool(args.patient) == bool(args.measure):
        print("Give either --patient ID or --measure prevalence|mean", file=sys.stderr)
        return 2
    if args.patient and args.athena:
        # One patient's chart reads the FHIR store itself; in AWS use the API: GET /_analytics/trend?patient=
        print("--athena applies to population trends (--measure) only", file=sys.stderr)
        return 2
    try:
        code = Code.parse(args.code)
        if args.patient:
            _local_environment(args)
            chart = patient_progression(_service(), args.patient, code)
        else:
            chart = population_trend(_engine(args), code, args.measure, args.since, args.until)
    except FhirError as error:
        print(f"error: {'; '.join(i.diagnostics for i in error.issues)}", file=sys.stderr)
        return 1
    except (QueryError, NoLocalStore) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.out is None:
        json.dump(chart.to_json(), sys.stdout, indent=2)
        print()
        return 0
    from fhirlake.analytics import charts

    suffix = args.out.suffix.lower()
    if suffix == ".png":
        args.out.write_bytes(charts.render_png(chart))
    elif suffix in (".html", ".htm"):
        args.out.write_text(charts.render_html(chart), encoding="utf-8")
    elif suffix == ".json":
        args.out.write_text(json.dumps(chart.to_json(), indent=2))
    else:
        print("--out must end in .png, .html or .json", file=sys.stderr)
        return 2
    points = sum(len(s.points) for s in chart.series)
    print(f"{args.out}: {points} points, {len(chart.markers)} events", file=sys.stderr)
    return 0


# -- output -----------------------------------------------------------------------------------------
def write_result(result: QueryResult, output_format: str, out: TextIO) -> None:
    if output_format == "json":
        json.dump(
            [{c: jsonable(v) for c, v in zip(result.columns, row, strict=True)} for row in result.rows],
            out,
            indent=2,
        )
        out.write("\n")
        return
    cells = [[_text(v) for v in row] for row in result.rows]
    if output_format == "csv":
        writer = csv.writer(out)
        writer.writerow(result.columns)
        writer.writerows(cells)
        return
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(result.columns)]
    out.write(" | ".join(c.ljust(w) for c, w in zip(result.columns, widths, strict=True)).rstrip() + "\n")
    out.write("-+-".join("-" * w for w in widths) + "\n")
    for row in cells:
        out.write(" | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() + "\n")
    out.write(f"({len(cells)} row{'s' if len(cells) != 1 else ''})\n")


def _text(value: Any) -> str:
    value = jsonable(value)
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


# -- connections ------------------------------------------------------------------------------------
def _pair(item: str) -> tuple[str, str]:
    name, equals, value = item.partition("=")
    if not equals:
        raise QueryError(f"--param needs NAME=VALUE, got {item!r}")
    return name.strip(), value


def _local_environment(args: argparse.Namespace) -> dict[str, Any]:
    """Point this process's AWS SDK at the running local store, as the local runtime does for handlers."""
    state = use_local_store(args.state, args.endpoint)
    if args.database:
        os.environ[topology.ANALYTICS_CATALOG.env_var] = args.database
    return state


def _engine(args: argparse.Namespace) -> SqlEngine:
    from fhirlake.analytics.engine import engine_from_env

    if not args.athena:
        _local_environment(args)
        return engine_from_env()
    catalog = topology.ANALYTICS_CATALOG
    env = {
        topology.ENV_SQL_ENGINE: "athena",
        catalog.env_var: args.database or os.environ.get(catalog.env_var) or catalog.local_name,
        catalog.workgroup_env_var: args.workgroup
        or os.environ.get(catalog.workgroup_env_var)
        or catalog.local_workgroup,
    }
    return engine_from_env(env)


def _service() -> Any:
    from fhirlake.bootstrap import build_service
    from fhirlake.config import Settings

    return build_service(Settings.from_env())

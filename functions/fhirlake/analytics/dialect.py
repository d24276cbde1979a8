"""Athena (Trino) SQL -> DuckDB SQL, for the local engine. Local only: imports sqlglot.

sqlglot does the bulk of the translation (read="trino", write="duckdb"). On top of it, this module mends
the gaps that change the answers of FHIR queries, each checked in tests/analytics/test_dialect.py:

- ``date_diff(unit, a, b)``: Trino counts whole units elapsed (Joda ``Days.between``), DuckDB's
  ``date_diff`` counts unit boundaries crossed. Age in years and days-to-treatment depend on it: it
  becomes DuckDB's ``date_sub``, which counts whole units like Trino.
- ``from_iso8601_timestamp`` / ``from_iso8601_date``: FHIR dates have partial precision ("2010",
  "2010-05"), which Trino's ISO 8601 parser accepts and DuckDB's cast rejects: they become macros that
  complete the missing month/day first.
- ``UNNEST(array_of_rows) AS t(a, b, c)``: Trino expands each ROW into one column per field (positional
  aliases), DuckDB's FROM-clause UNNEST yields one struct column; the same with several arrays (zipped)
  or ``WITH ORDINALITY``. These become a LATERAL subquery with DuckDB's select-list UNNEST, which has
  Trino's semantics. ``UNNEST(x) AS t`` without column aliases is left alone: ``t.field`` works in both.
- ``any_match`` / ``all_match`` / ``none_match`` (array, lambda) have no DuckDB namesake: they become a
  boolean list aggregate over ``list_transform``.
- ``format_datetime(ts, 'yyyy-MM')`` (Joda patterns) becomes ``strftime`` with the equivalent pattern.
- Tables qualified with the Glue database (``fhirlake.observation``, ``awsdatacatalog.fhirlake.x``) lose
  the qualifier: DuckDB holds one database's tables under their plain names.
- Integer division (``7 / 2`` = 3 in Trino) is a DuckDB setting the engine turns on, as is the UTC
  session time zone Athena uses.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, SqlglotError

from fhirlake.analytics.engine import QueryError

ATHENA_CATALOG = "awsdatacatalog"
PRESTO_VIEW_PREFIX = "/* Presto View: "
PRESTO_VIEW_SUFFIX = " */"

# Session settings and macros that give DuckDB Trino's semantics where sqlglot cannot (see the docstring).
DUCKDB_SETUP = (
    "SET TimeZone = 'UTC'",
    "SET integer_division = true",
    """CREATE OR REPLACE MACRO trino_iso8601_text(s) AS CASE
         WHEN length(s) = 4 THEN s || '-01-01'
         WHEN length(s) = 7 THEN s || '-01'
         ELSE s END""",
    "CREATE OR REPLACE MACRO trino_from_iso8601_timestamp(s) AS CAST(trino_iso8601_text(s) AS TIMESTAMPTZ)",
    "CREATE OR REPLACE MACRO trino_from_iso8601_date(s) AS CAST(trino_iso8601_text(s) AS DATE)",
)

# Joda-Time pattern letters (Trino's format_datetime/parse_datetime) -> strftime directives, longest first.
_JODA_TO_STRFTIME = (
    ("yyyy", "%Y"),
    ("yy", "%y"),
    ("MMMM", "%B"),
    ("MMM", "%b"),
    ("MM", "%m"),
    ("dd", "%d"),
    ("HH", "%H"),
    ("mm", "%M"),
    ("ss", "%S"),
    ("SSS", "%g"),
    ("EEEE", "%A"),
    ("EEE", "%a"),
)
_JODA_TOKEN = re.compile("|".join(re.escape(joda) for joda, _ in _JODA_TO_STRFTIME))


# Trino's array predicates -> (DuckDB list aggregate over the mapped list, the answer for an empty array).
_MATCHES = {
    "any_match": ("list_bool_or", False),
    "all_match": ("list_bool_and", True),
    "none_match": ("list_bool_or", False),
}


@dataclass(frozen=True)
class PrestoView:
    sql: str  # Trino SQL
    columns: list[dict[str, str]]  # [{"name":..., "type": <Trino type>}]


def decode_presto_view(view_original_text: str) -> PrestoView:
    """The Trino SQL of an Athena view from its Glue ``ViewOriginalText``."""
    text = view_original_text.strip()
    if not (text.startswith(PRESTO_VIEW_PREFIX) and text.endswith(PRESTO_VIEW_SUFFIX)):
        raise QueryError("Not an Athena (Presto) view definition", status=500)
    try:
        payload = json.loads(base64.b64decode(text[len(PRESTO_VIEW_PREFIX) : -len(PRESTO_VIEW_SUFFIX)]))
        return PrestoView(payload["originalSql"], list(payload.get("columns") or []))
    except (ValueError, KeyError, TypeError) as exc:
        raise QueryError(f"Malformed Athena view definition ({type(exc).__name__})", status=500) from None


def parse_trino(sql: str) -> exp.Expression:
    try:
        statements = [s for s in sqlglot.parse(sql, read="trino") if s is not None]
    except ParseError as exc:
        raise QueryError(f"SQL syntax error: {_first_error(exc)}") from None
    except SqlglotError as exc:
        raise QueryError(f"SQL not understood: {exc}") from None
    if len(statements) != 1:
        raise QueryError("Send exactly one SQL statement")
    return statements[0]


def _first_error(exc: ParseError) -> str:
    if exc.errors:
        first = exc.errors[0]
        return f"{first.get('description')} (line {first.get('line')}, column {first.get('col')})"
    return str(exc).splitlines()[0]


def referenced_tables(tree: exp.Expression, database: str) -> set[str]:
    """Lower-case names of the catalog tables/views a statement reads (CTE names excluded)."""
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    names = set()
    for table in tree.find_all(exp.Table):
        if not table.name or not _in_database(table, database):
            continue
        name = table.name.lower()
        if table.args.get("db") is not None or name not in ctes:
            names.add(name)
    return names


def _in_database(table: exp.Table, database: str) -> bool:
    db, catalog = table.args.get("db"), table.args.get("catalog")
    if db is None:
        return catalog is None
    if db.name.lower() != database.lower():
        return False
    return catalog is None or catalog.name.lower() == ATHENA_CATALOG


def to_duckdb(tree: exp.Expression, database: str) -> str:
    """DuckDB SQL for one parsed Trino statement (see the module docstring for what is mended)."""
    tree = tree.copy()
    # Children before parents (reversed pre-order), so a rewritten call is built from rewritten arguments.
    for node in reversed(list(tree.walk(bfs=False))):
        replacement = _rewrite(node, database)
        if replacement is not node:
            node.replace(replacement)
    # UNNEST last: its LATERAL subquery is built from already rewritten arguments.
    for unnest in list(tree.find_all(exp.Unnest)):
        if isinstance(unnest.parent, exp.Join | exp.From) and _needs_lateral(unnest):
            unnest.replace(_lateral_unnest(unnest))
    try:
        return tree.sql(dialect="duckdb")
    except SqlglotError as exc:
        raise QueryError(f"SQL not supported locally: {exc}") from None


def transpile(sql: str, database: str) -> str:
    return to_duckdb(parse_trino(sql), database)


def _rewrite(node: exp.Expression, database: str) -> exp.Expression:
    if isinstance(node, exp.Table) and _in_database(node, database):
        node.set("db", None)
        node.set("catalog", None)
        return node
    if isinstance(node, exp.DateDiff):  # date_diff(unit, start, end): this=end, expression=start
        unit = node.args.get("unit")
        unit_name = unit.name if unit is not None else "day"
        return exp.Anonymous(
            this="date_sub", expressions=[exp.Literal.string(unit_name.lower()), node.expression, node.this]
        )
    if isinstance(node, exp.FromISO8601Timestamp):
        return exp.Anonymous(this="trino_from_iso8601_timestamp", expressions=[node.this])
    if isinstance(node, exp.FromISO8601Date):
        return exp.Anonymous(this="trino_from_iso8601_date", expressions=[node.this])
    if isinstance(node, exp.Anonymous) and node.name.lower() in _MATCHES:
        aggregate, empty = _MATCHES[node.name.lower()]
        array, function = [*node.expressions, None, None][:2]
        if array is not None and function is not None:
            found = exp.Anonymous(
                this=aggregate,
                expressions=[exp.Anonymous(this="list_transform", expressions=[array, function])],
            )
            matched = exp.func("coalesce", found, exp.Boolean(this=empty))
            return exp.Not(this=exp.Paren(this=matched)) if node.name.lower() == "none_match" else matched
    if isinstance(node, exp.Anonymous) and node.name.lower() == "format_datetime":
        value, pattern = [*node.expressions, None, None][:2]
        if isinstance(pattern, exp.Literal) and pattern.is_string:
            directive = _JODA_TOKEN.sub(lambda m: dict(_JODA_TO_STRFTIME)[m.group(0)], pattern.this)
            return exp.Anonymous(this="strftime", expressions=[value, exp.Literal.string(directive)])
    return node


def _needs_lateral(unnest: exp.Unnest) -> bool:
    alias = unnest.args.get("alias")
    columns = alias.columns if alias is not None else []
    arrays = unnest.expressions
    return bool(unnest.args.get("offset")) or len(arrays) > 1 or len(columns) > len(arrays)


def _lateral_unnest(unnest: exp.Unnest) -> exp.Lateral:
    """Trino ``UNNEST(a, ...) [WITH ORDINALITY] AS t(cols)`` as ``LATERAL (SELECT UNNEST(a), ...) AS t(..)``.

    One array whose alias list is longer than one column holds ROWs: each ROW is unnested a second time,
    which DuckDB expands into one column per field (Trino's positional row expansion)."""
    arrays = [array.copy() for array in unnest.expressions]
    alias = unnest.args.get("alias")
    columns = [column.copy() for column in alias.columns] if alias is not None else []
    # sqlglot keeps the WITH ORDINALITY column apart from the alias list (``offset``); DuckDB wants it last.
    ordinality = unnest.args.get("offset")
    if isinstance(ordinality, exp.Identifier):
        columns.append(ordinality.copy())
    if len(arrays) == 1 and len(columns) - bool(ordinality) > 1:  # one array of ROWs, positional fields
        inner = exp.select(exp.alias_(exp.Unnest(expressions=[arrays[0]]), "_row"))
        outer_columns: list[exp.Expression] = [exp.Unnest(expressions=[exp.column("_row")])]
        if ordinality:
            inner = inner.select(exp.alias_(exp.func("generate_subscripts", arrays[0].copy(), 1), "_ordinal"))
            outer_columns.append(exp.column("_ordinal"))
        select = exp.select(*outer_columns).from_(inner.subquery())
    else:  # several arrays are zipped (padded with NULLs), as in Trino
        selected: list[exp.Expression] = [exp.Unnest(expressions=[array]) for array in arrays]
        if ordinality:
            lengths = [exp.func("len", array.copy()) for array in arrays]
            longest = lengths[0] if len(lengths) == 1 else exp.func("greatest", *lengths)
            selected.append(exp.Unnest(expressions=[exp.func("range", exp.Literal.number(1), longest + 1)]))
        select = exp.select(*selected)
    name = alias.this.copy() if alias is not None and alias.this else exp.to_identifier("_unnest")
    return exp.Lateral(this=select.subquery(), alias=exp.TableAlias(this=name, columns=columns or None))

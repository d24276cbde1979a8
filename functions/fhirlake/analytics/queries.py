"""The shipped example queries (``fhirlake/data/queries/*.sql``): Athena (Trino) SQL over the lake.

Each file starts with a header of ``-- key: value`` comments (title, question, table, note) and one
``-- param NAME (TYPE, default VALUE): description`` line per parameter. Its first line of SQL is
``WITH params AS (SELECT <literal> AS NAME, ...)``: the query runs as written (in the Athena console
too), and ``with_parameters`` swaps that one line for typed literals, so a caller's values are never
pasted into SQL text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib import resources

from fhirlake.analytics.engine import QueryError

_HEADER = re.compile(r"^-- (title|question|table|note): (.+)$")
_PARAM = re.compile(
    r"^-- param (\w+) \((varchar|integer|double|date|array\(varchar\)), default ([^)]*)\): (.+)$"
)
_PARAMS_LINE = re.compile(r"^WITH params AS \(SELECT .*\)(,?)$", re.MULTILINE)


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str  # Trino type: varchar, integer, double, date, array(varchar)
    default: str
    description: str

    def literal(self, value: object) -> str:
        """``value`` as a Trino literal of this parameter's type; QueryError if it is not one."""
        text = str(value)
        try:
            if self.type == "varchar":
                return "'" + text.replace("'", "''") + "'"
            if self.type == "integer":
                return str(int(text))
            if self.type == "double":
                return repr(float(text))
            if self.type == "date":
                return f"DATE '{date.fromisoformat(text).isoformat()}'"
        except ValueError:
            raise QueryError(f"Parameter {self.name} must be a {self.type}") from None
        items = value if isinstance(value, list | tuple) else [v for v in text.split(",") if v]
        return "ARRAY[" + ", ".join("'" + str(item).replace("'", "''") + "'" for item in items) + "]"


@dataclass(frozen=True)
class ShippedQuery:
    name: str
    title: str
    question: str
    table: str
    note: str
    parameters: tuple[Parameter, ...]
    sql: str

    def params_line(self, values: Mapping[str, object] | None = None) -> str:
        values = values or {}
        unknown = set(values) - {p.name for p in self.parameters}
        if unknown:
            raise QueryError(f"Unknown parameter(s) of {self.name}: {', '.join(sorted(unknown))}")
        selected = ", ".join(
            f"{p.literal(values.get(p.name, p.default))} AS {p.name}" for p in self.parameters
        )
        return f"WITH params AS (SELECT {selected})"

    def with_parameters(self, values: Mapping[str, object] | None = None) -> str:
        """The query with ``values`` (by parameter name; the others keep their defaults)."""
        line = self.params_line(values)
        return _PARAMS_LINE.sub(lambda m: line + m.group(1), self.sql, count=1)


def parse_query(name: str, text: str) -> ShippedQuery:
    header: dict[str, str] = {}
    parameters: list[Parameter] = []
    for line in text.splitlines():
        if not line.startswith("--"):
            break
        if match := _HEADER.match(line):
            header[match.group(1)] = match.group(2).strip()
        elif match := _PARAM.match(line):
            parameters.append(Parameter(*[group.strip() for group in match.groups()]))
    if "title" not in header or "question" not in header:
        raise ValueError(f"{name}: the header needs '-- title:' and '-- question:' lines")
    if parameters and not _PARAMS_LINE.search(text):
        raise ValueError(f"{name}: parameters need a 'WITH params AS (SELECT ...)' line")
    return ShippedQuery(
        name=name,
        title=header["title"],
        question=header["question"],
        table=header.get("table", ""),
        note=header.get("note", ""),
        parameters=tuple(parameters),
        sql=text.strip() + "\n",
    )


@cache
def shipped_queries() -> dict[str, ShippedQuery]:
    folder = resources.files("fhirlake") / "data" / "queries"
    found = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".sql"):
            name = entry.name.removesuffix(".sql")
            found[name] = parse_query(name, entry.read_text())
    return found


def shipped_query(name: str) -> ShippedQuery:
    query = shipped_queries().get(name)
    if query is None:
        raise QueryError(f"No shipped query named {name}; known: {', '.join(shipped_queries())}", 404)
    return query

"""One small interface for the SQL engines behind ``fhirlake sql`` and ``POST /_analytics/sql``.

Both engines take Athena (Trino) SQL and answer a ``QueryResult``: Athena in the cloud, DuckDB over the
same lake and Glue catalog locally. Which one runs is decided once, by ``engine_from_env``; nothing else
asks whether it runs locally.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Protocol

from fhirlake import topology

ENGINES = ("athena", "duckdb")
DEFAULT_ENGINE = "athena"


class QueryError(Exception):
    """A query that cannot be answered: bad SQL, an unknown table, a failed or timed-out execution.

    ``status`` is the HTTP status an API answers with: 400 for the caller's SQL, 504 for a timeout,
    502 when the engine itself failed. The message never carries result values (PHI)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[list[Any]]
    # Engine type names (Trino's for Athena, DuckDB's locally), one per column; informational.
    types: list[str] = field(default_factory=list)
    truncated: bool = False  # more rows existed than the caller's max_rows

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]

    def to_json(self) -> dict[str, Any]:
        return {
            "columns": self.columns,
            "types": self.types,
            "rows": [[jsonable(value) for value in row] for row in self.rows],
            "truncated": self.truncated,
        }


def jsonable(value: Any) -> Any:
    """A JSON-safe form of one result value: instants and dates as ISO 8601, decimals as numbers."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, Decimal):
        return float(value) if value.is_finite() else str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return str(value)


class SqlEngine(Protocol):
    name: str

    def run(self, sql: str, max_rows: int | None = None) -> QueryResult: ...


# Statements that only read. Everything else (DDL, INSERT, CTAS, UNLOAD, EXPLAIN ANALYZE, several
# statements) is refused before it reaches an engine; Trino has no data-modifying CTEs, so a statement that
# starts with SELECT or WITH reads. The analytics role has no write permission on the catalog either.
READ_ONLY_STATEMENTS = ("SELECT", "WITH", "SHOW", "DESCRIBE")
_READ_ONLY_START = re.compile(rf"({'|'.join(READ_ONLY_STATEMENTS)})\b", re.IGNORECASE)
_TOKENS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/|;|[^'\";/-]+|.", re.DOTALL)


def check_read_only(sql: str) -> str:
    """The statement without its trailing ``;``, if it is one read-only statement; QueryError otherwise.

    Works on tokens (string literals, quoted identifiers and comments are skipped), without a SQL parser:
    the cloud Lambda carries no sqlglot."""
    statements, pending, first_word = 0, False, ""
    for token in _TOKENS.findall(sql):
        if token == ";":
            statements += pending
            pending = False
        elif not token.startswith(("--", "/*")) and token.strip():
            pending = True
            if not first_word and token.strip() != "(":
                first_word = token.lstrip(" \t\r\n(")
    statements += pending
    if statements == 0:
        raise QueryError("The request has no SQL statement")
    if statements > 1:
        raise QueryError("Send one SQL statement per request")
    if not _READ_ONLY_START.match(first_word):
        raise QueryError(f"Only read-only statements are allowed: {', '.join(READ_ONLY_STATEMENTS)}")
    return sql.strip().rstrip(";").strip()


def engine_name(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    name = (env.get(topology.ENV_SQL_ENGINE) or DEFAULT_ENGINE).strip().lower()
    if name not in ENGINES:
        raise QueryError(f"{topology.ENV_SQL_ENGINE} must be one of {', '.join(ENGINES)}", status=500)
    return name


def engine_from_env(env: Mapping[str, str] | None = None, session: Any = None) -> SqlEngine:
    """The engine this deployment uses: Athena in AWS, DuckDB over moto's lake in the local runtime.

    Reads ENV_SQL_ENGINE, the Glue database and the Athena workgroup from the environment the CDK (or the
    local runtime) sets; AWS endpoints come from the standard SDK configuration."""
    env = os.environ if env is None else env
    catalog = topology.ANALYTICS_CATALOG
    database = env.get(catalog.env_var) or catalog.local_name
    if engine_name(env) == "duckdb":
        from fhirlake.analytics.duckdb_engine import DuckDbEngine  # local only: duckdb + sqlglot

        return DuckDbEngine.from_session(session, database)
    from fhirlake.analytics.athena import AthenaEngine

    workgroup = env.get(catalog.workgroup_env_var) or catalog.local_workgroup
    return AthenaEngine.from_session(session, database, workgroup)

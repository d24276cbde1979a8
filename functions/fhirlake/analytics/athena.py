"""The cloud SQL engine: Athena (engine v3, Trino SQL) through the deployment's workgroup.

The workgroup carries the result location, its encryption and the bytes-scanned limit (set by the CDK
and enforced), so a query names only the database. Polling backs off and gives up after a deadline,
cancelling the query so it stops scanning (and billing).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import boto3

from fhirlake.analytics.engine import QueryError, QueryResult, check_read_only

ATHENA_CATALOG = "AwsDataCatalog"
PAGE_SIZE = 1000  # GetQueryResults' maximum
_INTEGERS = {"tinyint", "smallint", "integer", "int", "bigint"}
_FLOATS = {"double", "float", "real"}


class AthenaEngine:
    name = "athena"

    def __init__(
        self,
        athena: Any,
        database: str,
        workgroup: str,
        timeout_seconds: float = 25.0,  # under API Gateway's 29 s integration limit
        first_poll_seconds: float = 0.2,
        max_poll_seconds: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._athena = athena
        self.database = database
        self.workgroup = workgroup
        self.timeout_seconds = timeout_seconds
        self._first_poll = first_poll_seconds
        self._max_poll = max_poll_seconds
        self._sleep = sleep
        self._clock = clock

    @classmethod
    def from_session(cls, session: boto3.Session | None, database: str, workgroup: str) -> AthenaEngine:
        return cls((session or boto3.Session()).client("athena"), database, workgroup)

    def run(self, sql: str, max_rows: int | None = None) -> QueryResult:
        statement = check_read_only(sql)
        query_id = self._athena.start_query_execution(
            QueryString=statement,
            QueryExecutionContext={"Database": self.database, "Catalog": ATHENA_CATALOG},
            WorkGroup=self.workgroup,
        )["QueryExecutionId"]
        execution = self._wait(query_id)
        return self._results(query_id, execution, max_rows)

    def _wait(self, query_id: str) -> dict[str, Any]:
        deadline = self._clock() + self.timeout_seconds
        delay = self._first_poll
        while True:
            execution = self._athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
            status = execution["Status"]
            state = status["State"]
            if state == "SUCCEEDED":
                return execution
            if state in ("FAILED", "CANCELLED"):
                raise _failure(status, state)
            if self._clock() + delay > deadline:
                self._athena.stop_query_execution(QueryExecutionId=query_id)
                raise QueryError(
                    f"The query did not finish within {self.timeout_seconds:g} s and was cancelled "
                    f"(query id {query_id})",
                    status=504,
                )
            self._sleep(delay)
            delay = min(delay * 2, self._max_poll)

    def _results(self, query_id: str, execution: dict[str, Any], max_rows: int | None) -> QueryResult:
        columns: list[str] = []
        types: list[str] = []
        rows: list[list[Any]] = []
        token: str | None = None
        first_page = True
        truncated = False
        while True:
            request: dict[str, Any] = {"QueryExecutionId": query_id, "MaxResults": PAGE_SIZE}
            if token:
                request["NextToken"] = token
            page = self._athena.get_query_results(**request)
            result_set = page["ResultSet"]
            raw = [
                [cell.get("VarCharValue") for cell in row.get("Data", [])]
                for row in result_set.get("Rows", [])
            ]
            if first_page:
                info = result_set.get("ResultSetMetadata", {}).get("ColumnInfo", [])
                columns = [c.get("Label") or c["Name"] for c in info]
                types = [c["Type"] for c in info]
                # SELECT (DML) results repeat the column labels as their first row; SHOW/DESCRIBE do not.
                if execution.get("StatementType") == "DML" and raw and raw[0] == columns:
                    raw = raw[1:]
                first_page = False
            rows += [[_typed(value, kind) for value, kind in zip(row, types, strict=False)] for row in raw]
            token = page.get("NextToken")
            if max_rows is not None and len(rows) > max_rows:
                rows, truncated = rows[:max_rows], True
                break
            if not token:
                break
        return QueryResult(columns, rows, types, truncated)


def _failure(status: dict[str, Any], state: str) -> QueryError:
    error = status.get("AthenaError") or {}
    reason = status.get("StateChangeReason") or error.get("ErrorMessage") or state.lower()
    if state == "CANCELLED":
        return QueryError(f"The query was cancelled: {reason}", status=409)
    # ErrorCategory 2 is the caller's query (syntax, unknown table); 1 is Athena itself, 3 other.
    return QueryError(reason, status=400 if error.get("ErrorCategory") == 2 else 502)


def _typed(value: str | None, kind: str) -> Any:
    """One Athena result cell (always text) as a Python value of its column type."""
    if value is None:
        return None
    base = kind.split("(", 1)[0].strip().lower()
    try:
        if base in _INTEGERS:
            return int(value)
        if base in _FLOATS:
            return float(value)
        if base == "decimal":
            return Decimal(value)
        if base == "boolean":
            return value.lower() == "true"
        if base == "date":
            return date.fromisoformat(value)
        if base == "timestamp":
            return _timestamp(value, with_zone="with time zone" in kind.lower())
    except (ValueError, InvalidOperation):
        return value
    return value  # varchar, json, array, map, row: Athena's text form


def _timestamp(value: str, with_zone: bool) -> datetime | str:
    if with_zone:  # "2020-01-01 10:00:00.000 UTC"
        stamp, _, zone = value.rpartition(" ")
        if zone.upper() == "UTC":
            return datetime.fromisoformat(stamp + "+00:00")
        return value
    return datetime.fromisoformat(value)

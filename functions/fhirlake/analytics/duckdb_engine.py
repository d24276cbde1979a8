"""The local SQL engine: DuckDB over the lake's Parquet files, with the catalog read from Glue (moto).

What exists comes from Glue, exactly as for Athena: an EXTERNAL_TABLE becomes a DuckDB relation over the
Parquet objects under its location (read through its Glue schema, see ``hive_types``), a VIRTUAL_VIEW
(an Athena "Presto view") becomes a DuckDB view of its transpiled Trino SQL. Only the tables a query
reads are loaded, and a table is loaded again only when its objects or schema changed.

Local only: imports duckdb and sqlglot (dev dependencies), never bundled with a Lambda.
"""

from __future__ import annotations

import io
import re
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import boto3
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from sqlglot import exp

from fhirlake.analytics import dialect, hive_types
from fhirlake.analytics.engine import QueryError, QueryResult, check_read_only

_SHOW_TABLES = re.compile(r"^SHOW\s+TABLES\b(?:\s+(?:FROM|IN)\s+[\w.\"`]+)?(?:\s+LIKE\s+'([^']*)')?$", re.I)
_DESCRIBE = re.compile(r"^DESCRIBE\s+([\w.\"`]+)$", re.I)


@dataclass
class _Loaded:
    fingerprint: tuple[Any, ...]
    kind: str  # "table" | "view"


class DuckDbEngine:
    name = "duckdb"

    def __init__(self, glue: Any, s3: Any, database: str) -> None:
        self._glue = glue
        self._s3 = s3
        self.database = database
        self._connection = duckdb.connect(config={"threads": 2})
        for statement in dialect.DUCKDB_SETUP:
            self._connection.execute(statement)
        # User SQL must not read the machine's files (read_csv('/etc/...')): only registered lake data.
        self._connection.execute("SET enable_external_access = false")
        self._loaded: dict[str, _Loaded] = {}
        self._lock = threading.Lock()  # one DuckDB connection; the local HTTP front is threaded
        self.loads = 0  # tables read from S3 so far (tests check laziness and caching)

    @classmethod
    def from_session(cls, session: boto3.Session | None, database: str) -> DuckDbEngine:
        session = session or boto3.Session()
        return cls(session.client("glue"), session.client("s3"), database)

    # -- the interface ------------------------------------------------------------------------
    def run(self, sql: str, max_rows: int | None = None) -> QueryResult:
        statement = check_read_only(sql)
        with self._lock:
            catalog = self._catalog()
            if _SHOW_TABLES.match(statement) or _DESCRIBE.match(statement):
                return self._metadata(statement, catalog)
            tree = dialect.parse_trino(statement)
            if not isinstance(tree, exp.Query | exp.Describe):  # e.g. WITH ... INSERT, which Trino refuses
                raise QueryError("Only read-only statements are allowed: SELECT, WITH, SHOW, DESCRIBE")
            self._ensure(dialect.referenced_tables(tree, self.database), catalog, set())
            return self._execute(dialect.to_duckdb(tree, self.database), max_rows)

    # -- catalog ------------------------------------------------------------------------------
    def _catalog(self) -> dict[str, dict[str, Any]]:
        tables: dict[str, dict[str, Any]] = {}
        try:
            for page in self._glue.get_paginator("get_tables").paginate(DatabaseName=self.database):
                tables |= {table["Name"].lower(): table for table in page["TableList"]}
        except self._glue.exceptions.EntityNotFoundException:
            raise QueryError(f"The analytics database {self.database} does not exist yet", 404) from None
        return tables

    def _ensure(self, names: set[str], catalog: dict[str, dict[str, Any]], visiting: set[str]) -> None:
        for name in sorted(names):
            table = catalog.get(name)
            if table is None:
                raise QueryError(f"Table {name} does not exist in database {self.database}")
            if name in visiting:
                raise QueryError(f"View {name} refers to itself", status=500)
            if table.get("TableType") == "VIRTUAL_VIEW":
                self._ensure_view(name, table, catalog, visiting | {name})
            else:
                self._ensure_table(name, table)

    def _ensure_view(
        self, name: str, table: dict[str, Any], catalog: dict[str, dict[str, Any]], visiting: set[str]
    ) -> None:
        view = dialect.decode_presto_view(table.get("ViewOriginalText") or "")
        tree = dialect.parse_trino(view.sql)
        self._ensure(dialect.referenced_tables(tree, self.database), catalog, visiting)
        fingerprint = (table.get("ViewOriginalText"),)
        loaded = self._loaded.get(name)
        if loaded is not None and loaded.fingerprint == fingerprint:
            return
        self._connection.execute(
            f'CREATE OR REPLACE TEMP VIEW "{name}" AS {dialect.to_duckdb(tree, self.database)}'
        )
        self._loaded[name] = _Loaded(fingerprint, "view")

    def _ensure_table(self, name: str, table: dict[str, Any]) -> None:
        descriptor = table.get("StorageDescriptor") or {}
        columns = list(descriptor.get("Columns") or [])
        partitions = list(table.get("PartitionKeys") or [])
        bucket, prefix = _split_location(descriptor.get("Location") or "", name)
        objects = self._objects(bucket, prefix)
        fingerprint = (repr(columns), repr(partitions), tuple(objects))
        loaded = self._loaded.get(name)
        if loaded is not None and loaded.fingerprint == fingerprint:
            return
        target = hive_types.schema(columns + partitions)
        parts = [
            hive_types.conform(self._read(bucket, key, prefix, partitions), target) for key, _etag in objects
        ]
        data = pa.concat_tables(parts) if parts else target.empty_table()
        self._connection.register(name, data)
        self._loaded[name] = _Loaded(fingerprint, "table")
        self.loads += 1

    def _objects(self, bucket: str, prefix: str) -> list[tuple[str, str]]:
        found = []
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                leaf = item["Key"].rsplit("/", 1)[-1]
                if leaf.endswith(".parquet") and not leaf.startswith(("_", ".")):
                    found.append((item["Key"], item["ETag"]))
        return sorted(found)

    def _read(self, bucket: str, key: str, prefix: str, partitions: list[dict[str, str]]) -> pa.Table:
        body = self._s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        data = pq.read_table(io.BytesIO(body))
        # Hive-style partition values live in the key (".../year=2024/..."), not in the file.
        values = dict(
            segment.split("=", 1) for segment in key[len(prefix) :].split("/")[:-1] if "=" in segment
        )
        for partition in partitions:
            value = values.get(partition["Name"])
            column = pa.array([value] * data.num_rows, pa.string())
            data = data.append_column(partition["Name"], column)
        return data

    # -- execution ----------------------------------------------------------------------------
    def _execute(self, sql: str, max_rows: int | None) -> QueryResult:
        try:
            cursor = self._connection.execute(sql)
            columns = [d[0] for d in cursor.description or []]
            types = [str(d[1]) for d in cursor.description or []]
            if max_rows is None:
                rows = cursor.fetchall()
            else:
                rows = cursor.fetchmany(max_rows + 1)
                cursor.abort()
        except duckdb.Error as exc:
            raise QueryError(_duckdb_message(exc)) from None
        truncated = max_rows is not None and len(rows) > max_rows
        return QueryResult(columns, [list(r) for r in rows[:max_rows]], types, truncated)

    def _metadata(self, statement: str, catalog: dict[str, dict[str, Any]]) -> QueryResult:
        show = _SHOW_TABLES.match(statement)
        if show:
            pattern = show.group(1)
            names = sorted(catalog)
            if pattern is not None:  # SQL LIKE: % and _
                regex = re.compile(
                    "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern), re.I
                )
                names = [n for n in names if regex.fullmatch(n)]
            return QueryResult(["tab_name"], [[n] for n in names], ["varchar"])
        described = _DESCRIBE.match(statement)
        assert described is not None
        name = described.group(1).strip('"`').split(".")[-1].lower()
        table = catalog.get(name)
        if table is None:
            raise QueryError(f"Table {name} does not exist in database {self.database}")
        descriptor = table.get("StorageDescriptor") or {}
        columns = list(descriptor.get("Columns") or []) + list(table.get("PartitionKeys") or [])
        rows = [[c["Name"], c["Type"], c.get("Comment") or ""] for c in columns]
        return QueryResult(["col_name", "data_type", "comment"], rows, ["varchar"] * 3)


def _split_location(location: str, name: str) -> tuple[str, str]:
    parts = urlsplit(location)
    if parts.scheme not in ("s3", "s3a") or not parts.netloc:
        raise QueryError(f"Table {name} has no S3 location in the catalog", status=500)
    prefix = parts.path.lstrip("/")
    return parts.netloc, prefix if not prefix or prefix.endswith("/") else prefix + "/"


def _duckdb_message(exc: duckdb.Error) -> str:
    # DuckDB's first line names the problem ("Binder Error: Referenced column ..."); the rest is a caret
    # diagram of the transpiled SQL, which would confuse a caller who wrote Trino SQL.
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return first.replace("Catalog Error: ", "").replace("Binder Error: ", "")

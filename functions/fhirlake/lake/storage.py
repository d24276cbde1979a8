"""The lake's two AWS adapters: Parquet files in the lake bucket (S3) and their catalog (Glue).

Layout of the bucket::

    tables/{table}/{name}.parquet          the data files of one Glue table (its Location)
    _maintenance/compaction/{table}/...    manifests of compactions in flight (never under a Location)
"""

from __future__ import annotations

import base64
import hashlib
import io
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from botocore.exceptions import ClientError

from fhirlake.lake.schema import hive_type, trino_type

TABLES_PREFIX = "tables/"
COMPACTION_PREFIX = "_maintenance/compaction/"
PARQUET_SUFFIX = ".parquet"
COMPRESSION = "zstd"
_MAGIC = b"PAR1"
_FOOTER_GUESS = 64 * 1024


def digest(*parts: str) -> str:
    """A short, stable name for some content (file names that repeat when the same input repeats)."""
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


# Statistics only where readers prune on them (erasure, Athena predicates on the leading columns): every
# column chunk's statistics live in the footer, and the element columns are many.
_STATISTICS = ("id", "version_id", "last_updated", "patient_id", "_resource_id", "_version_id", "_patient_id")
SCHEMA_FILE = "0-schema" + PARQUET_SUFFIX


def parquet_bytes(table: pa.Table) -> bytes:
    """Parquet (zstd) without dictionary pages (zstd finds the repetition; small files stay small) and
    without the Arrow schema copy in the footer (the catalog holds the schema)."""
    sink = io.BytesIO()
    pq.write_table(
        table,
        sink,
        compression=COMPRESSION,
        use_dictionary=False,
        store_schema=False,
        write_statistics=[c for c in _STATISTICS if c in table.column_names],
    )
    return sink.getvalue()


def read_parquet(data: bytes, columns: list[str] | None = None) -> pa.Table:
    return pq.read_table(io.BytesIO(data), columns=columns)


@dataclass(frozen=True)
class LakeFile:
    key: str
    size: int


class LakeFiles:
    """Objects of the lake bucket."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self._s3 = s3
        self.bucket = bucket

    @staticmethod
    def table_prefix(table: str) -> str:
        return f"{TABLES_PREFIX}{table}/"

    def location(self, table: str) -> str:
        return f"s3://{self.bucket}/{self.table_prefix(table)}"

    def put(self, key: str, data: bytes) -> None:
        self._s3.put_object(Bucket=self.bucket, Key=key, Body=data)

    def get(self, key: str, version_id: str | None = None) -> bytes:
        extra = {"VersionId": version_id} if version_id else {}
        return self._s3.get_object(Bucket=self.bucket, Key=key, **extra)["Body"].read()

    def metadata(self, key: str, version_id: str | None = None) -> pq.FileMetaData:
        """A Parquet file's footer (schema, row groups, column statistics) with ranged GETs, not the file."""
        tail = self._range(key, f"bytes=-{_FOOTER_GUESS}", version_id)
        length = struct.unpack("<I", tail[-8:-4])[0]
        if length + 8 > len(tail):
            tail = self._range(key, f"bytes=-{length + 8}", version_id)
        # The reader looks for the footer at the end of what it is given; the column data is never needed.
        return pq.read_metadata(pa.BufferReader(_MAGIC + tail[-(length + 8) :]))

    def _range(self, key: str, byte_range: str, version_id: str | None) -> bytes:
        extra = {"VersionId": version_id} if version_id else {}
        return self._s3.get_object(Bucket=self.bucket, Key=key, Range=byte_range, **extra)["Body"].read()

    def exists(self, key: str) -> bool:
        try:
            self._s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def list(self, prefix: str) -> Iterator[LakeFile]:
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                yield LakeFile(obj["Key"], obj["Size"])

    def data_files(self, table: str) -> Iterator[LakeFile]:
        """The files of a table that hold rows (not its schema file)."""
        return (f for f in self.list(self.table_prefix(table)) if not f.key.endswith("/" + SCHEMA_FILE))

    def tables(self) -> list[str]:
        """The tables that have a folder in the bucket."""
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=TABLES_PREFIX, Delimiter="/"
        )
        found = [p["Prefix"] for page in pages for p in page.get("CommonPrefixes", [])]
        return sorted(p[len(TABLES_PREFIX) : -1] for p in found)

    def delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):  # DeleteObjects takes up to 1,000 keys
            batch = keys[start : start + 1000]
            self._s3.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
            )

    def old_versions(self, prefix: str) -> Iterator[tuple[str, str]]:
        """(key, version id) of the noncurrent object versions a versioned bucket keeps under ``prefix``:
        the bytes of overwritten and deleted files."""
        pages = self._s3.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=prefix)
        for page in pages:
            for version in page.get("Versions", []):
                if not version["IsLatest"]:
                    yield version["Key"], version["VersionId"]

    def delete_version(self, key: str, version_id: str) -> None:
        self._s3.delete_object(Bucket=self.bucket, Key=key, VersionId=version_id)


# -- Glue -------------------------------------------------------------------------------------------------
_PARQUET_STORAGE = {
    "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "SerdeInfo": {
        "SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
        "Parameters": {"serialization.format": "1"},
    },
}
_FINGERPRINT = "fhirlake.definition"


def glue_columns(schema: pa.Schema) -> list[dict[str, str]]:
    # Athena's catalog names are lowercase; it matches Parquet columns to them case-insensitively.
    return [{"Name": f.name.lower(), "Type": hive_type(f.type)} for f in schema]


def presto_view_text(sql: str, schema: pa.Schema, database: str) -> str:
    """``ViewOriginalText`` of an Athena view made through Glue (what ``CREATE VIEW`` in Athena stores)."""
    payload = {
        "originalSql": sql,
        "catalog": "awsdatacatalog",
        "schema": database,
        "columns": [{"name": f.name.lower(), "type": trino_type(f.type)} for f in schema],
    }
    return "/* Presto View: " + base64.b64encode(orjson.dumps(payload)).decode() + " */"


def view_sql(view_text: str) -> str:
    """The Trino SQL of a Presto view's ``ViewOriginalText``."""
    encoded = view_text.removeprefix("/* Presto View: ").removesuffix(" */")
    return orjson.loads(base64.b64decode(encoded))["originalSql"]


class GlueCatalog:
    """Tables and views of the analytics database, created once per definition and process.

    Safe under concurrency: of two writers creating the same table, one gets AlreadyExists and then
    finds the table as it would have written it (or updates it to this definition)."""

    def __init__(self, glue: Any, database: str) -> None:
        self._glue = glue
        self.database = database
        self._known: set[tuple[str, str]] = set()

    def ensure_table(self, name: str, schema: pa.Schema, location: str) -> None:
        columns = glue_columns(schema)
        table_input = {
            "Name": name,
            "TableType": "EXTERNAL_TABLE",
            "Parameters": {"classification": "parquet", "EXTERNAL": "TRUE", "parquet.compression": "ZSTD"},
            "StorageDescriptor": {"Columns": columns, "Location": location, **_PARQUET_STORAGE},
        }
        self._ensure(table_input)

    def ensure_view(self, name: str, sql: str, schema: pa.Schema) -> None:
        table_input = {
            "Name": name,
            "TableType": "VIRTUAL_VIEW",
            "Parameters": {"presto_view": "true", "comment": "Presto View"},
            "ViewOriginalText": presto_view_text(sql, schema, self.database),
            "ViewExpandedText": "/* Presto View */",
            "StorageDescriptor": {"Columns": glue_columns(schema), "SerdeInfo": {}},
        }
        self._ensure(table_input)

    def _ensure(self, table_input: dict[str, Any]) -> None:
        fingerprint = digest(orjson.dumps(table_input, option=orjson.OPT_SORT_KEYS).decode())
        name = table_input["Name"]
        if (name, fingerprint) in self._known:
            return
        table_input["Parameters"] = {**table_input["Parameters"], _FINGERPRINT: fingerprint}
        try:
            self._glue.create_table(DatabaseName=self.database, TableInput=table_input)
        except self._glue.exceptions.AlreadyExistsException:
            current = self._glue.get_table(DatabaseName=self.database, Name=name)["Table"]
            if current.get("Parameters", {}).get(_FINGERPRINT) != fingerprint:
                self._glue.update_table(DatabaseName=self.database, TableInput=table_input)
        self._known.add((name, fingerprint))

    def tables(self) -> dict[str, dict[str, Any]]:
        """Every table and view of the database, by name."""
        pages = self._glue.get_paginator("get_tables").paginate(DatabaseName=self.database)
        return {t["Name"]: t for page in pages for t in page["TableList"]}

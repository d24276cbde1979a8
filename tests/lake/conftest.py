"""Lake fixtures: the core and the lake on moto in-process, fed by the table's real stream.

Writes go through ``ResourceService``; ``pump`` reads the table stream with the local runtime's
``StreamPoller`` (the records Lambda would deliver) and runs the real ``handlers.lake.handler`` on them.
``LakeSql`` queries the result as the local SQL engine would: DuckDB over the Parquet files in the lake
bucket (downloaded: DuckDB's httpfs is not available offline), with the Glue views' Trino SQL
transpiled by sqlglot.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import duckdb
import handlers.lake
import handlers.lake_maintenance
import pytest
import sqlglot
from fhirlake.aws import aws_client
from fhirlake.config import Settings
from fhirlake.lake.bootstrap import Lake, LakeSettings, build_lake
from fhirlake.lake.storage import view_sql
from fhirlake.local.dispatcher import StreamPoller
from fhirlake.local.lambda_context import LocalLambdaContext
from fhirlake.local.provision import Provisioned, provision
from fhirlake.persistence.blobs import S3BlobStore
from fhirlake.persistence.dynamodb import DynamoResourceStore
from fhirlake.service.crud import ResourceService
from fhirlake.validation import get_validator
from moto import mock_aws

# botocore sends stream calls to account-specific hosts ({account}.streams-ddb...), which moto in-process
# does not intercept; the regional endpoint is.
STREAMS_ENDPOINT = "https://streams.dynamodb.us-east-1.amazonaws.com"


@dataclass
class ViewColumn:
    name: str
    type: str | None
    collection: bool = False


@dataclass
class FakeView:
    """A stand-in for ``fhirlake.views.compile_view(...)`` with the contract's interface."""

    name: str
    resource: str
    columns: list[ViewColumn]
    rows_of: Callable[[dict[str, Any]], list[dict[str, Any]]] = field(repr=False)

    def rows(self, resource: dict[str, Any]) -> list[dict[str, Any]]:
        return self.rows_of(resource)


def _observation_codes(obs: dict[str, Any]) -> list[dict[str, Any]]:
    subject = obs.get("subject", {}).get("reference", "")
    return [
        {
            "id": obs["id"],
            "patient_id": subject.split("/", 1)[1] if subject.startswith("Patient/") else None,
            "code": coding.get("code"),
            "value": obs.get("valueQuantity", {}).get("value"),
        }
        for coding in obs.get("code", {}).get("coding", [])
    ]


OBSERVATION_CODES = FakeView(
    "observation_codes",
    "Observation",
    [
        ViewColumn("id", "id"),
        ViewColumn("patient_id", None),
        ViewColumn("code", "code"),
        ViewColumn("value", "decimal"),
    ],
    _observation_codes,
)
PATIENT_NAMES = FakeView(
    "patient_names",
    "Patient",
    [ViewColumn("id", "id"), ViewColumn("family", "string"), ViewColumn("given", "string", collection=True)],
    lambda p: [
        {"id": p["id"], "family": n.get("family"), "given": n.get("given")} for n in p.get("name", [])
    ],
)
FAKE_VIEWS = (OBSERVATION_CODES, PATIENT_NAMES)


def invoke_lake(event: dict[str, Any]) -> dict[str, Any]:
    """The lake Lambda handler on one event, with a Lambda-like context (Powertools logs read it)."""
    import handlers.lake

    return handlers.lake.handler(event, LocalLambdaContext(function_name="fhirlake-lake"))


@dataclass
class Delivery:
    event: dict[str, Any]
    response: dict[str, Any]


class Pump:
    """Runs the lake handler on every stream record not yet delivered, in batches as Lambda would; by
    default unfiltered (every item kind reaches the handler), or through an event filter pattern."""

    def __init__(
        self, aws: Provisioned, batch_size: int, event_filter: Mapping[str, Any] | None = None
    ) -> None:
        import handlers.lake

        self.deliveries: list[Delivery] = []

        def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
            response = handlers.lake.handler(event, context)
            self.deliveries.append(Delivery(event, response))
            return response

        streams = boto3.client("dynamodbstreams", endpoint_url=STREAMS_ENDPOINT)
        assert aws.table_stream_arn
        self._poller = StreamPoller(
            streams,
            aws.table_stream_arn,
            handler,
            "fhirlake-lake",
            batch_size=batch_size,
            event_filter=event_filter,
        )

    def __call__(self) -> list[Delivery]:
        start = len(self.deliveries)
        while self._poller.poll_once():
            pass
        return self.deliveries[start:]


class LakeSql:
    """DuckDB over the lake's files, with the catalog's tables and views."""

    def __init__(self, lake: Lake, folder: Path) -> None:
        self._lake, self._folder = lake, folder
        self._downloads = itertools.count()

    def connect(self) -> duckdb.DuckDBPyConnection:
        db = duckdb.connect()
        files, catalog = self._lake.files, self._lake.catalog
        entries = catalog.tables()
        for name, table in entries.items():
            if table["TableType"] != "EXTERNAL_TABLE":
                continue
            prefix = table["StorageDescriptor"]["Location"].removeprefix(f"s3://{files.bucket}/")
            paths = []
            for f in files.list(prefix):
                path = self._folder / f"{next(self._downloads)}.parquet"
                path.write_bytes(files.get(f.key))
                paths.append(str(path))
            if paths:
                db.execute(
                    f"CREATE VIEW {name} AS SELECT * FROM read_parquet({paths!r}, union_by_name = true)"
                )
        for name, table in entries.items():
            if table["TableType"] == "VIRTUAL_VIEW":
                sql = sqlglot.transpile(view_sql(table["ViewOriginalText"]), read="trino", write="duckdb")[0]
                db.execute(f"CREATE VIEW {name} AS {sql}")
        return db

    def rows(self, query: str) -> list[tuple[Any, ...]]:
        with self.connect() as db:
            return db.execute(query).fetchall()


@dataclass
class World:
    """A provisioned store with its lake: writes through ``service``, ``pump()`` to feed the lake."""

    aws: Provisioned
    service: ResourceService
    lake: Lake
    pump: Pump
    sql: LakeSql

    def files(self) -> dict[str, list[str]]:
        """The lake's data files (not the schema files), by table."""
        files = self.lake.files
        return {t: sorted(f.key for f in files.data_files(t)) for t in files.tables()}


@contextmanager
def lake_world(views: Sequence[Any] = FAKE_VIEWS) -> Iterator[World]:
    """Like the ``aws`` fixture (moto in-process, provisioned from the topology), plus the lake. The
    store indexes no search values: the lake does not need them, and writes are several times faster."""
    with pytest.MonkeyPatch.context() as patch, mock_aws(), tempfile.TemporaryDirectory() as folder:
        patch.delenv("AWS_ENDPOINT_URL", raising=False)
        for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
            patch.setenv(name, value)
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        aws = provision(boto3.Session(region_name="us-east-1"), None)
        env = aws.environment()
        for name, value in env.items():
            patch.setenv(name, value)
        settings = Settings.from_env(env)
        store = DynamoResourceStore(
            aws_client("dynamodb"),
            settings.table_name,
            S3BlobStore(aws_client("s3"), settings.blob_bucket),
            "default",
        )
        ids = (f"r{n}" for n in itertools.count(1))
        service = ResourceService(store, get_validator("strict"), new_id=lambda: next(ids))
        lake = build_lake(LakeSettings.from_env(env), views=views)
        for handler_module in (handlers.lake, handlers.lake_maintenance):
            patch.setattr(handler_module, "lake", lambda lake=lake: lake)
        yield World(aws, service, lake, Pump(aws, batch_size=100), LakeSql(lake, Path(folder)))


@pytest.fixture
def world() -> Iterator[World]:
    with lake_world() as made:
        yield made

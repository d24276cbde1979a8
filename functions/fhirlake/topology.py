"""The resources fhirlake runs on, declared once.

Both the CDK constructs (``infra/``) and the local runtime (``fhirlake.local``) read these
declarations, so the table keys, indexes, bucket roles and queue wiring cannot drift apart
between the cloud and a laptop. Nothing here talks to AWS.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

KeyType = Literal["S", "N", "B"]


@dataclass(frozen=True)
class Key:
    name: str
    type: KeyType = "S"


@dataclass(frozen=True)
class GlobalIndex:
    name: str
    partition: Key
    sort: Key
    # KEYS_ONLY keeps index writes at 1 WCU; readers fetch bodies with BatchGetItem.
    projection: Literal["KEYS_ONLY", "ALL"] = "KEYS_ONLY"


@dataclass(frozen=True)
class TableSpec:
    env_var: str
    local_name: str
    partition: Key
    sort: Key
    indexes: tuple[GlobalIndex, ...] = ()
    stream: Literal["NEW_AND_OLD_IMAGES", "NEW_IMAGE"] | None = "NEW_AND_OLD_IMAGES"
    ttl_attribute: str | None = None


@dataclass(frozen=True)
class BucketSpec:
    role: str
    env_var: str
    local_name: str
    purpose: str


@dataclass(frozen=True)
class QueueSpec:
    role: str
    env_var: str
    local_name: str
    purpose: str
    visibility_timeout_seconds: int = 900
    max_receive_count: int = 5


@dataclass(frozen=True)
class FunctionSpec:
    role: str
    handler: str  # "module.function" inside the functions/ asset
    purpose: str
    # What invokes it: "http" (API Gateway), "queue:<role>" (SQS event source), "stream" (table stream)
    # or "schedule:<EventBridge expression>" (e.g. "schedule:rate(15 minutes)").
    trigger: str
    memory_mb: int = 1024
    timeout_seconds: int = 29
    env: tuple[str, ...] = field(default_factory=tuple)
    # "http" functions: the path prefixes they serve; empty = every path not claimed by another function.
    routes: tuple[str, ...] = ()
    # Optional-dependency groups of pyproject.toml bundled with this function on top of the core
    # dependencies (pyarrow alone is ~100 MB unzipped: only the functions that need it carry it).
    extras: tuple[str, ...] = ()
    # "stream" functions: a Lambda event filter pattern (applied by the event source mapping in AWS and
    # by the local stream poller), so the function is invoked only for the records it consumes.
    stream_filter: Mapping[str, Any] | None = None


# ---------------------------------------------------------------------------
# DynamoDB: one table holds every version, the history indexes and (later) search entries.
# Key design: docs/architecture.md.
# ---------------------------------------------------------------------------
TYPE_HISTORY_INDEX = GlobalIndex("type-history", Key("gsi1pk"), Key("gsi1sk"))
SYSTEM_HISTORY_INDEX = GlobalIndex("system-history", Key("gsi2pk"), Key("gsi2sk"))
# System history is write-sharded so a busy tenant never funnels every write into one
# index partition; readers query all shards and merge (the sort keys share one format).
SYSTEM_HISTORY_SHARDS = 8

RESOURCE_TABLE = TableSpec(
    env_var="FHIRLAKE_TABLE",
    local_name="fhirlake-resources",
    partition=Key("pk"),
    sort=Key("sk"),
    indexes=(TYPE_HISTORY_INDEX, SYSTEM_HISTORY_INDEX),
    stream="NEW_AND_OLD_IMAGES",
)

# ---------------------------------------------------------------------------
# S3 buckets, by role.
# ---------------------------------------------------------------------------
LANDING_BUCKET = BucketSpec(
    "landing",
    "FHIRLAKE_LANDING_BUCKET",
    "fhirlake-landing",
    "Drop NDJSON / Bundle files here to import them.",
)
BLOB_BUCKET = BucketSpec(
    "blobs",
    "FHIRLAKE_BLOB_BUCKET",
    "fhirlake-blobs",
    "Bodies of resource versions too large for a DynamoDB item.",
)
RESULTS_BUCKET = BucketSpec(
    "results",
    "FHIRLAKE_RESULTS_BUCKET",
    "fhirlake-results",
    "Import job manifests, SUCCESS and FAILURE reports.",
)
LAKE_BUCKET = BucketSpec(
    "lake",
    "FHIRLAKE_LAKE_BUCKET",
    "fhirlake-lake",
    "Analytics lake: one table per resource type, queried by Athena.",
)
QUERY_RESULTS_BUCKET = BucketSpec(
    "query-results",
    "FHIRLAKE_QUERY_RESULTS_BUCKET",
    "fhirlake-query-results",
    "Athena query results of the analytics workgroup.",
)
BUCKETS = (LANDING_BUCKET, BLOB_BUCKET, RESULTS_BUCKET, LAKE_BUCKET, QUERY_RESULTS_BUCKET)


# ---------------------------------------------------------------------------
# Analytics catalog: the Glue database holding one table per resource type (+ views); Athena reads it
# through one workgroup. Locally the same catalog lives in moto's Glue and DuckDB answers the SQL.
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class CatalogSpec:
    env_var: str
    local_name: str
    workgroup_env_var: str
    local_workgroup: str


ANALYTICS_CATALOG = CatalogSpec(
    env_var="FHIRLAKE_GLUE_DATABASE",
    local_name="fhirlake",
    workgroup_env_var="FHIRLAKE_ATHENA_WORKGROUP",
    local_workgroup="fhirlake",
)

# ---------------------------------------------------------------------------
# Queues.
# ---------------------------------------------------------------------------
IMPORT_QUEUE = QueueSpec(
    "import",
    "FHIRLAKE_IMPORT_QUEUE_URL",
    "fhirlake-import",
    "S3 ObjectCreated notifications of the landing bucket, and import chunks.",
)
QUEUES = (IMPORT_QUEUE,)

# ---------------------------------------------------------------------------
# Lambda functions (thin handlers in functions/handlers/).
# ---------------------------------------------------------------------------
API_FUNCTION = FunctionSpec(
    role="api",
    handler="handlers.api.handler",
    purpose="FHIR REST API behind API Gateway.",
    trigger="http",
    memory_mb=1769,  # one full vCPU: validation is CPU-bound
    timeout_seconds=29,  # API Gateway's integration limit
    env=(RESOURCE_TABLE.env_var, BLOB_BUCKET.env_var),
)
IMPORT_FUNCTION = FunctionSpec(
    role="import",
    handler="handlers.bulk_import.handler",
    purpose="Bulk import of NDJSON / Bundle files dropped in the landing bucket (fhirlake.ingest).",
    trigger=f"queue:{IMPORT_QUEUE.role}",
    memory_mb=1769,  # one full vCPU: parsing and validation are CPU-bound
    # Each message is one chunk sized to finish well within this; the queue's visibility timeout
    # (900 s) must stay >= this timeout (AWS recommends 6x the timeout for SQS event sources).
    timeout_seconds=900,
    env=(
        RESOURCE_TABLE.env_var,
        BLOB_BUCKET.env_var,
        LANDING_BUCKET.env_var,
        RESULTS_BUCKET.env_var,
        IMPORT_QUEUE.env_var,
    ),
)
# The lake consumes new resource versions only (sk "v#..."): current-version copies, search entries and
# job items never wake it up.
# Records per batch of a stream consumer (the lake's event source mapping; the local runtime reads the stream
# this many records at a time): fewer, larger Parquet files than small batches.
STREAM_BATCH_SIZE = 1000
LAKE_STREAM_FILTER: Mapping[str, Any] = {
    "eventName": ["INSERT"],
    "dynamodb": {"Keys": {"sk": {"S": [{"prefix": "v#"}]}}},
}
LAKE_FUNCTION = FunctionSpec(
    role="lake",
    handler="handlers.lake.handler",
    purpose="Writes every new resource version from the table stream into the S3 lake (fhirlake.lake).",
    trigger="stream",
    memory_mb=1769,
    timeout_seconds=300,
    env=(
        RESOURCE_TABLE.env_var,
        BLOB_BUCKET.env_var,
        LAKE_BUCKET.env_var,
        ANALYTICS_CATALOG.env_var,
    ),
    extras=("lake",),
    stream_filter=LAKE_STREAM_FILTER,
)
LAKE_MAINTENANCE_FUNCTION = FunctionSpec(
    role="lake-maintenance",
    handler="handlers.lake_maintenance.handler",
    purpose="Compacts the lake's small files and keeps the catalog in step (fhirlake.lake).",
    trigger="schedule:rate(15 minutes)",
    memory_mb=3008,
    timeout_seconds=900,
    # The table and blob bucket: `fhirlake lake backfill` rebuilds the lake from the table.
    env=(RESOURCE_TABLE.env_var, BLOB_BUCKET.env_var, LAKE_BUCKET.env_var, ANALYTICS_CATALOG.env_var),
    extras=("lake",),
)
ANALYTICS_FUNCTION = FunctionSpec(
    role="analytics",
    handler="handlers.analytics.handler",
    purpose="Analytics endpoints under /_analytics: SQL through Athena and disease-progression trends.",
    trigger="http",
    routes=("/_analytics",),
    memory_mb=1769,
    timeout_seconds=29,
    env=(
        RESOURCE_TABLE.env_var,
        BLOB_BUCKET.env_var,
        LAKE_BUCKET.env_var,
        QUERY_RESULTS_BUCKET.env_var,
        ANALYTICS_CATALOG.env_var,
        ANALYTICS_CATALOG.workgroup_env_var,
    ),
    # Athena answers its SQL in the cloud, so no pyarrow: with matplotlib it would pass Lambda's 250 MB
    # unzipped limit (core + pyarrow + matplotlib is ~284 MB).
    extras=("charts",),
)
REINDEX_FUNCTION = FunctionSpec(
    role="reindex",
    handler="handlers.reindex.handler",
    purpose="Rebuilds search index entries when the indexed parameters change (fhirlake.service.reindex).",
    # "deploy": invoked (asynchronously) after every deployment that changes the search configuration;
    # each run resumes from its checkpoint and re-invokes itself until the job is done.
    trigger="deploy",
    memory_mb=1769,
    timeout_seconds=900,
    env=(RESOURCE_TABLE.env_var, BLOB_BUCKET.env_var),
)
ANALYTICS_FUNCTIONS = (LAKE_FUNCTION, LAKE_MAINTENANCE_FUNCTION, ANALYTICS_FUNCTION)
IMPORT_DEAD_LETTER_FUNCTION = FunctionSpec(
    role="import-dead-letter",
    handler="handlers.bulk_import.dead_letter_handler",
    purpose="Reports the lines of import chunks that exhausted their retries and finishes their jobs.",
    trigger=f"dead-letter:{IMPORT_QUEUE.role}",  # SQS event source on the queue's dead-letter queue
    memory_mb=1024,
    timeout_seconds=300,
    env=IMPORT_FUNCTION.env,
)
FUNCTIONS = (
    API_FUNCTION,
    IMPORT_FUNCTION,
    IMPORT_DEAD_LETTER_FUNCTION,
    *ANALYTICS_FUNCTIONS,
    REINDEX_FUNCTION,
)

# Non-resource settings read from the environment (see fhirlake.config).
ENV_TENANT = "FHIRLAKE_TENANT"
ENV_VALIDATION_LEVEL = "FHIRLAKE_VALIDATION_LEVEL"
ENV_MAX_BODY_BYTES = "FHIRLAKE_MAX_BODY_BYTES"
ENV_BASE_URL = "FHIRLAKE_BASE_URL"
# Which SQL engine answers analytics queries: "athena" (the default in AWS) or "duckdb" (local runtime).
ENV_SQL_ENGINE = "FHIRLAKE_SQL_ENGINE"
# A folder of extra SQL on FHIR ViewDefinitions the lake materializes (fhirlake.lake.viewdefs).
ENV_VIEWS_DIR = "FHIRLAKE_VIEWS_DIR"
# Which search parameters are indexed: a JSON document, or the path of one (fhirlake.search.config).
ENV_SEARCH_CONFIG = "FHIRLAKE_SEARCH_CONFIG"

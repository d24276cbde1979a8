"""The Lambda functions of :data:`fhirlake.topology.FUNCTIONS`, their roles, logs and permissions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Annotations, ArnFormat, Duration, RemovalPolicy, Stack, Token
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct
from fhirlake import topology

from infra import bundling
from infra.config import LOG_RETENTION_DAYS
from infra.constructs import pascal
from infra.constructs.analytics import AnalyticsCatalog
from infra.constructs.triggers import FAILURE_HANDLING, SELF_INVOKING, parse_trigger
from infra.nag import regex, suppress
from infra.views import VIEWS_ASSET_DIR

# Exactly what the handlers do; no Scan, no stream reads, no DescribeTable. Transactions need the
# per-item actions (TransactWriteItems = Put/Update/Delete/ConditionCheck, TransactGetItems = GetItem).
TABLE_ACTIONS = (
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:Query",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem",
)
READ_TABLE_ACTIONS = ("dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query")
# The re-index job (fhirlake.service.reindex): reads its checkpoint and layout items, Scans the
# current-version items, Queries index partitions to empty them, batch-writes/deletes entries and updates
# its checkpoint. No transactions, no BatchGetItem, and only base-table calls.
REINDEX_TABLE_ACTIONS = (
    "dynamodb:Scan",
    "dynamodb:Query",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
)
# Per-function table access where a function needs other than TABLE_ACTIONS: the lake consumes the
# table's stream (read access granted by its event source mapping) and never touches items; analytics
# reads resources (patient trends go through the service layer) and never writes; lake maintenance
# only reads the table to rebuild the lake from it (backfill: a Scan of the version items), once its
# spec names the table.
TABLE_ACCESS = {
    topology.LAKE_FUNCTION.role: (),
    topology.ANALYTICS_FUNCTION.role: READ_TABLE_ACTIONS,
    topology.LAKE_MAINTENANCE_FUNCTION.role: ("dynamodb:Scan",),
    topology.REINDEX_FUNCTION.role: REINDEX_TABLE_ACTIONS,
}
# Functions that never touch the table's GSIs: their table access names the table only, not "index/*".
BASE_TABLE_ONLY = frozenset({topology.REINDEX_FUNCTION.role})
# Objects only: no version deletes (versioning is the recovery path), no bucket configuration.
OBJECT_ACTIONS = ("s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload")
READ_OBJECT_ACTIONS = ("s3:GetObject",)
# Per-function bucket access where a function needs other than OBJECT_ACTIONS: the import reads the
# landing bucket (never writes or deletes a dropped file) and writes reports (plus staged gzip parts
# it reads back and deletes) in the results bucket. The lake reads big bodies from the blob bucket and
# adds files to the lake (only compaction, in lake-maintenance, deletes them). Lake maintenance is the
# one function that deletes object versions, and only in the lake: erasing a patient (GDPR) rewrites
# the files holding their rows and must also purge the overwritten versions, which would otherwise
# keep the rows for lakeNoncurrentVersionDays (the lake is derived data: the table is the record).
# Analytics reads bodies and, through Athena (which acts with the caller's credentials), the lake's
# files, and writes query results (multipart uploads included).
BUCKET_ACTIONS = {
    (topology.IMPORT_FUNCTION.role, topology.LANDING_BUCKET.role): ("s3:GetObject", "s3:GetObjectVersion"),
    (topology.IMPORT_FUNCTION.role, topology.RESULTS_BUCKET.role): (
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:AbortMultipartUpload",
    ),
    (topology.LAKE_FUNCTION.role, topology.BLOB_BUCKET.role): READ_OBJECT_ACTIONS,
    (topology.LAKE_FUNCTION.role, topology.LAKE_BUCKET.role): (
        "s3:GetObject",
        "s3:PutObject",
        "s3:AbortMultipartUpload",
    ),
    (topology.LAKE_MAINTENANCE_FUNCTION.role, topology.LAKE_BUCKET.role): (
        *OBJECT_ACTIONS,
        "s3:DeleteObjectVersion",
    ),
    (topology.LAKE_MAINTENANCE_FUNCTION.role, topology.BLOB_BUCKET.role): READ_OBJECT_ACTIONS,  # backfill
    (topology.ANALYTICS_FUNCTION.role, topology.BLOB_BUCKET.role): READ_OBJECT_ACTIONS,
    (topology.ANALYTICS_FUNCTION.role, topology.LAKE_BUCKET.role): READ_OBJECT_ACTIONS,
    # re-index: the bodies of versions too large for their item (entries are extracted from them)
    (topology.REINDEX_FUNCTION.role, topology.BLOB_BUCKET.role): READ_OBJECT_ACTIONS,
    (topology.ANALYTICS_FUNCTION.role, topology.QUERY_RESULTS_BUCKET.role): (
        "s3:GetObject",
        "s3:PutObject",
        "s3:AbortMultipartUpload",
        "s3:ListMultipartUploadParts",
    ),
}
# Bucket-level actions. ListBucket only so that a missing key is a 404 (NoSuchKey), not a 403. Athena
# also checks the location of the buckets it reads and writes for its caller, and lists unfinished
# multipart uploads of its results; erasure lists the versions of the lake files it rewrites.
BUCKET_LEVEL_ACTIONS = ("s3:ListBucket",)
BUCKET_LEVEL_ACCESS = {
    (topology.LAKE_MAINTENANCE_FUNCTION.role, topology.LAKE_BUCKET.role): (
        "s3:ListBucket",
        "s3:ListBucketVersions",
    ),
    (topology.ANALYTICS_FUNCTION.role, topology.LAKE_BUCKET.role): ("s3:ListBucket", "s3:GetBucketLocation"),
    (topology.ANALYTICS_FUNCTION.role, topology.QUERY_RESULTS_BUCKET.role): (
        "s3:ListBucket",
        "s3:GetBucketLocation",
        "s3:ListBucketMultipartUploads",
    ),
    # re-index reads blobs its items point to: a missing one is an error either way (403 or 404)
    (topology.REINDEX_FUNCTION.role, topology.BLOB_BUCKET.role): (),
}
# Glue Data Catalog access of each function that names the catalog's env var (synth fails without an
# entry). The lake registers a table (and view) per resource type when its first version arrives and
# updates it as the schema grows; maintenance keeps tables in step after compaction; analytics reads
# table definitions, as Athena does for its caller while planning a query. No DeleteTable/DeleteDatabase.
CATALOG_ACTIONS = {
    topology.LAKE_FUNCTION.role: (
        "glue:GetDatabase",
        "glue:GetTable",
        "glue:CreateTable",
        "glue:UpdateTable",
    ),
    topology.LAKE_MAINTENANCE_FUNCTION.role: (
        "glue:GetDatabase",
        "glue:GetTable",
        "glue:GetTables",
        "glue:CreateTable",
        "glue:UpdateTable",
    ),
    topology.ANALYTICS_FUNCTION.role: (
        "glue:GetDatabase",
        "glue:GetTable",
        "glue:GetTables",
        "glue:GetPartitions",
    ),
}
# EventBridge events a function may put on the account's default bus (events:source condition).
EVENT_SOURCES = {topology.IMPORT_FUNCTION.role: "fhirlake.import"}
# Envelope encryption with the data key (S3 SSE-KMS, SQS SSE, DynamoDB CMK); no wildcard actions.
KEY_ACTIONS = ("kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey")

POWERTOOLS_ENV = {
    "POWERTOOLS_SERVICE_NAME": "fhirlake",
    "POWERTOOLS_METRICS_NAMESPACE": "fhirlake",
    "POWERTOOLS_LOG_LEVEL": "INFO",
    "POWERTOOLS_LOGGER_LOG_EVENT": "false",  # events carry FHIR resources (PHI)
    # Tracer would otherwise attach return values / exceptions of traced methods to X-Ray as
    # metadata: they can contain PHI, and X-Ray is not where PHI belongs.
    "POWERTOOLS_TRACER_CAPTURE_RESPONSE": "false",
    "POWERTOOLS_TRACER_CAPTURE_ERROR": "false",
}
# Environment a dependency extra needs on Lambda: matplotlib caches fonts under $HOME, which is
# read-only there (it would warn and pick a new temporary directory on every cold start).
EXTRA_ENVIRONMENT = {"charts": {"MPLCONFIGDIR": "/tmp/matplotlib"}}
# A partition, region or account inside an ARN as cdk-nag renders it: literal, or a pseudo parameter
# ("<AWS::Region>") in an environment-agnostic stack.
_ARN_PART = r"(?:<AWS::[A-Za-z]+>|[^:<>]+)"
# Functions that get Lambda SnapStart when the deployment turns it on (context ``snapStart``): the api,
# whose cold start is module init (~690 ms: boto3 clients and import, the X-Ray SDK; docs/performance.md)
# on the path of an interactive FHIR client. Not analytics: it is called by few analysts, and SnapStart
# for Python bills each published version's snapshot cache for as long as it is active, plus every
# restore (docs/deploy.md). Not the queue, stream, schedule and deploy functions: nobody waits on their
# cold start. API Gateway then invokes the function's LIVE_ALIAS: SnapStart applies to published
# versions only, never to $LATEST.
SNAP_START_ROLES = frozenset({topology.API_FUNCTION.role})
LIVE_ALIAS = "live"
# Functions that materialize ViewDefinitions and so carry the deployment's own (context ``viewsDir``) in
# their asset: the lake writes each new version's view rows, lake maintenance rebuilds them (backfill).
# Not analytics: it queries the views through the Glue catalog, never their definitions.
VIEWS_ROLES = frozenset({topology.LAKE_FUNCTION.role, topology.LAKE_MAINTENANCE_FUNCTION.role})
# Lambda refuses a function whose environment variables (names and values) exceed 4 KB in total.
LAMBDA_ENVIRONMENT_BYTES = 4096
# What a deployed name or URL (a token at synth) may take: generated table/bucket names and queue URLs
# are well under this.
TOKEN_VALUE_BYTES = 128


@dataclass(frozen=True)
class DataResources:
    """What the functions can be wired to, by topology role."""

    key: kms.IKey
    table: dynamodb.ITable
    buckets: Mapping[str, s3.IBucket]
    queues: Mapping[str, sqs.IQueue]
    catalog: AnalyticsCatalog


@dataclass(frozen=True)
class FunctionSettings:
    tenant: str
    validation_level: str
    max_body_bytes: int
    log_retention_days: int
    reserved_concurrency: int | None
    removal_policy: RemovalPolicy
    # ``<stackPrefix>-<stage>``: names the functions that need a name known before they exist
    name_prefix: str = "fhirlake"
    # The search index configuration (minified JSON) of every function using the table; None = default.
    search_config: str | None = None
    # SnapStart (published versions behind the LIVE_ALIAS) for the functions of SNAP_START_ROLES.
    snap_start: bool = False
    # The deployer's ViewDefinitions folder (already checked), shipped to the functions of VIEWS_ROLES.
    views_dir: Path | None = None

    def ships_views(self, spec: topology.FunctionSpec) -> bool:
        return self.views_dir is not None and spec.role in VIEWS_ROLES


def resource_environment(data: DataResources) -> dict[str, str]:
    """Every environment variable the topology defines for a resource, with its deployed value."""
    env = {topology.RESOURCE_TABLE.env_var: data.table.table_name}
    env.update({spec.env_var: data.buckets[spec.role].bucket_name for spec in topology.BUCKETS})
    env.update({spec.env_var: data.queues[spec.role].queue_url for spec in topology.QUEUES})
    env[topology.ANALYTICS_CATALOG.env_var] = data.catalog.database_name
    env[topology.ANALYTICS_CATALOG.workgroup_env_var] = data.catalog.workgroup_name
    return env


class Functions(Construct):
    """One function per FunctionSpec; functions with the same dependency extras share one code asset.

    Permissions follow the environment: a function whose spec lists the table's env var gets
    read/write on the table items (and its indexes), a bucket's env var read/write on that bucket's
    objects, a queue's env var send on that queue, the Glue database's env var its CATALOG_ACTIONS, the
    Athena workgroup's env var the right to run queries there, and then encrypt/decrypt on the data key
    they are all encrypted with; a self-invoking (deploy) function may invoke itself, by its fixed name.
    Nothing else (see TABLE_ACCESS, BUCKET_ACTIONS, KEY_ACTIONS). Every function using the table gets the
    deployment's search index configuration (``FHIRLAKE_SEARCH_CONFIG``) when one is set.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        data: DataResources,
        settings: FunctionSettings,
        assets: bundling.LambdaAssets,
        specs: tuple[topology.FunctionSpec, ...],
    ) -> None:
        super().__init__(scope, construct_id)
        self.functions: dict[str, lambda_.Function] = {}
        self.log_groups: dict[str, logs.LogGroup] = {}
        # What callers (API Gateway) invoke, by role: the LIVE_ALIAS of a SnapStart function, else the
        # function itself.
        self.entry_points: dict[str, lambda_.IFunction] = {}
        for spec in specs:
            extra_dirs = {VIEWS_ASSET_DIR: settings.views_dir} if settings.ships_views(spec) else None
            self._function(spec, data, settings, assets.code(spec.extras, extra_dirs))

    def _function(
        self,
        spec: topology.FunctionSpec,
        data: DataResources,
        settings: FunctionSettings,
        code: lambda_.Code,
    ) -> None:
        parse_trigger(spec)  # fail before building anything for a trigger nothing can wire
        resources = resource_environment(data)
        unknown = [name for name in spec.env if name not in resources]
        if unknown:
            raise ValueError(f"function {spec.role!r}: no deployed resource for env vars {unknown}")
        if topology.ANALYTICS_CATALOG.env_var in spec.env and spec.role not in CATALOG_ACTIONS:
            raise ValueError(
                f"function {spec.role!r} uses the Glue database: declare its actions in "
                "infra.constructs.functions.CATALOG_ACTIONS"
            )
        scope = Construct(self, pascal(spec.role))

        log_group = logs.LogGroup(
            scope,
            "LogGroup",
            encryption_key=data.key,
            retention=getattr(logs.RetentionDays, LOG_RETENTION_DAYS[settings.log_retention_days]),
            removal_policy=settings.removal_policy,
        )
        # Own role, no AWS managed policy: the only log permissions are on this function's group.
        role = iam.Role(
            scope,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"fhirlake {spec.role} function",
        )
        log_group.grant_write(role)

        environment = {name: resources[name] for name in spec.env}
        environment.update(
            {
                topology.ENV_TENANT: settings.tenant,
                topology.ENV_VALIDATION_LEVEL: settings.validation_level,
                topology.ENV_MAX_BODY_BYTES: str(settings.max_body_bytes),
                **POWERTOOLS_ENV,
            }
        )
        if topology.ANALYTICS_CATALOG.workgroup_env_var in spec.env:
            environment[topology.ENV_SQL_ENGINE] = "athena"  # DuckDB is the local runtime's engine only
        if settings.search_config is not None and topology.RESOURCE_TABLE.env_var in spec.env:
            # Everything that writes index entries, searches or re-indexes must see the same parameters.
            environment[topology.ENV_SEARCH_CONFIG] = settings.search_config
        for extra in spec.extras:
            environment.update(EXTRA_ENVIRONMENT.get(extra, {}))
        if settings.ships_views(spec):
            environment[topology.ENV_VIEWS_DIR] = f"{bundling.LAMBDA_TASK_ROOT}/{VIEWS_ASSET_DIR}"
        check_environment_size(spec, environment)
        kind = parse_trigger(spec).kind
        reserved = settings.reserved_concurrency
        if reserved is not None and kind in ("schedule", "deploy"):
            # Scheduled upkeep (lake compaction, erasure, backfill) and deploy-time jobs (re-index) must
            # never run twice at once.
            reserved = 1
        # A self-invoking function's policy must name the function itself. Its ARN attribute would make
        # the role's policy depend on the function, which already depends on its role (and policy): a
        # circular dependency. So its name is fixed here and the ARN built from it.
        function_name = f"{settings.name_prefix}-{spec.role}" if kind in SELF_INVOKING else None
        # The deploy trigger invokes the current version, and a SnapStart function serves from it, so each
        # deployment that changes the function (code or configuration) publishes one; old ones are deleted
        # with the deployment (each would otherwise keep its code, ~30 MB, in the region's 75 GB Lambda code
        # storage forever, and a SnapStart version its billed snapshot cache).
        snap_start = settings.snap_start and spec.role in SNAP_START_ROLES
        versions = (
            lambda_.VersionOptions(removal_policy=RemovalPolicy.DESTROY)
            if kind in SELF_INVOKING or snap_start
            else None
        )
        function = lambda_.Function(
            scope,
            "Function",
            function_name=function_name,
            current_version_options=versions,
            description=spec.purpose,
            runtime=bundling.LAMBDA_RUNTIME,
            architecture=bundling.LAMBDA_ARCHITECTURE,
            handler=spec.handler,
            code=code,
            memory_size=spec.memory_mb,
            timeout=Duration.seconds(spec.timeout_seconds),
            environment=environment,
            role=role,
            log_group=log_group,
            tracing=lambda_.Tracing.ACTIVE,
            reserved_concurrent_executions=reserved,
            snap_start=lambda_.SnapStartConf.ON_PUBLISHED_VERSIONS if snap_start else None,
        )

        self._grant(spec, data, role)
        if function_name is not None:
            self._grant_self_invoke(role, function_name)
        self._suppressions(spec, function, role, settings)
        self.functions[spec.role] = function
        self.log_groups[spec.role] = log_group
        self.entry_points[spec.role] = function
        if snap_start:
            self.entry_points[spec.role] = lambda_.Alias(
                scope, "LiveAlias", alias_name=LIVE_ALIAS, version=function.current_version
            )
            Annotations.of(function).acknowledge_warning(
                "@aws-cdk/aws-lambda:snapStartRequirePublish",
                "Every deployment that changes the function publishes its current version, which the "
                "live alias (what API Gateway invokes) points at.",
            )

    @staticmethod
    def _grant(spec: topology.FunctionSpec, data: DataResources, role: iam.IRole) -> None:
        uses_data = False
        for name in spec.env:
            if name == topology.RESOURCE_TABLE.env_var:
                table_actions = TABLE_ACCESS.get(spec.role, TABLE_ACTIONS)
                if table_actions and spec.role in BASE_TABLE_ONLY:
                    role.add_to_principal_policy(
                        iam.PolicyStatement(actions=list(table_actions), resources=[data.table.table_arn])
                    )
                elif table_actions:
                    data.table.grant(role, *table_actions)  # table + its "index/*"
                uses_data = True
            for bucket_spec in topology.BUCKETS:
                if name == bucket_spec.env_var:
                    access = (spec.role, bucket_spec.role)
                    bucket = data.buckets[bucket_spec.role]
                    actions = BUCKET_ACTIONS.get(access, OBJECT_ACTIONS)
                    role.add_to_principal_policy(
                        iam.PolicyStatement(actions=list(actions), resources=[bucket.arn_for_objects("*")])
                    )
                    bucket_actions = BUCKET_LEVEL_ACCESS.get(access, BUCKET_LEVEL_ACTIONS)
                    if bucket_actions:
                        role.add_to_principal_policy(
                            iam.PolicyStatement(actions=list(bucket_actions), resources=[bucket.bucket_arn])
                        )
                    uses_data = True
            if name == topology.ANALYTICS_CATALOG.env_var:
                data.catalog.grant_catalog(role, CATALOG_ACTIONS[spec.role])
            if name == topology.ANALYTICS_CATALOG.workgroup_env_var:
                data.catalog.grant_queries(role)
                uses_data = True  # query results are encrypted with the data key (SSE-KMS)
            for queue_spec in topology.QUEUES:
                if name == queue_spec.env_var:
                    data.queues[queue_spec.role].grant(role, "sqs:SendMessage")
                    uses_data = True
        if uses_data:  # everything above is encrypted with the one data key
            data.key.grant(role, *KEY_ACTIONS)
        if spec.role in EVENT_SOURCES:
            stack = Stack.of(role)
            role.add_to_principal_policy(
                iam.PolicyStatement(
                    actions=["events:PutEvents"],
                    resources=[
                        f"arn:{stack.partition}:events:{stack.region}:{stack.account}:event-bus/default"
                    ],
                    conditions={"StringEquals": {"events:source": EVENT_SOURCES[spec.role]}},
                )
            )

    @staticmethod
    def _grant_self_invoke(role: iam.IRole, function_name: str) -> None:
        """``lambda:InvokeFunction`` on this function only: unqualified (an invocation by hand) and any of
        its versions (the deploy trigger invokes the current version, and the function re-invokes the ARN
        it was invoked with, so a job runs to its end on the code and configuration it started with)."""
        arn = Stack.of(role).format_arn(
            service="lambda",
            resource="function",
            resource_name=function_name,
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[arn, f"{arn}:*"])
        )

    @staticmethod
    def _suppressions(
        spec: topology.FunctionSpec, function: lambda_.Function, role: iam.Role, settings: FunctionSettings
    ) -> None:
        trigger = parse_trigger(spec)
        star_reason = (
            "X-Ray PutTraceSegments/PutTelemetryRecords support no resource-level permissions (Resource '*' "
            "is required for active tracing)."
        )
        if trigger.kind == "stream":
            star_reason += (
                " dynamodb:ListStreams (granted by the stream event source mapping) supports no "
                "resource-level permissions either; the stream records themselves are read on this "
                "table's stream ARN only."
            )
        suppress(
            role,
            ("AwsSolutions-IAM5", star_reason, ["Resource::*"]),
            ("AwsSolutions-IAM5", "DynamoDB index queries (type and system history) need the table's "
             "'index/*' resource; it only covers the GSIs of this one table.",
             [regex(r"^Resource::.*\/index\/\*$")]),
            ("AwsSolutions-IAM5", "Glue tables and views are created at run time, one per FHIR resource type "
             "and ViewDefinition, so their names are unknown at deploy time; 'table/<database>/*' covers "
             "the tables of fhirlake's one database only.",
             [regex(r"^Resource::arn:[^:]+:glue:[^:]+:[^:]+:table\/[a-z0-9_]+\/\*$")]),
            ("AwsSolutions-IAM5", "A self-invoking function (a deploy-time job that continues in a new "
             "invocation) may invoke any version of itself: 'function:<its own name>:*' covers the "
             "versions and aliases of this one function, whose version numbers are assigned at deploy time.",
             [regex(rf"^Resource::arn:{_ARN_PART}:lambda:{_ARN_PART}:{_ARN_PART}:function:[a-z0-9-]+:\*$")]),
            ("AwsSolutions-IAM5", "Object-level S3 permissions apply to the objects of the one bucket "
             "the function is configured with ('<bucket arn>/*'); keys are resource ids, unknown in advance.",
             [regex(r"^Resource::(?!arn:[^:]+:glue:)(?!.*\/index\/\*$).*\/\*$")]),
            ("HIPAA.Security-IAMNoInlinePolicy", "The role's only policy is the CDK-generated one built from "
             "the least-privilege grants above, attached to this single role and versioned/rolled back with "
             "the stack by CloudFormation; a standalone managed policy would add nothing but reuse "
             "elsewhere."),
            children=True,
        )  # fmt: skip
        suppress(
            function,
            ("HIPAA.Security-LambdaInsideVPC", "Deliberately no VPC: the function only calls AWS APIs "
             "(DynamoDB, S3, KMS, X-Ray) over TLS with IAM auth; a VPC would need NAT gateways or five "
             "interface endpoints that bill at idle, against the project's no-idle-cost rule. Data never "
             "crosses the public internet unencrypted. Deployers who need it can add a VPC + endpoints."),
            ("HIPAA.Security-LambdaDLQ", f"The {spec.role} function is invoked "
             f"{FAILURE_HANDLING[trigger.kind]}."),
            ("AwsSolutions-L1", f"Pinned to {bundling.LAMBDA_RUNTIME.name}: the asset's wheels "
             "(pydantic-core, orjson, pyarrow) are installed for this exact CPython version; move forward "
             "deliberately, with tests."),
        )  # fmt: skip
        if settings.reserved_concurrency is None:
            suppress(
                function,
                ("HIPAA.Security-LambdaConcurrency", "Reserved concurrency is opt-in "
                 "(-c reservedConcurrency=N): reserving it on a new account (default limit 10) fails the "
                 "deployment. API Gateway stage throttling bounds the request rate instead."),
            )  # fmt: skip


def check_environment_size(spec: topology.FunctionSpec, environment: Mapping[str, str]) -> None:
    """Fail the synth, not the deployment, when the environment cannot fit Lambda's 4 KB."""
    size = sum(
        len(name.encode()) + (TOKEN_VALUE_BYTES if Token.is_unresolved(value) else len(value.encode()))
        for name, value in environment.items()
    )
    if size <= LAMBDA_ENVIRONMENT_BYTES:
        return
    hint = ""
    if topology.ENV_SEARCH_CONFIG in environment:
        hint = (
            f" The search configuration (searchConfig) alone takes "
            f"{len(environment[topology.ENV_SEARCH_CONFIG].encode())} bytes: shorten it with wildcards, "
            'e.g. "exclude": {"*": ["_source"]} instead of listing every type, or "include": {"Patient": '
            '["*"]} instead of listing every parameter of a type.'
        )
    raise ValueError(
        f"function {spec.role!r}: its environment variables need about {size} bytes, over Lambda's "
        f"{LAMBDA_ENVIRONMENT_BYTES}-byte limit.{hint}"
    )

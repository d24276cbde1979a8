"""The Lambda functions of :data:`fhirlake.topology.FUNCTIONS`, their roles, logs and permissions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy, Stack
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
from infra.nag import regex, suppress

# How each function is invoked. A synchronous function returns its errors to the caller, so a Lambda
# dead-letter queue / on-failure destination (async invocations only) would never receive anything.
# A function added to topology.FUNCTIONS must be listed here (synth fails otherwise): an SQS-driven
# function relies on its source queue's redrive policy (the queue's DLQ), not on a Lambda DLQ.
INVOCATION = {
    topology.API_FUNCTION.role: "synchronous (API Gateway Lambda proxy integration)",
    topology.IMPORT_FUNCTION.role: "by the SQS event source of the import queue (poll-based, not "
    "asynchronous): a failed message returns to the queue and, after maxReceiveCount attempts, lands in "
    "the import queue's own dead-letter queue, which is alarmed",
}

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
# Objects only: no version deletes (versioning is the recovery path), no bucket configuration.
OBJECT_ACTIONS = ("s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload")
# Per-function bucket access where a function needs less than OBJECT_ACTIONS: the import reads the
# landing bucket (never writes or deletes a dropped file) and writes reports (plus staged gzip parts
# it reads back and deletes) in the results bucket.
BUCKET_ACTIONS = {
    (topology.IMPORT_FUNCTION.role, topology.LANDING_BUCKET.role): ("s3:GetObject", "s3:GetObjectVersion"),
    (topology.IMPORT_FUNCTION.role, topology.RESULTS_BUCKET.role): (
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:AbortMultipartUpload",
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


@dataclass(frozen=True)
class DataResources:
    """What the functions can be wired to, by topology role."""

    key: kms.IKey
    table: dynamodb.ITable
    buckets: Mapping[str, s3.IBucket]
    queues: Mapping[str, sqs.IQueue]


@dataclass(frozen=True)
class FunctionSettings:
    tenant: str
    validation_level: str
    max_body_bytes: int
    log_retention_days: int
    reserved_concurrency: int | None
    removal_policy: RemovalPolicy


def resource_environment(data: DataResources) -> dict[str, str]:
    """Every environment variable the topology defines for a resource, with its deployed value."""
    env = {topology.RESOURCE_TABLE.env_var: data.table.table_name}
    env.update({spec.env_var: data.buckets[spec.role].bucket_name for spec in topology.BUCKETS})
    env.update({spec.env_var: data.queues[spec.role].queue_url for spec in topology.QUEUES})
    return env


class Functions(Construct):
    """One function per FunctionSpec, all sharing one (locally bundled) code asset.

    Permissions follow the environment: a function whose spec lists the table's env var gets
    read/write on the table items (and its indexes), a bucket's env var read/write on that bucket's
    objects, a queue's env var send on that queue, and then encrypt/decrypt on the data key they
    are all encrypted with. Nothing else (see TABLE_ACTIONS, OBJECT_ACTIONS, KEY_ACTIONS).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        data: DataResources,
        settings: FunctionSettings,
        code: lambda_.Code,
        specs: tuple[topology.FunctionSpec, ...] = topology.FUNCTIONS,
    ) -> None:
        super().__init__(scope, construct_id)
        self.functions: dict[str, lambda_.Function] = {}
        self.log_groups: dict[str, logs.LogGroup] = {}
        for spec in specs:
            self._function(spec, data, settings, code)

    def _function(
        self,
        spec: topology.FunctionSpec,
        data: DataResources,
        settings: FunctionSettings,
        code: lambda_.Code,
    ) -> None:
        if spec.role not in INVOCATION:
            raise ValueError(
                f"function {spec.role!r} (topology.FUNCTIONS) has no entry in infra.constructs.functions."
                "INVOCATION: decide how it is invoked (and its failure handling) before deploying it"
            )
        resources = resource_environment(data)
        unknown = [name for name in spec.env if name not in resources]
        if unknown:
            raise ValueError(f"function {spec.role!r}: no deployed resource for env vars {unknown}")
        scope = Construct(self, spec.role.capitalize())

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
        function = lambda_.Function(
            scope,
            "Function",
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
            reserved_concurrent_executions=settings.reserved_concurrency,
        )

        self._grant(spec, data, role)
        self._suppressions(spec, function, role, settings)
        self.functions[spec.role] = function
        self.log_groups[spec.role] = log_group

    @staticmethod
    def _grant(spec: topology.FunctionSpec, data: DataResources, role: iam.IRole) -> None:
        uses_data = False
        for name in spec.env:
            if name == topology.RESOURCE_TABLE.env_var:
                data.table.grant(role, *TABLE_ACTIONS)  # table + its "index/*"
                uses_data = True
            for bucket_spec in topology.BUCKETS:
                if name == bucket_spec.env_var:
                    bucket = data.buckets[bucket_spec.role]
                    actions = BUCKET_ACTIONS.get((spec.role, bucket_spec.role), OBJECT_ACTIONS)
                    role.add_to_principal_policy(
                        iam.PolicyStatement(actions=list(actions), resources=[bucket.arn_for_objects("*")])
                    )
                    # ListBucket only so that a missing key is a 404 (NoSuchKey), not a 403.
                    role.add_to_principal_policy(
                        iam.PolicyStatement(actions=["s3:ListBucket"], resources=[bucket.bucket_arn])
                    )
                    uses_data = True
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
    def _suppressions(
        spec: topology.FunctionSpec, function: lambda_.Function, role: iam.Role, settings: FunctionSettings
    ) -> None:
        suppress(
            role,
            ("AwsSolutions-IAM5", "X-Ray PutTraceSegments/PutTelemetryRecords support no resource-level "
             "permissions (Resource '*' is required for active tracing).", ["Resource::*"]),
            ("AwsSolutions-IAM5", "DynamoDB index queries (type and system history) need the table's "
             "'index/*' resource; it only covers the GSIs of this one table.",
             [regex(r"^Resource::.*\/index\/\*$")]),
            ("AwsSolutions-IAM5", "Object-level S3 permissions apply to the objects of the one bucket "
             "the function is configured with ('<bucket arn>/*'); keys are resource ids, unknown in advance.",
             [regex(r"^Resource::.*\/\*$")]),
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
             f"{INVOCATION[spec.role]}: errors return to the caller; a Lambda DLQ only receives failed "
             "asynchronous invocations."),
            ("AwsSolutions-L1", f"Pinned to {bundling.LAMBDA_RUNTIME.name}: the asset's wheels "
             "(pydantic-core, orjson) are installed for this exact CPython version; move forward "
             "deliberately, with tests."),
        )  # fmt: skip
        if settings.reserved_concurrency is None:
            suppress(
                function,
                ("HIPAA.Security-LambdaConcurrency", "Reserved concurrency is opt-in "
                 "(-c reservedConcurrency=N): reserving it on a new account (default limit 10) fails the "
                 "deployment. API Gateway stage throttling bounds the request rate instead."),
            )  # fmt: skip

"""What invokes each function: its :attr:`FunctionSpec.trigger` turned into an event source or a rule.

* ``http``: API Gateway (wired by :class:`infra.constructs.api.FhirApi`; :func:`http_routes` says which
  function serves which path prefix);
* ``queue:<role>``: an SQS event source on that topology queue;
* ``dead-letter:<role>``: an SQS event source on that topology queue's dead-letter queue (the import's
  sweeper reports the lines of chunks that exhausted their retries);
* ``stream``: a DynamoDB stream event source on the resource table, filtered by the spec's
  ``stream_filter``;
* ``schedule:<expression>``: an EventBridge rule (``rate(...)`` or ``cron(...)``);
* ``deploy``: a CDK trigger (custom resource) invoking the function asynchronously at the end of each
  deployment that changes the search index layout; such a function finishes its job by re-invoking
  itself (:data:`SELF_INVOKING`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import jsii
from aws_cdk import CfnResource, Duration, RemovalPolicy, triggers
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from aws_cdk.aws_lambda_event_sources import DynamoEventSource, SqsEventSource
from constructs import Construct
from fhirlake import topology

from infra.constructs import pascal
from infra.constructs.queues import dead_letter_queue

TRIGGER_KINDS = ("http", "queue", "dead-letter", "stream", "schedule", "deploy")
# Trigger kinds whose functions re-invoke themselves (asynchronously) until their job is done: a
# deploy-time job outlives one invocation's 15 minutes (the re-index job checkpoints and continues).
SELF_INVOKING = ("deploy",)
# The construct id the CDK gives the one trigger provider (a custom resource Lambda) of a stack.
TRIGGER_PROVIDER_ID = "AWSCDK.TriggerCustomResourceProviderCustomResourceProvider"
_SCHEDULE = re.compile(r"^(rate|cron)\(.+\)$")
_ROUTE = re.compile(r"^(/[A-Za-z0-9_.$-]+)+$")

# Stream consumers (the lake): a write must be queryable within 5 minutes. Lambda waits up to the
# batching window to fill a batch, so a quiet table still delivers within a minute, while a busy one
# fills batches of topology.STREAM_BATCH_SIZE (fewer, larger Parquet files; Lambda also caps a batch at its
# 6 MB payload limit).
STREAM_BATCHING_WINDOW = Duration.seconds(60)
# A failing batch is split in two and retried (bisect), and the function reports the records that
# failed (ReportBatchItemFailures) so that good records are not reprocessed. After this many retries
# the position of what still fails goes to the on-failure queue and the shard moves on: one poison
# record must not stall the lake for the stream's 24-hour retention.
STREAM_RETRY_ATTEMPTS = 10

# Why no Lambda dead-letter queue (HIPAA.Security-LambdaDLQ), by trigger kind.
FAILURE_HANDLING = {
    "http": "synchronously (API Gateway Lambda proxy integration): errors return to the caller, and a "
    "Lambda DLQ only receives failed asynchronous invocations",
    "queue": "by the SQS event source of its queue (poll-based, not asynchronous): a failed message "
    "returns to the queue and, after maxReceiveCount attempts, lands in that queue's own dead-letter "
    "queue, which is alarmed",
    "dead-letter": "by the SQS event source of a dead-letter queue (poll-based, not asynchronous): a "
    "message that keeps failing stays in that queue until its retention ends, and the queue's depth is "
    "alarmed",
    "stream": "by the DynamoDB stream event source mapping (poll-based, not asynchronous): a failing batch "
    "is bisected and retried, then the stream position of what still fails goes to the mapping's "
    "on-failure SQS queue, which is alarmed",
    "schedule": "asynchronously by an EventBridge schedule, with retries off: the scheduled work is "
    "idempotent and the next run repeats it, so a failed run is worth an alarm (function errors), not a "
    "dead-letter message",
    "deploy": "asynchronously, by the deployment's trigger and then by itself, with an event that holds no "
    "data (only the number of Scan segments): all progress is checkpointed in the table, so Lambda's two "
    "automatic retries and any later run (the next deployment, or invoking it by hand) resume the job, and "
    "a failed run is worth an alarm (function errors), not a dead-letter message",
}


@jsii.implements(lambda_.IEventSourceDlq)
class EncryptedQueueDestination:
    """On-failure destination of an event source mapping: an SQS queue encrypted with ``key``.

    The CDK's ``SqsDlq`` grants through ``grantSendMessages``, which adds ``kms:ReEncrypt*`` and
    ``kms:GenerateDataKey*`` on the key; the function needs exactly ``sqs:SendMessage`` on the queue and
    ``kms:GenerateDataKey``/``kms:Decrypt`` on its key.
    """

    def __init__(self, queue: sqs.IQueue, key: kms.IKey) -> None:
        self.queue = queue
        self.key = key

    def bind(
        self, _target: lambda_.IEventSourceMapping, target_handler: lambda_.IFunction
    ) -> lambda_.DlqDestinationConfig:
        self.queue.grant(target_handler, "sqs:SendMessage")
        self.key.grant(target_handler, "kms:GenerateDataKey", "kms:Decrypt")
        return lambda_.DlqDestinationConfig(destination=self.queue.queue_arn)


@dataclass(frozen=True)
class Trigger:
    kind: str  # one of TRIGGER_KINDS
    argument: str = ""  # queue role, or schedule expression


def parse_trigger(spec: topology.FunctionSpec) -> Trigger:
    """The spec's trigger, validated (synth fails on a trigger nothing here can wire)."""
    kind, _, argument = spec.trigger.partition(":")
    valid = (
        (kind in ("http", "stream") and not argument)
        or (kind in ("queue", "dead-letter") and argument in {queue.role for queue in topology.QUEUES})
        or (kind == "schedule" and _SCHEDULE.match(argument) is not None)
        or (kind == "deploy" and not argument)
    )
    if not valid:
        raise ValueError(
            f"function {spec.role!r}: cannot wire trigger {spec.trigger!r}; use 'http', 'stream', "
            "'queue:<topology queue role>', 'dead-letter:<topology queue role>', "
            "'schedule:rate(...)'/'schedule:cron(...)' or 'deploy'"
        )
    if kind == "stream" and not spec.stream_filter:
        raise ValueError(f"function {spec.role!r}: a stream function needs a stream_filter")
    return Trigger(kind, argument)


def http_routes(specs: tuple[topology.FunctionSpec, ...]) -> tuple[str, dict[str, str]]:
    """``(default role, {path prefix: role})`` of the ``http`` functions.

    Exactly one http function declares no routes: it serves every path no other function claims.
    """
    http = [spec for spec in specs if parse_trigger(spec).kind == "http"]
    defaults = [spec.role for spec in http if not spec.routes]
    if len(defaults) != 1:
        raise ValueError(f"exactly one http function must serve the default routes, found {defaults}")
    routes: dict[str, str] = {}
    for spec in http:
        for route in spec.routes:
            if not _ROUTE.match(route):
                raise ValueError(f"function {spec.role!r}: route {route!r} is not a plain '/path' prefix")
            if route in routes:
                raise ValueError(f"route {route!r} is claimed by {routes[route]!r} and {spec.role!r}")
            routes[route] = spec.role
    return defaults[0], routes


class Triggers(Construct):
    """Event sources, schedules and deploy-time triggers of the non-http functions.

    ``stream_failures[role]``: the on-failure queue of a stream function's event source mapping (it
    receives the shard and sequence-number range of a batch that kept failing, never the records).
    ``deploy_triggers[role]``: the trigger of a deploy function; it runs after everything in
    ``deployed_first`` (the table, every function with its role and configuration) and re-runs when the
    function or ``search_layout_digest`` changes.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        specs: tuple[topology.FunctionSpec, ...],
        functions: Mapping[str, lambda_.Function],
        table: dynamodb.ITable,
        queues: Mapping[str, sqs.IQueue],
        dead_letter_queues: Mapping[str, sqs.IQueue],
        key: kms.IKey,
        removal_policy: RemovalPolicy,
        search_layout_digest: str,
        deployed_first: Sequence[Construct] = (),
    ) -> None:
        super().__init__(scope, construct_id)
        self.stream_failures: dict[str, sqs.Queue] = {}
        self.schedules: dict[str, events.Rule] = {}
        self.deploy_triggers: dict[str, triggers.Trigger] = {}
        for spec in specs:
            trigger = parse_trigger(spec)
            function = functions[spec.role]
            if trigger.kind in ("queue", "dead-letter"):
                # One message (a file or a chunk, sized to fill one invocation) per batch; failures are
                # reported per message (Powertools batch processing).
                source = queues if trigger.kind == "queue" else dead_letter_queues
                function.add_event_source(
                    SqsEventSource(source[trigger.argument], batch_size=1, report_batch_item_failures=True)
                )
            elif trigger.kind == "stream":
                self._stream(spec, function, table, key, removal_policy)
            elif trigger.kind == "schedule":
                self._schedule(spec, trigger.argument, function)
            elif trigger.kind == "deploy":
                self._deploy(spec, function, search_layout_digest, deployed_first)

    def _stream(
        self,
        spec: topology.FunctionSpec,
        function: lambda_.Function,
        table: dynamodb.ITable,
        key: kms.IKey,
        removal_policy: RemovalPolicy,
    ) -> None:
        failures = dead_letter_queue(
            self,
            f"{pascal(spec.role)}StreamFailures",
            key=key,
            removal_policy=removal_policy,
            receives=f"the {spec.role} function's stream event source mapping (its on-failure destination)",
        )
        assert spec.stream_filter is not None  # parse_trigger checked it
        function.add_event_source(
            DynamoEventSource(
                table,
                starting_position=lambda_.StartingPosition.TRIM_HORIZON,
                batch_size=topology.STREAM_BATCH_SIZE,
                max_batching_window=STREAM_BATCHING_WINDOW,
                bisect_batch_on_error=True,
                retry_attempts=STREAM_RETRY_ATTEMPTS,
                report_batch_item_failures=True,
                on_failure=EncryptedQueueDestination(failures, key),
                filters=[lambda_.FilterCriteria.filter(dict(spec.stream_filter))],
            )
        )
        self.stream_failures[spec.role] = failures

    def _schedule(self, spec: topology.FunctionSpec, expression: str, function: lambda_.Function) -> None:
        # A failed run is not retried: the work is idempotent, the next scheduled run repeats it, and a
        # retry could overlap that run.
        function.configure_async_invoke(retry_attempts=0)
        self.schedules[spec.role] = events.Rule(
            self,
            f"{pascal(spec.role)}Schedule",
            description=f"fhirlake: runs the {spec.role} function, {expression}",
            schedule=events.Schedule.expression(expression),
            targets=[targets.LambdaFunction(function)],
        )

    def _deploy(
        self,
        spec: topology.FunctionSpec,
        function: lambda_.Function,
        search_layout_digest: str,
        deployed_first: Sequence[Construct],
    ) -> None:
        # Asynchronous (EVENT): the deployment never waits for the job, which may take hours. The trigger
        # invokes the function's current version, which CloudFormation replaces whenever the code or the
        # configuration (FHIRLAKE_SEARCH_CONFIG) changes, so the job also re-runs after code changes that
        # move index entries; it is idempotent and returns at once when the table is up to date.
        trigger = triggers.Trigger(
            self,
            f"{pascal(spec.role)}OnDeploy",
            handler=function,
            invocation_type=triggers.InvocationType.EVENT,
            execute_after=list(deployed_first),
        )
        # The index layout it is run for, on the custom resource itself: a changed layout updates the
        # resource, and an update re-invokes (the template also says which layout the last run was for).
        resource = trigger.node.default_child
        assert resource is not None
        cfn = resource.node.default_child
        assert isinstance(cfn, CfnResource)
        cfn.add_property_override("SearchLayoutDigest", search_layout_digest)
        self.deploy_triggers[spec.role] = trigger

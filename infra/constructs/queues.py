"""The import queue (with its dead-letter queue) and the landing bucket's S3 notifications into it."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct
from fhirlake import topology

from infra.constructs import pascal
from infra.nag import suppress


def dead_letter_queue(
    scope: Construct, construct_id: str, *, key: kms.IKey, removal_policy: RemovalPolicy, receives: str
) -> sqs.Queue:
    """A KMS-encrypted, TLS-only queue that keeps what failed for 14 days, the SQS maximum (time to
    investigate); ``receives`` names what it is the dead-letter queue of."""
    dlq = sqs.Queue(
        scope,
        construct_id,
        encryption=sqs.QueueEncryption.KMS,
        encryption_master_key=key,
        data_key_reuse=Duration.hours(1),
        enforce_ssl=True,
        retention_period=Duration.days(14),
        removal_policy=removal_policy,
    )
    suppress(dlq, ("AwsSolutions-SQS3", f"This queue is itself the dead-letter queue of {receives}."))
    return dlq


class Queues(Construct):
    """One queue (+ DLQ) per :data:`fhirlake.topology.QUEUES` role, KMS-encrypted and TLS-only.

    Extension point for the import Lambda (later issue): add an ``SqsEventSource(queues.queues["import"],
    report_batch_item_failures=True)`` to it; messages that fail ``max_receive_count`` times land in
    ``dead_letter_queues["import"]``, which the operations construct alarms on. The queue visibility
    timeout (topology) must stay >= 6x the import function's timeout, as AWS recommends.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        key: kms.IKey,
        removal_policy: RemovalPolicy,
        queue_specs: tuple[topology.QueueSpec, ...] = topology.QUEUES,
    ) -> None:
        super().__init__(scope, construct_id)
        self.queues: dict[str, sqs.Queue] = {}
        self.dead_letter_queues: dict[str, sqs.Queue] = {}
        for spec in queue_specs:
            name = pascal(spec.role)
            dlq = dead_letter_queue(
                self,
                f"{name}DeadLetterQueue",
                key=key,
                removal_policy=removal_policy,
                receives=f"the {spec.role} queue",
            )
            queue = sqs.Queue(
                self,
                f"{name}Queue",
                encryption=sqs.QueueEncryption.KMS,
                encryption_master_key=key,
                data_key_reuse=Duration.hours(1),
                enforce_ssl=True,
                visibility_timeout=Duration.seconds(spec.visibility_timeout_seconds),
                retention_period=Duration.days(4),
                dead_letter_queue=sqs.DeadLetterQueue(queue=dlq, max_receive_count=spec.max_receive_count),
                removal_policy=removal_policy,
            )
            self.queues[spec.role] = queue
            self.dead_letter_queues[spec.role] = dlq

    def notify_object_created(self, bucket: s3.Bucket, role: str) -> None:
        """Send the bucket's ``s3:ObjectCreated:*`` notifications to the ``role`` queue.

        Written on the CloudFormation bucket resource (``NotificationConfiguration``) rather than
        with ``bucket.add_event_notification``: the L2 method deploys a custom-resource Lambda
        (``s3:PutBucketNotification`` on ``*``, AWS managed policy) just to call one API at deploy
        time. Here CloudFormation sets it natively. S3 validates the destination when the bucket is
        created, so the bucket depends on the queue policy; the policy cannot name the bucket's ARN
        (that would be a dependency cycle), so it admits S3 deliveries from this account only
        (``aws:SourceAccount``). The import handler reads only from the landing bucket regardless,
        and must ignore the ``s3:TestEvent`` message S3 sends when the configuration is applied.
        """
        queue = self.queues[role]
        queue.add_to_resource_policy(
            iam.PolicyStatement(
                sid="S3ObjectCreatedNotifications",
                principals=[iam.ServicePrincipal("s3.amazonaws.com")],
                actions=["sqs:SendMessage"],
                resources=[queue.queue_arn],
                conditions={"StringEquals": {"aws:SourceAccount": Stack.of(self).account}},
            )
        )
        cfn_bucket = bucket.node.default_child
        assert isinstance(cfn_bucket, s3.CfnBucket)
        cfn_bucket.notification_configuration = s3.CfnBucket.NotificationConfigurationProperty(
            queue_configurations=[
                s3.CfnBucket.QueueConfigurationProperty(event="s3:ObjectCreated:*", queue=queue.queue_arn)
            ]
        )
        # DependsOn the sqs.QueuePolicy that add_to_resource_policy created (and enforce_ssl filled).
        cfn_bucket.node.add_dependency(queue.node.find_child("Policy"))

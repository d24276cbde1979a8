"""The customer-managed KMS key that encrypts every fhirlake store."""

from __future__ import annotations

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct


class DataKey(Construct):
    """One symmetric CMK with yearly automatic rotation for all data at rest.

    IAM principals of the account get access through identity policies (the CDK default key policy
    delegates to the account), so application roles get exactly what their grants say. The key policy
    adds the AWS services that use the key on their own behalf:

    * CloudWatch Logs (encrypted log groups), limited to this account's log groups in this region;
    * S3, to deliver ObjectCreated notifications into the KMS-encrypted import queue;
    * CloudWatch, to publish alarms to the KMS-encrypted SNS topic.

    The S3 and CloudWatch statements are the ones the AWS documentation gives (no conditions): these
    services only use the key for the queue/topic whose own resource policy lets them publish, and
    those policies are scoped to this account.

    DynamoDB, S3 (bucket encryption) and SQS (queue encryption) act with the caller's credentials
    (via their grants), so they need no key-policy statement.
    """

    def __init__(self, scope: Construct, construct_id: str, *, alias: str, removal_policy: RemovalPolicy):
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.key = kms.Key(
            self,
            "Key",
            alias=alias,
            description="fhirlake: encrypts the resource table, buckets, queues, topics and log groups",
            enable_key_rotation=True,
            rotation_period=Duration.days(365),
            removal_policy=removal_policy,
            pending_window=Duration.days(30),
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchLogsEncryptedLogGroups",
                principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
                actions=[
                    "kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"
                ],
                resources=["*"],  # in a key policy "*" means this key
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": stack.format_arn(
                            service="logs", resource="log-group", resource_name="*",
                            arn_format=ArnFormat.COLON_RESOURCE_NAME,
                        )
                    }
                },
            )
        )  # fmt: skip
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="S3EventNotificationsToEncryptedQueue",
                principals=[iam.ServicePrincipal("s3.amazonaws.com")],
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=["*"],
            )
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsToEncryptedTopic",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:GenerateDataKey*", "kms:Decrypt"],
                resources=["*"],
            )
        )

"""The stores of record: the DynamoDB resource table and the S3 buckets (one per topology role)."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct
from fhirlake import topology

from infra.constructs import pascal
from infra.nag import suppress

_STREAM_VIEW = {
    "NEW_AND_OLD_IMAGES": dynamodb.StreamViewType.NEW_AND_OLD_IMAGES,
    "NEW_IMAGE": dynamodb.StreamViewType.NEW_IMAGE,
}
_ATTRIBUTE_TYPE = {
    "S": dynamodb.AttributeType.STRING,
    "N": dynamodb.AttributeType.NUMBER,
    "B": dynamodb.AttributeType.BINARY,
}
_PROJECTION = {"KEYS_ONLY": dynamodb.ProjectionType.KEYS_ONLY, "ALL": dynamodb.ProjectionType.ALL}

# Noncurrent versions (overwritten/deleted objects) are kept this long for recovery, then expire.
NONCURRENT_VERSION_DAYS = 90
# Query results are PHI and reproducible by re-running the query: an expired or overwritten result is
# not kept as a noncurrent version beyond a day.
QUERY_RESULTS_NONCURRENT_DAYS = 1
# Server access logs are kept this long (S3 storage only; they carry request metadata, no bodies).
ACCESS_LOG_DAYS = 365


def _attribute(key: topology.Key) -> dynamodb.Attribute:
    return dynamodb.Attribute(name=key.name, type=_ATTRIBUTE_TYPE[key.type])


class Storage(Construct):
    """Resource table + one bucket per :data:`fhirlake.topology.BUCKETS` role + the access-log bucket.

    ``table`` and ``buckets[role]`` are what other constructs (functions, queues) wire up.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        key: kms.IKey,
        removal_policy: RemovalPolicy,
        results_expiration_days: int,
        query_results_expiration_days: int,
        lake_noncurrent_version_days: int,
        table_spec: topology.TableSpec = topology.RESOURCE_TABLE,
        bucket_specs: tuple[topology.BucketSpec, ...] = topology.BUCKETS,
    ) -> None:
        super().__init__(scope, construct_id)
        retain = removal_policy == RemovalPolicy.RETAIN
        self.table = self._table(table_spec, key, removal_policy, deletion_protection=retain)

        # Target of S3 server access logging. S3 cannot deliver server access logs to a bucket whose
        # default encryption is SSE-KMS (only SSE-S3 is supported for log target buckets; the CDK
        # rejects a KMS-encrypted target too), so this one bucket uses S3-managed keys. It holds
        # request metadata (requester, operation, object key, status), never object contents.
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            versioned=True,
            removal_policy=removal_policy,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-access-logs",
                    expiration=Duration.days(ACCESS_LOG_DAYS),
                    noncurrent_version_expiration=Duration.days(1),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
        )
        suppress(
            self.access_logs,
            ("HIPAA.Security-S3DefaultEncryptionKMS", "S3 server access logging can only deliver to a "
             "target bucket with SSE-S3 default encryption, not SSE-KMS; the bucket holds request "
             "metadata only (no object contents)."),
            ("HIPAA.Security-S3BucketReplicationEnabled", "Access logs are operational metadata; "
             "replicating them to another region would conflict with the deployer's region allow-list "
             "and is left to the deployer."),
        )  # fmt: skip

        # Current objects that expire, by bucket role: import reports and Athena query results.
        expirations = {
            topology.RESULTS_BUCKET.role: ("expire-results", results_expiration_days),
            topology.QUERY_RESULTS_BUCKET.role: ("expire-query-results", query_results_expiration_days),
        }
        # The lake is derived data (rebuilt from the table by the backfill) whose compaction rewrites
        # files all the time; its noncurrent versions also still hold the rows of an erased patient,
        # so they go after a few days, not NONCURRENT_VERSION_DAYS.
        noncurrent_days = {
            topology.LAKE_BUCKET.role: lake_noncurrent_version_days,
            topology.QUERY_RESULTS_BUCKET.role: QUERY_RESULTS_NONCURRENT_DAYS,
        }
        self.buckets: dict[str, s3.Bucket] = {}
        for spec in bucket_specs:
            rules = [
                s3.LifecycleRule(
                    id="abort-incomplete-multipart-uploads",
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                ),
                s3.LifecycleRule(
                    id="expire-noncurrent-versions",
                    noncurrent_version_expiration=Duration.days(
                        noncurrent_days.get(spec.role, NONCURRENT_VERSION_DAYS)
                    ),
                    expired_object_delete_marker=True,
                ),
            ]
            if spec.role in expirations:
                rule_id, days = expirations[spec.role]
                rules.append(s3.LifecycleRule(id=rule_id, expiration=Duration.days(days)))
            bucket = s3.Bucket(
                self,
                f"{pascal(spec.role)}Bucket",
                encryption=s3.BucketEncryption.KMS,
                encryption_key=key,
                bucket_key_enabled=True,  # one KMS call per bucket key, not per object
                block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
                object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
                enforce_ssl=True,
                versioned=True,
                server_access_logs_bucket=self.access_logs,
                server_access_logs_prefix=f"{spec.role}/",
                lifecycle_rules=rules,
                removal_policy=removal_policy,
            )
            suppress(
                bucket,
                ("HIPAA.Security-S3BucketReplicationEnabled", "Cross-region replication is a deployer "
                 "decision (data residency, see allowedRegions; cost). Versioning, noncurrent-version "
                 "retention and DynamoDB PITR cover recovery inside the region."),
            )  # fmt: skip
            self.buckets[spec.role] = bucket

    def _table(
        self,
        spec: topology.TableSpec,
        key: kms.IKey,
        removal_policy: RemovalPolicy,
        *,
        deletion_protection: bool,
    ) -> dynamodb.Table:
        table = dynamodb.Table(
            self,
            "ResourceTable",
            partition_key=_attribute(spec.partition),
            sort_key=_attribute(spec.sort),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,  # nothing billed at idle but storage
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=key,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            deletion_protection=deletion_protection,
            stream=_STREAM_VIEW[spec.stream] if spec.stream else None,
            time_to_live_attribute=spec.ttl_attribute,
            removal_policy=removal_policy,
        )
        for index in spec.indexes:
            table.add_global_secondary_index(
                index_name=index.name,
                partition_key=_attribute(index.partition),
                sort_key=_attribute(index.sort),
                projection_type=_PROJECTION[index.projection],
            )
        suppress(
            table,
            ("HIPAA.Security-DynamoDBInBackupPlan", "Point-in-time recovery (35 days, continuous) is "
             "enabled and deletion protection is on by default; an AWS Backup plan (vault, schedule, "
             "retention) is an organisation-level choice left to the deployer."),
        )  # fmt: skip
        return table

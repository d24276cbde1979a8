"""Create the resources declared in ``fhirlake.topology`` on an AWS-compatible endpoint (moto).

The CDK constructs create the same resources in the cloud from the same declarations.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import boto3

from fhirlake import topology


@dataclass(frozen=True)
class Provisioned:
    kms_key_id: str
    table_name: str
    table_stream_arn: str | None
    buckets: dict[str, str]  # role -> bucket name
    queue_urls: dict[str, str]  # role -> queue URL
    dead_letter_urls: dict[str, str]
    glue_database: str

    def environment(self) -> dict[str, str]:
        env = {topology.RESOURCE_TABLE.env_var: self.table_name}
        env |= {spec.env_var: self.buckets[spec.role] for spec in topology.BUCKETS}
        env |= {spec.env_var: self.queue_urls[spec.role] for spec in topology.QUEUES}
        catalog = topology.ANALYTICS_CATALOG
        env |= {
            catalog.env_var: self.glue_database,
            catalog.workgroup_env_var: catalog.local_workgroup,
            # Athena never executes SQL in moto: DuckDB answers it over the same lake and catalog.
            topology.ENV_SQL_ENGINE: "duckdb",
        }
        return env


def provision(session: boto3.Session, endpoint_url: str) -> Provisioned:
    def client(name: str) -> Any:
        return session.client(name, endpoint_url=endpoint_url)

    kms = client("kms")
    key_id = kms.create_key(Description="fhirlake local data key")["KeyMetadata"]["KeyId"]

    table = topology.RESOURCE_TABLE
    ddb = client("dynamodb")
    attributes = {table.partition, table.sort}
    for index in table.indexes:
        attributes |= {index.partition, index.sort}
    create: dict[str, Any] = dict(
        TableName=table.local_name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": k.name, "AttributeType": k.type}
            for k in sorted(attributes, key=lambda k: k.name)
        ],
        KeySchema=[
            {"AttributeName": table.partition.name, "KeyType": "HASH"},
            {"AttributeName": table.sort.name, "KeyType": "RANGE"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": index.name,
                "KeySchema": [
                    {"AttributeName": index.partition.name, "KeyType": "HASH"},
                    {"AttributeName": index.sort.name, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": index.projection},
            }
            for index in table.indexes
        ],
        SSESpecification={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key_id},
    )
    if table.stream:
        create["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": table.stream}
    description = ddb.create_table(**create)["TableDescription"]

    s3 = client("s3")
    buckets = {}
    for spec in topology.BUCKETS:
        s3.create_bucket(Bucket=spec.local_name)
        s3.put_bucket_encryption(
            Bucket=spec.local_name,
            ServerSideEncryptionConfiguration={
                "Rules": [
                    {
                        "ApplyServerSideEncryptionByDefault": {
                            "SSEAlgorithm": "aws:kms",
                            "KMSMasterKeyID": key_id,
                        }
                    }
                ]
            },
        )
        s3.put_bucket_versioning(Bucket=spec.local_name, VersioningConfiguration={"Status": "Enabled"})
        buckets[spec.role] = spec.local_name

    sqs = client("sqs")
    queue_urls, dead_letter_urls = {}, {}
    for spec in topology.QUEUES:
        dlq_url = sqs.create_queue(QueueName=f"{spec.local_name}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        url = sqs.create_queue(
            QueueName=spec.local_name,
            Attributes={
                "VisibilityTimeout": str(spec.visibility_timeout_seconds),
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(spec.max_receive_count)}
                ),
            },
        )["QueueUrl"]
        queue_urls[spec.role], dead_letter_urls[spec.role] = url, dlq_url

    # The landing bucket notifies the import queue, as the CDK wires it in the cloud.
    import_arn = sqs.get_queue_attributes(
        QueueUrl=queue_urls[topology.IMPORT_QUEUE.role], AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(
        Bucket=buckets[topology.LANDING_BUCKET.role],
        NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": import_arn, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    # The analytics catalog; the lake function registers one table per resource type as data arrives.
    catalog = topology.ANALYTICS_CATALOG
    client("glue").create_database(
        DatabaseInput={"Name": catalog.local_name, "Description": "fhirlake analytics lake (local)"}
    )

    return Provisioned(
        kms_key_id=key_id,
        table_name=table.local_name,
        table_stream_arn=description.get("LatestStreamArn"),
        buckets=buckets,
        queue_urls=queue_urls,
        dead_letter_urls=dead_letter_urls,
        glue_database=catalog.local_name,
    )

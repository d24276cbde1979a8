"""The stateful half of fhirlake: key, table, buckets, queues, analytics catalog.

Why two stacks: everything here holds data (and is retained by default), everything in
:class:`~infra.stacks.api_stack.ApiStack` is stateless and can be destroyed and redeployed at will
(e.g. to change the API or a function without any risk to the data). With ``removalPolicy=retain``
this stack also gets CloudFormation termination protection. The api stack reads names/ARNs from here
through CDK "weak" cross-stack references (``Fn::GetStackOutput``, flag
``@aws-cdk/core:defaultCrossStackReferences`` in cdk.json), so there are no export locks: the api stack
can start or stop using a resource of this stack in a single deployment.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, RemovalPolicy, Stack
from constructs import Construct
from fhirlake import topology

from infra.config import Config
from infra.constructs.analytics import AnalyticsCatalog
from infra.constructs.keys import DataKey
from infra.constructs.queues import Queues
from infra.constructs.storage import Storage


class DataStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: Config, **kwargs) -> None:
        super().__init__(
            scope,
            construct_id,
            description=(
                f"fhirlake {config.stage}: KMS key, DynamoDB table, S3 buckets, import queue, "
                "Glue database + Athena workgroup"
            ),
            termination_protection=config.retain,
            **kwargs,
        )
        removal = RemovalPolicy.RETAIN if config.retain else RemovalPolicy.DESTROY
        self.key = DataKey(
            self, "Keys", alias=f"alias/{config.stack_prefix}-{config.stage}-data", removal_policy=removal
        ).key
        self.storage = Storage(
            self,
            "Storage",
            key=self.key,
            removal_policy=removal,
            results_expiration_days=config.results_expiration_days,
            query_results_expiration_days=config.query_results_expiration_days,
            lake_noncurrent_version_days=config.lake_noncurrent_version_days,
        )
        self.queues = Queues(self, "Queues", key=self.key, removal_policy=removal)
        self.queues.notify_object_created(
            self.storage.buckets[topology.LANDING_BUCKET.role], topology.IMPORT_QUEUE.role
        )
        self.catalog = AnalyticsCatalog(
            self,
            "Analytics",
            database_name=config.analytics_database,
            workgroup_name=config.resource_name,
            lake_bucket=self.buckets[topology.LAKE_BUCKET.role],
            query_results_bucket=self.buckets[topology.QUERY_RESULTS_BUCKET.role],
            key=self.key,
            bytes_scanned_cutoff_per_query=config.athena_scan_limit_bytes,
            removal_policy=removal,
        )
        CfnOutput(
            self, "GlueDatabase", value=config.analytics_database, description="Glue database of the lake"
        )
        CfnOutput(
            self, "AthenaWorkGroup", value=config.resource_name, description="Athena workgroup (engine v3)"
        )

    @property
    def table(self):
        return self.storage.table

    @property
    def buckets(self):
        return self.storage.buckets

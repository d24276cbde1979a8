"""The analytics catalog: the Glue database of the lake and the Athena workgroup that queries it.

Tables are not declared here: the lake function creates one Glue table (and view) per resource type
and per ViewDefinition at run time, when the first version of that type arrives (see docs/architecture.md).
No Lake Formation: access is plain IAM (Glue catalog + S3 permissions), granted per function.

Nothing here bills at idle: a Glue database and an Athena workgroup are free; Athena bills per byte
scanned, capped per query by the workgroup's ``BytesScannedCutoffPerQuery``.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import ArnFormat, RemovalPolicy, Stack
from aws_cdk import aws_athena as athena
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

ATHENA_ENGINE_VERSION = "Athena engine version 3"  # Trino-based: the dialect fhirlake's SQL is written in
# Every query result lands under this prefix of the query-results bucket (lifecycle-expired there).
QUERY_RESULTS_PREFIX = "athena/"

# What a caller of the workgroup may do: run a query, poll it, read its result pages, cancel it.
# Nothing on other workgroups, no named queries, no workgroup management.
QUERY_ACTIONS = (
    "athena:StartQueryExecution",
    "athena:GetQueryExecution",
    "athena:GetQueryResults",
    "athena:StopQueryExecution",
)


class AnalyticsCatalog(Construct):
    """Glue database ``database_name`` + Athena workgroup ``workgroup_name`` (engine v3, enforced).

    The workgroup's configuration is enforced, so a client cannot redirect results to another
    location, drop their SSE-KMS encryption with the data key, or lift the bytes-scanned cutoff.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        database_name: str,
        workgroup_name: str,
        lake_bucket: s3.IBucket,
        query_results_bucket: s3.IBucket,
        key: kms.IKey,
        bytes_scanned_cutoff_per_query: int,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.database_name = database_name
        self.workgroup_name = workgroup_name
        self.database = glue.CfnDatabase(
            self,
            "Database",
            catalog_id=stack.account,
            database_input=glue.CfnDatabase.DatabaseInputProperty(
                name=database_name,
                description="fhirlake analytics lake: one table per FHIR resource type and ViewDefinition",
                location_uri=f"s3://{lake_bucket.bucket_name}/",
            ),
        )
        # The catalog describes the lake's files (its tables are rebuilt by the backfill); it follows the
        # data stack's removal policy like the lake bucket itself.
        self.database.apply_removal_policy(removal_policy)

        self.workgroup = athena.CfnWorkGroup(
            self,
            "WorkGroup",
            name=workgroup_name,
            description="fhirlake analytics: SQL over the lake (results encrypted with the data key)",
            state="ENABLED",
            # The workgroup holds settings and 45 days of query history, no data (results live in the
            # bucket): it is always deleted with the stack, together with any saved queries, so that a
            # re-created stack never collides with a retained workgroup of the same name.
            recursive_delete_option=True,
            work_group_configuration=athena.CfnWorkGroup.WorkGroupConfigurationProperty(
                engine_version=athena.CfnWorkGroup.EngineVersionProperty(
                    selected_engine_version=ATHENA_ENGINE_VERSION
                ),
                enforce_work_group_configuration=True,
                publish_cloud_watch_metrics_enabled=True,
                bytes_scanned_cutoff_per_query=bytes_scanned_cutoff_per_query,
                requester_pays_enabled=False,
                result_configuration=athena.CfnWorkGroup.ResultConfigurationProperty(
                    output_location=f"s3://{query_results_bucket.bucket_name}/{QUERY_RESULTS_PREFIX}",
                    encryption_configuration=athena.CfnWorkGroup.EncryptionConfigurationProperty(
                        encryption_option="SSE_KMS", kms_key=key.key_arn
                    ),
                    expected_bucket_owner=stack.account,
                ),
            ),
        )

    # -----------------------------------------------------------------------------------------------
    # Grants (called from the functions' stack: the ARNs are built from names, no cross-stack reference)
    # -----------------------------------------------------------------------------------------------
    def grant_catalog(self, grantee: iam.IGrantable, actions: Sequence[str]) -> None:
        """Glue ``actions`` on this database, its tables, and the account's catalog (Glue requires it)."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=list(actions), resources=self.catalog_arns(Stack.of(grantee)))
        )

    def grant_queries(self, grantee: iam.IGrantable) -> None:
        """Run and read queries in this workgroup (the S3, Glue and KMS access a query needs is separate)."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=list(QUERY_ACTIONS), resources=[self.workgroup_arn(Stack.of(grantee))]
            )
        )

    def catalog_arns(self, stack: Stack) -> list[str]:
        # Tables (and views) are created per resource type and per ViewDefinition at run time, so their
        # names are unknown here: "table/<database>/*" covers exactly this database's tables.
        return [
            stack.format_arn(service="glue", resource="catalog", arn_format=ArnFormat.NO_RESOURCE_NAME),
            stack.format_arn(
                service="glue",
                resource="database",
                resource_name=self.database_name,
                arn_format=ArnFormat.SLASH_RESOURCE_NAME,
            ),
            stack.format_arn(
                service="glue",
                resource="table",
                resource_name=f"{self.database_name}/*",
                arn_format=ArnFormat.SLASH_RESOURCE_NAME,
            ),
        ]

    def workgroup_arn(self, stack: Stack) -> str:
        return stack.format_arn(
            service="athena",
            resource="workgroup",
            resource_name=self.workgroup_name,
            arn_format=ArnFormat.SLASH_RESOURCE_NAME,
        )

"""The stateless half of fhirlake: functions, the REST API, alarms and dashboard.

It only references the :class:`~infra.stacks.data_stack.DataStack`'s resources, so it can be
destroyed and redeployed freely. Later compute (import, lake, notes functions) belongs here too:
add its FunctionSpec to ``fhirlake.topology.FUNCTIONS`` and its event source below.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, RemovalPolicy, Stack
from aws_cdk import aws_lambda as lambda_
from aws_cdk.aws_lambda_event_sources import SqsEventSource
from constructs import Construct
from fhirlake import topology

from infra import bundling
from infra.config import Config
from infra.constructs.api import FhirApi
from infra.constructs.functions import DataResources, Functions, FunctionSettings
from infra.constructs.operations import Operations
from infra.stacks.data_stack import DataStack

TENANT = "default"  # single-tenant deployments for now (FHIRLAKE_TENANT)


class ApiStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: Config,
        data: DataStack,
        code: lambda_.Code | None = None,
        **kwargs,
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            description=f"fhirlake {config.stage}: FHIR REST API (API Gateway + Lambda), alarms, dashboard",
            **kwargs,
        )
        removal = RemovalPolicy.RETAIN if config.retain else RemovalPolicy.DESTROY
        self.functions = Functions(
            self,
            "Functions",
            data=DataResources(
                key=data.key,
                table=data.table,
                buckets=data.buckets,
                queues=data.queues.queues,
            ),
            settings=FunctionSettings(
                tenant=TENANT,
                validation_level=config.validation_level,
                max_body_bytes=config.max_body_bytes,
                log_retention_days=config.log_retention_days,
                reserved_concurrency=config.reserved_concurrency,
                removal_policy=removal,
            ),
            code=code if code is not None else bundling.lambda_code(),
        )
        # The import function reads the import queue: one message (a file or a chunk, sized to fill
        # one invocation) per batch; failures reported per message (Powertools batch processing).
        self.functions.functions[topology.IMPORT_FUNCTION.role].add_event_source(
            SqsEventSource(
                data.queues.queues[topology.IMPORT_QUEUE.role],
                batch_size=1,
                report_batch_item_failures=True,
            )
        )
        self.api = FhirApi(
            self,
            "Api",
            function=self.functions.functions[topology.API_FUNCTION.role],
            key=data.key,
            api_name=f"{config.stack_prefix}-{config.stage}",
            stage_name=config.stage,
            throttle_rate=config.api_throttle_rate,
            throttle_burst=config.api_throttle_burst,
            log_retention_days=config.log_retention_days,
            removal_policy=removal,
        )
        self.operations = Operations(
            self,
            "Operations",
            dashboard_name=f"{config.stack_prefix}-{config.stage}",
            api=self.api.api,
            functions=self.functions.functions,
            dead_letter_queues=data.queues.dead_letter_queues,
            table=data.table,
            key=data.key,
            alarm_topic=config.alarm_topic,
            alarm_email=config.alarm_email,
        )
        CfnOutput(
            self,
            "FhirBaseUrl",
            value=self.api.api.url,
            description="FHIR base URL (SigV4, service execute-api)",
        )
        CfnOutput(
            self, "ApiFunctionName", value=self.functions.functions[topology.API_FUNCTION.role].function_name
        )
        CfnOutput(
            self,
            "ImportFunctionName",
            value=self.functions.functions[topology.IMPORT_FUNCTION.role].function_name,
        )
        if self.operations.topic is not None:
            CfnOutput(self, "AlarmTopicArn", value=self.operations.topic.topic_arn)

"""The stateless half of fhirlake: functions, their triggers, the REST API, alarms and dashboard.

It only references the :class:`~infra.stacks.data_stack.DataStack`'s resources, so it can be
destroyed and redeployed freely. Compute is declared in ``fhirlake.topology.FUNCTIONS``: each spec
becomes a function (:class:`Functions`), its trigger an API route, event source or schedule
(:class:`Triggers`, :class:`FhirApi`, or a deploy-time trigger), and its errors alarms (:class:`Operations`).
"""

from __future__ import annotations

from aws_cdk import CfnOutput, RemovalPolicy, Stack
from constructs import Construct
from fhirlake import topology

from infra import bundling
from infra.config import Config
from infra.constructs import pascal
from infra.constructs.api import FhirApi
from infra.constructs.functions import DataResources, Functions, FunctionSettings
from infra.constructs.operations import Operations
from infra.constructs.triggers import Triggers, http_routes, parse_trigger
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
        specs: tuple[topology.FunctionSpec, ...] | None = None,
        assets: bundling.LambdaAssets | None = None,
        **kwargs,
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            description=f"fhirlake {config.stage}: FHIR REST API (API Gateway + Lambda), analytics and lake "
            "functions, alarms, dashboard",
            **kwargs,
        )
        specs = topology.FUNCTIONS if specs is None else specs  # read at synth time, not import time
        removal = RemovalPolicy.RETAIN if config.retain else RemovalPolicy.DESTROY
        self.functions = Functions(
            self,
            "Functions",
            data=DataResources(
                key=data.key,
                table=data.table,
                buckets=data.buckets,
                queues=data.queues.queues,
                catalog=data.catalog,
            ),
            settings=FunctionSettings(
                tenant=TENANT,
                validation_level=config.validation_level,
                max_body_bytes=config.max_body_bytes,
                log_retention_days=config.log_retention_days,
                reserved_concurrency=config.reserved_concurrency,
                removal_policy=removal,
                name_prefix=config.resource_name,
                search_config=config.search_config,
                snap_start=config.snap_start,
                views_dir=config.views_dir,
            ),
            assets=assets if assets is not None else bundling.LambdaAssets(),
            specs=specs,
        )
        functions = self.functions.functions
        self.triggers = Triggers(
            self,
            "Triggers",
            specs=specs,
            functions=functions,
            table=data.table,
            queues=data.queues.queues,
            dead_letter_queues=data.queues.dead_letter_queues,
            key=data.key,
            removal_policy=removal,
            search_layout_digest=config.search_layout_digest(),
            # Deploy-time jobs run once the table and every function (role, policy, configuration) are
            # in place: the api and import already write entries for the new layout while it re-indexes.
            deployed_first=[data.table, *(function.node.scope for function in functions.values())],
        )
        default_role, routes = http_routes(specs)
        self.api = FhirApi(
            self,
            "Api",
            function=self.functions.entry_points[default_role],
            routes={path: self.functions.entry_points[role] for path, role in routes.items()},
            key=data.key,
            api_name=config.resource_name,
            stage_name=config.stage,
            throttle_rate=config.api_throttle_rate,
            throttle_burst=config.api_throttle_burst,
            log_retention_days=config.log_retention_days,
            removal_policy=removal,
        )
        self.operations = Operations(
            self,
            "Operations",
            dashboard_name=config.resource_name,
            api=self.api.api,
            functions=functions,
            dead_letter_queues={**data.queues.dead_letter_queues, **self.triggers.stream_failures},
            stream_consumers={
                spec.role: functions[spec.role] for spec in specs if parse_trigger(spec).kind == "stream"
            },
            athena_workgroup=data.catalog.workgroup_name,
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
        for role, function in functions.items():
            CfnOutput(self, f"{pascal(role)}FunctionName", value=function.function_name)
        if self.operations.topic is not None:
            CfnOutput(self, "AlarmTopicArn", value=self.operations.topic.topic_arn)

"""The FHIR REST API: API Gateway (REST, regional) in front of the api Lambda."""

from __future__ import annotations

import json
from collections.abc import Mapping

from aws_cdk import RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.config import LOG_RETENTION_DAYS
from infra.nag import suppress

# Access log record: who called what, when, with which outcome. No query string (FHIR search
# parameters carry names, birth dates, identifiers), no headers beyond the user agent, no bodies.
# The path is logged: it names the resource type and logical id, which FHIR treats as opaque
# technical ids that must not carry PHI (clients choosing ids via PUT are told so in docs/deploy.md).
ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "extendedRequestId": "$context.extendedRequestId",
    "requestTime": "$context.requestTime",
    "httpMethod": "$context.httpMethod",
    "path": "$context.path",
    "resourcePath": "$context.resourcePath",
    "protocol": "$context.protocol",
    "status": "$context.status",
    "responseLength": "$context.responseLength",
    "responseLatency": "$context.responseLatency",
    "integrationStatus": "$context.integration.status",
    "integrationLatency": "$context.integration.latency",
    "errorMessage": "$context.error.message",
    "sourceIp": "$context.identity.sourceIp",
    "userAgent": "$context.identity.userAgent",
    "accountId": "$context.identity.accountId",
    "caller": "$context.identity.caller",
    "userArn": "$context.identity.userArn",
    "xrayTraceId": "$context.xrayTraceId",
}

# Errors raised by API Gateway itself (before the Lambda) answered as FHIR OperationOutcomes.
_OUTCOME_CODES = {
    apigw.ResponseType.DEFAULT_4_XX: "processing",
    apigw.ResponseType.DEFAULT_5_XX: "exception",
    apigw.ResponseType.ACCESS_DENIED: "security",
    apigw.ResponseType.MISSING_AUTHENTICATION_TOKEN: "security",
    apigw.ResponseType.INVALID_SIGNATURE: "security",
    apigw.ResponseType.EXPIRED_TOKEN: "security",
    apigw.ResponseType.THROTTLED: "throttled",
    apigw.ResponseType.REQUEST_TOO_LARGE: "too-long",
    apigw.ResponseType.INTEGRATION_TIMEOUT: "timeout",
}
FHIR_JSON = "application/fhir+json"


def _outcome_template(code: str) -> str:
    return (
        '{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"' + code + '",'
        '"diagnostics":$context.error.messageString}]}'
    )


class FhirApi(Construct):
    """REST API, ``ANY /`` and ``ANY /{proxy+}`` -> Lambda proxy, AWS_IAM (SigV4) on every method.

    ``routes`` hands path prefixes to other functions: ``{"/_analytics": f}`` adds ``ANY /_analytics``
    and ``ANY /_analytics/{proxy+}`` proxied to ``f`` (API Gateway prefers the more specific resource
    over the root's greedy ``{proxy+}``); ``function`` serves everything else.

    Payloads: API Gateway rejects request bodies above 10 MB (413, answered as an OperationOutcome
    here); the Lambda enforces the smaller configurable limit (``FHIRLAKE_MAX_BODY_BYTES``, default
    5 MiB) itself, and Lambda's own 6 MB synchronous payload limit applies in between.
    ``binaryMediaTypes`` is ``*/*``: API Gateway decodes a base64 body (``isBase64Encoded``, the PNG
    charts of /_analytics) only when the client's first Accept type is a binary media type, and browsers
    put ``image/avif`` or ``text/html`` first. Request bodies then reach the functions base64-encoded,
    which ``fhirlake.api.apigw.request_from_event`` decodes; text responses pass through unchanged.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        function: lambda_.IFunction,
        routes: Mapping[str, lambda_.IFunction] | None = None,
        key: kms.IKey,
        api_name: str,
        stage_name: str,
        throttle_rate: float,
        throttle_burst: int,
        log_retention_days: int,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        retention = getattr(logs.RetentionDays, LOG_RETENTION_DAYS[log_retention_days])
        self.access_logs = logs.LogGroup(
            self, "AccessLogs", encryption_key=key, retention=retention, removal_policy=removal_policy
        )
        self.api = apigw.RestApi(
            self,
            "RestApi",
            # The API's CloudWatch metrics are keyed by this name: unique per deployment.
            rest_api_name=api_name,
            description="fhirlake FHIR R4 REST API",
            binary_media_types=["*/*"],
            endpoint_configuration=apigw.EndpointConfiguration(types=[apigw.EndpointType.REGIONAL]),
            default_method_options=apigw.MethodOptions(authorization_type=apigw.AuthorizationType.IAM),
            # Execution logging needs the account-level API Gateway CloudWatch role (one per account
            # and region, shared by every REST API there). Retained on delete so removing fhirlake never
            # breaks the logging of other APIs.
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=RemovalPolicy.RETAIN,
            deploy_options=apigw.StageOptions(
                stage_name=stage_name,
                tracing_enabled=True,
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
                access_log_format=apigw.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FIELDS)),
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,  # never log request/response bodies
                metrics_enabled=False,  # per-method detailed metrics bill as custom metrics
                throttling_rate_limit=throttle_rate,
                throttling_burst_limit=throttle_burst,
            ),
        )
        self._proxy(self.api.root, function)
        for path, routed in (routes or {}).items():
            self._proxy(self.api.root.resource_for_path(path.strip("/")), routed)
        for response_type, code in _OUTCOME_CODES.items():
            template = _outcome_template(code)
            self.api.add_gateway_response(
                f"Outcome{response_type.response_type}",
                type=response_type,
                response_headers={"Content-Type": f"'{FHIR_JSON}'"},
                templates={"application/json": template, FHIR_JSON: template},
            )

        # Execution logs (ERROR level) go to a group API Gateway would create unencrypted and without
        # retention; creating it first, with the key and retention, keeps it under our control.
        self.execution_logs = logs.LogGroup(
            self,
            "ExecutionLogs",
            log_group_name=f"API-Gateway-Execution-Logs_{self.api.rest_api_id}/{stage_name}",
            encryption_key=key,
            retention=retention,
            removal_policy=removal_policy,
        )
        self.api.deployment_stage.node.add_dependency(self.execution_logs)
        self._suppressions()

    @staticmethod
    def _proxy(resource: apigw.IResource, function: lambda_.IFunction) -> None:
        """``ANY <resource>`` and ``ANY <resource>/{proxy+}`` -> ``function`` (Lambda proxy integration)."""
        integration = apigw.LambdaIntegration(function, proxy=True, allow_test_invoke=False)
        resource.add_method("ANY", integration)
        resource.add_proxy(default_integration=integration, any_method=True)

    def _suppressions(self) -> None:
        suppress(
            self.api,
            ("AwsSolutions-APIG2", "Request bodies are FHIR resources, validated by the Lambda against "
             "FHIR R4 (structure, bindings, invariants); an API Gateway JSON-schema model cannot express "
             "FHIR and would reject valid resources."),
        )  # fmt: skip
        for method in self.api.methods:
            suppress(
                method,
                ("AwsSolutions-COG4", "Authorization is AWS_IAM (SigV4) on every method, the project's "
                 "default; Cognito/SMART on FHIR authorizers are a later, optional mode."),
            )  # fmt: skip
        suppress(
            self.api.deployment_stage,
            ("AwsSolutions-APIG3", "No WAF web ACL by default: it bills at idle (web ACL + rules) and every "
             "request already needs a valid SigV4 signature; deployers can associate one with the stage."),
            ("HIPAA.Security-APIGWCacheEnabledAndEncrypted", "Caching is off on purpose: responses are "
             "per-caller PHI that must reflect every write immediately, and a cache cluster bills at idle."),
            ("HIPAA.Security-APIGWSSLEnabled", "The only backend is a Lambda proxy integration invoked by "
             "API Gateway through the Lambda API with IAM; client certificates authenticate HTTP "
             "backends only."),
        )  # fmt: skip
        suppress(
            self.api.node.find_child("CloudWatchRole"),
            ("AwsSolutions-IAM4", "The account-level API Gateway CloudWatch role uses AWS's "
             "AmazonAPIGatewayPushToCloudWatchLogs: that role is shared by all REST APIs of the "
             "account/region, so it cannot be scoped to fhirlake's log groups without breaking others.",
             ["Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"]),
        )  # fmt: skip

"""Lambda entry point of the analytics endpoints under /_analytics (API Gateway REST proxy integration).

A thin adapter: event -> Request -> AnalyticsApi -> proxy result (PNG charts base64-encoded, as API
Gateway's binary media types expect). Logs an audit record per request (who, which endpoint, whose
chart, outcome) and never the SQL text, query parameters or results (PHI).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from fhirlake.analytics.api import AnalyticsApi, audit_details
from fhirlake.analytics.engine import engine_from_env
from fhirlake.api.apigw import caller, result_from_response, serve
from fhirlake.api.http import Request
from fhirlake.bootstrap import build_service
from fhirlake.config import Settings

from handlers.observability import powertools

logger, tracer, _metrics = powertools()

_settings = Settings.from_env()
# The FHIR service and the SQL engine are built on first use and reused across invocations.
_api = AnalyticsApi(lambda: build_service(_settings), engine_from_env)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request, response = serve(event, _settings.base_url, _api.handle, logger)
    _audit(event, request, response.status)
    return result_from_response(response)


def _audit(event: dict[str, Any], request: Request, status: int) -> None:
    logger.info(
        "audit",
        extra={
            "audit": {
                **caller(event),
                "method": request.method,
                **audit_details(_api, request),
                "status": status,
            }
        },
    )

"""Lambda entry point of the FHIR REST API (API Gateway REST proxy integration).

A thin adapter: event -> Request -> FhirApi -> proxy result. Logs an audit record per request
(who, which interaction, which resource, outcome) and never the body or query string (PHI).
"""

from __future__ import annotations

import random
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from fhirlake.api.apigw import caller, result_from_response, serve
from fhirlake.api.http import Request
from fhirlake.bootstrap import build_api, warm_up
from fhirlake.config import Settings

from handlers.observability import powertools

# No custom metrics here: API Gateway (4xx/5xx, latency) and Lambda (errors, throttles, init duration)
# already publish what the alarms need.
logger, tracer, _metrics = powertools()

_settings = Settings.from_env()
_api = build_api(_settings)  # at init: connections and validator tables are reused across invocations

# Lambda SnapStart (infra: context snapStart) snapshots the environment after this init and restores every
# new environment from it. The Lambda Python runtime ships snapshot_restore_py (it runs the hooks only
# when SnapStart is on); elsewhere (local runtime, tests) there is no snapshot and no hook.
# Nothing unique is made at init: resource ids (uuid4) and X-Ray ids come from os.urandom per request.
# The boto3 clients hold the role's credentials from Lambda's container-credentials endpoint (SnapStart
# functions get no key variables) as refreshable credentials that botocore renews once expired, and
# connect on their first call; warm_up makes no AWS call, so no open AWS connection is in the snapshot.
try:
    from snapshot_restore_py import register_after_restore, register_before_snapshot
except ImportError:
    pass
else:
    register_before_snapshot(warm_up, _api, _settings.base_url)
    # Environments restored from one snapshot would share the `random` module's state (botocore's retry
    # jitter draws from it): reseed it from os.urandom in each.
    register_after_restore(random.seed)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request, response = serve(event, _settings.base_url, _api.handle, logger)
    _audit(event, request, response.status)
    return result_from_response(response)


def _audit(event: dict[str, Any], request: Request, status: int) -> None:
    parts = request.path.strip("/").split("/")
    logger.info(
        "audit",
        extra={
            "audit": {
                **caller(event),
                "method": request.method,
                "resource_type": parts[0] if parts and parts[0] else None,
                "resource_id": parts[1] if len(parts) > 1 and not parts[1].startswith(("_", "$")) else None,
                "status": status,
            }
        },
    )

"""Lambda entry point of the search re-index job (``fhirlake.service.reindex``).

Invoked once after a deployment whose search configuration changed (or by hand: ``fhirlake reindex``).
Each invocation works until a minute before its timeout, with progress checkpointed in the table; if the
job is not finished it invokes its own function again, asynchronously, with the same event, and the next
invocation resumes from the checkpoint. Event (every field optional)::

    {"segments": 4}          parallel Scan segments (fixed for the life of one job)

Returns the job report (counts only: no resource content, no PHI).
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from fhirlake.aws import aws_client
from fhirlake.service.reindex import DEFAULT_SEGMENTS, run_reindex

from handlers.observability import powertools

logger, _tracer, _metrics = powertools()

SAFETY_MARGIN_S = 60  # left for the last Scan page and the checkpoint write before the Lambda timeout


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    segments = int(event.get("segments", DEFAULT_SEGMENTS))
    budget = context.get_remaining_time_in_millis() / 1000 - SAFETY_MARGIN_S
    report = run_reindex(segments=segments, deadline=time.monotonic() + budget)  # past: one step
    logger.info("reindex", extra=report.as_dict())
    if report.status == "in-progress":
        lambda_client = aws_client("lambda")
        try:
            lambda_client.invoke(
                FunctionName=context.invoked_function_arn,
                InvocationType="Event",
                Payload=orjson.dumps({"segments": segments}),
            )
        except lambda_client.exceptions.ResourceNotFoundException:
            # This version was replaced by a deployment (old versions are deleted): the new version's
            # trigger run resumes the job from the checkpoint.
            logger.info("reindex continues in the deployed version")
    return report.as_dict()

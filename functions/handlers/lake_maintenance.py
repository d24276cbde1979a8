"""Lambda entry point of lake upkeep (EventBridge schedule, ``rate(15 minutes)``).

Compacts small files of every lake table, one bounded step per table and run, stopping when the
invocation's remaining time runs short (the next run continues). A direct invocation can also ask for
``{"action": "erase", "patient_id": "..."}`` (GDPR erasure) or ``{"action": "backfill"}``; they run here
so that they never race a compaction (give this function a reserved concurrency of 1).

Logs carry table names and counts; never patient ids.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from fhirlake.lake.bootstrap import sandbox_lake
from fhirlake.lake.maintenance import table_versions

from handlers.observability import powertools

logger, tracer, metrics = powertools()


lake = sandbox_lake()  # this sandbox's clients and Glue cache, kept across invocations


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    current = lake()
    action = event.get("action", "compact")
    if action == "erase":
        report = current.maintenance.erase_patient(event["patient_id"])
    elif action == "backfill":
        settings = current.settings
        versions = table_versions(current.dynamodb, settings.table_name or "", current.blobs, settings.tenant)
        count = current.maintenance.backfill(versions, current.writer)
        logger.info("lake backfill", extra={"versions": count})
        metrics.add_metric(name="LakeVersionsBackfilled", unit=MetricUnit.Count, value=count)
        return {"versions": count}
    else:
        report = current.maintenance.compact(time_left=lambda: context.get_remaining_time_in_millis() / 1000)
    logger.info(f"lake {action}", extra=asdict(report))
    metrics.add_metric(name="LakeFilesCompacted", unit=MetricUnit.Count, value=sum(report.compacted.values()))
    return asdict(report)

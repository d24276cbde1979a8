"""Lambda entry point of the lake (DynamoDB stream of the resource table, NEW_AND_OLD_IMAGES).

A thin adapter over ``fhirlake.lake.stream.consume``: the new versions of the batch become one Parquet
file per table in the lake bucket, and the Glue tables and views are created on first sight. The event
source mapping filters INSERTs of version items (``topology.LAKE_STREAM_FILTER``); other records are
skipped here as well. Failures are reported as ``batchItemFailures`` with the sequence number of the
first record that could not be read (ReportBatchItemFailures): see ``fhirlake.lake.stream`` for why
the batch is not processed record by record.

Logs carry counts, table names and error types; never ids or resources (PHI).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from fhirlake.lake.bootstrap import sandbox_lake
from fhirlake.lake.stream import consume

from handlers.observability import powertools

logger, tracer, metrics = powertools()


lake = sandbox_lake()  # this sandbox's clients and Glue cache, kept across invocations


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    current = lake()
    outcome = consume(event.get("Records", []), current.writer, current.blobs, current.settings.tenant)
    summary = outcome.summary
    logger.info(
        "lake batch",
        extra={
            "versions": summary.versions,
            "skipped": outcome.skipped,
            "tables": sorted(summary.files),
            "bytes": summary.bytes_written,
        },
    )
    metrics.add_metric(name="LakeVersions", unit=MetricUnit.Count, value=summary.versions)
    metrics.add_metric(name="LakeBytes", unit=MetricUnit.Bytes, value=summary.bytes_written)
    if outcome.failed_sequence:
        logger.error(
            "lake record unreadable; checkpointing before it", extra={"error_type": outcome.error_type}
        )
        metrics.add_metric(name="LakeFailedRecords", unit=MetricUnit.Count, value=1)
    return outcome.response()

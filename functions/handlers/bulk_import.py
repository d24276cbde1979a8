"""Lambda entry point of the bulk import (SQS event source on the import queue).

A thin adapter: each SQS record (an S3 ObjectCreated notification of the landing bucket, or an import
chunk message) goes to ``fhirlake.ingest.service.ImportService.handle_message``. Powertools batch
processing reports the records that raised as ``batchItemFailures`` (the event source mapping has
ReportBatchItemFailures): only those return to the queue, and after ``maxReceiveCount`` attempts to its
dead-letter queue. Unreadable input does not raise: it fails its job with a reason.

Logs carry job ids, statuses and counts; never object keys, lines or resources (PHI).
"""

from __future__ import annotations

import os
import traceback
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from fhirlake.ingest.bootstrap import build_import_service
from fhirlake.ingest.service import ImportService

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "fhirlake"))
tracer = Tracer(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "fhirlake"))
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "fhirlake"))
processor = BatchProcessor(event_type=EventType.SQS)

_service: ImportService | None = None  # built on the first invocation, reused while the sandbox lives


def _log(message: str, **fields: Any) -> None:
    logger.info(message, extra=fields)


def service() -> ImportService:
    global _service
    if _service is None:
        _service = build_import_service(log=_log)
    return _service


@tracer.capture_method(capture_response=False)
def record_handler(record: SQSRecord) -> None:
    try:
        outcomes = service().handle_message(record.body)
    except Exception as exc:  # returned to the queue by the batch processor; log the type, not the text
        logger.error(
            "import message failed",
            extra={
                "message_id": record.message_id,
                "error_type": type(exc).__name__,
                "trace": traceback.format_tb(exc.__traceback__),
            },
        )
        raise
    for outcome in outcomes:
        logger.info(
            "import message", extra={"message_id": record.message_id, "outcome": outcome.split(":")[0]}
        )
    metrics.add_metric(name="ImportMessages", unit=MetricUnit.Count, value=1)


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )

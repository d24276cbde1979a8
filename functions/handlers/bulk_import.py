"""Lambda entry point of the bulk import (SQS event source on the import queue).

A thin adapter: each SQS record (an S3 ObjectCreated notification of the landing bucket, or an import
chunk message) goes to ``fhirlake.ingest.service.ImportService.handle_message``. Powertools batch
processing reports the records that raised as ``batchItemFailures`` (the event source mapping has
ReportBatchItemFailures): only those return to the queue, and after ``maxReceiveCount`` attempts to its
dead-letter queue. Unreadable input does not raise: it fails its job with a reason.

Each record gets the invocation's remaining time: a chunk stops before the timeout and continues in a new
invocation (``FHIRLAKE_IMPORT_TIME_MARGIN_SECONDS`` before the deadline, default 60).

``dead_letter_handler`` is the entry point of a second function on the import queue's dead-letter queue
(SQS event source, batch size 1..10, ReportBatchItemFailures, same environment and permissions as the import
function plus the DLQ): a message there failed ``maxReceiveCount`` times, so its lines are reported in
FAILURE and its job finishes (completed-with-errors, or failed before planning) with the reason.

Logs carry job ids, statuses and counts; never object keys, lines or resources (PHI).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from functools import partial
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from fhirlake.ingest.bootstrap import build_import_service
from fhirlake.ingest.service import ImportService

from handlers.observability import powertools

logger, tracer, metrics = powertools()
processor = BatchProcessor(event_type=EventType.SQS)
dead_letter_processor = BatchProcessor(event_type=EventType.SQS)

_service: ImportService | None = None  # built on the first invocation, reused while the sandbox lives


def _log(message: str, **fields: Any) -> None:
    logger.info(message, extra=fields)


def service() -> ImportService:
    global _service
    if _service is None:
        _service = build_import_service(log=_log)
    return _service


def _handle(record: SQSRecord, handle: Callable[[str], list[str]], kind: str) -> None:
    try:
        outcomes = handle(record.body)
    except Exception as exc:  # returned to the queue by the batch processor; log the type, not the text
        logger.error(
            f"{kind} failed",
            extra={
                "message_id": record.message_id,
                "error_type": type(exc).__name__,
                "trace": traceback.format_tb(exc.__traceback__),
            },
        )
        raise
    for outcome in outcomes:
        logger.info(kind, extra={"message_id": record.message_id, "outcome": outcome.split(":")[0]})


def _seconds_left(context: LambdaContext) -> float:
    return context.get_remaining_time_in_millis() / 1000


@tracer.capture_method(capture_response=False)
def record_handler(record: SQSRecord, lambda_context: LambdaContext | None = None) -> None:
    time_left = None if lambda_context is None else partial(_seconds_left, lambda_context)
    _handle(record, lambda body: service().handle_message(body, time_left), "import message")
    metrics.add_metric(name="ImportMessages", unit=MetricUnit.Count, value=1)


@tracer.capture_method(capture_response=False)
def dead_letter_record_handler(record: SQSRecord) -> None:
    _handle(record, lambda body: service().handle_dead_letter(body), "import dead letter")
    metrics.add_metric(name="ImportDeadLetters", unit=MetricUnit.Count, value=1)


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def dead_letter_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(
        event=event,
        record_handler=dead_letter_record_handler,
        processor=dead_letter_processor,
        context=context,
    )

"""Adapter between API Gateway REST API proxy events (payload v1.0) and the neutral Request/Response."""

from __future__ import annotations

import base64
import traceback
from collections.abc import Callable
from typing import Any, Protocol

from fhirlake.api.http import Request, Response, json_response
from fhirlake.fhir.outcome import FhirError


class ErrorLogger(Protocol):
    def error(self, msg: str, *, extra: dict[str, Any]) -> None: ...


def request_from_event(event: dict[str, Any], base_url: str | None = None) -> Request:
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items() if v is not None}
    for name, values in (event.get("multiValueHeaders") or {}).items():
        if values:
            headers[name.lower()] = ", ".join(values)
    query: list[tuple[str, str]] = []
    multi = event.get("multiValueQueryStringParameters")
    if multi:
        query = [(k, v) for k, values in multi.items() for v in (values or [])]
    elif event.get("queryStringParameters"):
        query = list(event["queryStringParameters"].items())
    proxy = (event.get("pathParameters") or {}).get("proxy")
    path = "/" + proxy if proxy is not None else (event.get("path") or "/")
    body = event.get("body") or ""
    raw = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()
    return Request(
        method=(event.get("httpMethod") or "GET").upper(),
        path=path,
        query=query,
        headers=headers,
        body=raw,
        base_url=base_url or _base_url(event, headers, path),
    )


def _base_url(event: dict[str, Any], headers: dict[str, str], path: str) -> str:
    """The FHIR base as the client sees it: scheme + host + stage or custom-domain base path."""
    host = headers.get("host", "localhost")
    scheme = headers.get("x-forwarded-proto", "https").split(",")[0].strip()
    context_path = (event.get("requestContext") or {}).get("path") or path
    prefix = context_path[: -len(path)] if path != "/" and context_path.endswith(path) else ""
    if path == "/" and context_path not in ("", "/"):
        prefix = context_path.rstrip("/")
    return f"{scheme}://{host}{prefix}".rstrip("/")


def result_from_response(response: Response) -> dict[str, Any]:
    """The proxy result; binary bodies (PNG charts) go base64-encoded, as API Gateway's binary media
    types expect."""
    content_type = response.headers.get("Content-Type", "")
    textual = content_type.startswith("text/") or any(t in content_type for t in ("json", "xml", "script"))
    if response.body and content_type and not textual:
        return {
            "statusCode": response.status,
            "headers": response.headers,
            "body": base64.b64encode(response.body).decode(),
            "isBase64Encoded": True,
        }
    return {
        "statusCode": response.status,
        "headers": response.headers,
        "body": response.body.decode("utf-8"),
        "isBase64Encoded": False,
    }


def request_id(event: dict[str, Any]) -> str:
    return (event.get("requestContext") or {}).get("requestId", "unknown")


def caller(event: dict[str, Any]) -> dict[str, Any]:
    """Who called, for audit records: the IAM principal API Gateway authenticated, and the source IP."""
    identity = (event.get("requestContext") or {}).get("identity") or {}
    return {
        "principal": identity.get("userArn") or identity.get("caller") or "anonymous",
        "source_ip": identity.get("sourceIp"),
    }


def internal_error(event: dict[str, Any], request: Request, exc: Exception, log: ErrorLogger) -> Response:
    """A bug: a 500 OperationOutcome quoting the request id; the log gets the error type and trace, never
    the message (it may quote PHI)."""
    log.error(
        "unhandled error",
        extra={"error_type": type(exc).__name__, "trace": traceback.format_tb(exc.__traceback__)},
    )
    outcome = FhirError.of(500, "exception", f"Internal error; quote request id {request_id(event)}")
    return json_response(request, 500, outcome.outcome())


def serve(
    event: dict[str, Any], base_url: str | None, handle: Callable[[Request], Response], log: ErrorLogger
) -> tuple[Request, Response]:
    """The request of ``event`` and ``handle``'s answer to it: a FhirError becomes its OperationOutcome,
    anything else a 500 (:func:`internal_error`)."""
    request = request_from_event(event, base_url)
    try:
        response = handle(request)
    except FhirError as error:
        response = json_response(request, error.status, error.outcome(), error.headers)
    except Exception as exc:  # a bug: answer 500 with an OperationOutcome, log no PHI
        response = internal_error(event, request, exc, log)
    return request, response

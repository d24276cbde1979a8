"""Adapter between API Gateway REST API proxy events (payload v1.0) and the neutral Request/Response."""

from __future__ import annotations

import base64
from typing import Any

from fhirlake.api.http import Request, Response


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
    return {
        "statusCode": response.status,
        "headers": response.headers,
        "body": response.body.decode("utf-8"),
        "isBase64Encoded": False,
    }

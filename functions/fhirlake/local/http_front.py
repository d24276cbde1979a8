"""HTTP on 127.0.0.1 -> API Gateway REST proxy events -> the Lambda handler serving the path.

Only the transport is emulated; the handlers, and everything behind them, are the deployed code. As
API Gateway does, a path goes to the function whose route prefix claims it (``FunctionSpec.routes``),
and everything else to the default function (the FHIR API).
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fhirlake.local.lambda_context import LocalLambdaContext

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]

# API Gateway rejects payloads over 10 MB before the Lambda sees them.
API_GATEWAY_PAYLOAD_LIMIT = 10 * 1024 * 1024


@dataclass(frozen=True)
class Route:
    """One Lambda function behind the front: ``prefix`` "" is the default (the ``/{proxy+}`` resource)."""

    prefix: str
    handler: LambdaHandler
    function_name: str
    timeout_seconds: int = 29

    def claims(self, path: str) -> bool:
        return not self.prefix or path == self.prefix or path.startswith(self.prefix + "/")

    @property
    def resource(self) -> str:
        return f"{self.prefix}/{{proxy+}}"


def build_event(
    method: str, raw_path: str, headers: dict[str, str], body: bytes, source_ip: str, route_prefix: str = ""
) -> dict[str, Any]:
    split = urlsplit(raw_path)
    path = split.path or "/"
    multi_query: dict[str, list[str]] = {}
    for key, value in parse_qsl(split.query, keep_blank_values=True):
        multi_query.setdefault(key, []).append(value)
    multi_headers: dict[str, list[str]] = {}
    for key, value in headers.items():
        multi_headers.setdefault(key, []).append(value)
    try:
        text, is_b64 = body.decode("utf-8"), False
    except UnicodeDecodeError:
        import base64

        text, is_b64 = base64.b64encode(body).decode(), True
    now = datetime.now(UTC)
    proxy = path[len(route_prefix) :].lstrip("/")
    resource = f"{route_prefix}/{{proxy+}}" if proxy else (route_prefix or "/")
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": {k: v[-1] for k, v in multi_headers.items()},
        "multiValueHeaders": multi_headers,
        "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": {"proxy": proxy} if proxy else None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": method,
            "path": path,
            "stage": "local",
            "requestId": str(uuid.uuid4()),
            "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "requestTimeEpoch": int(now.timestamp() * 1000),
            "accountId": "000000000000",
            "apiId": "local",
            "protocol": "HTTP/1.1",
            "identity": {
                "sourceIp": source_ip,
                "userArn": "arn:aws:iam::000000000000:user/local",
                "caller": "local",
                "userAgent": headers.get("User-Agent"),
            },
        },
        "body": text if body else None,
        "isBase64Encoded": is_b64,
    }


class _Handler(BaseHTTPRequestHandler):
    server: _FrontServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > API_GATEWAY_PAYLOAD_LIMIT:
            self.send_response(413)
            self.send_header("Content-Type", "application/json")
            payload = b'{"message":"Request Too Long"}'
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(payload)
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        headers = {k: v for k, v in self.headers.items()}
        headers.setdefault("X-Forwarded-Proto", "http")  # API Gateway sets https
        route = self.server.route_for(urlsplit(self.path).path or "/")
        event = build_event(self.command, self.path, headers, body, self.client_address[0], route.prefix)
        context = LocalLambdaContext(function_name=route.function_name, timeout_seconds=route.timeout_seconds)
        result = route.handler(event, context)
        payload = result.get("body") or ""
        if result.get("isBase64Encoded"):
            import base64

            data = base64.b64decode(payload)
        else:
            data = payload.encode()
        self.send_response(result["statusCode"])
        for name, value in (result.get("headers") or {}).items():
            self.send_header(name, value)
        for name, values in (result.get("multiValueHeaders") or {}).items():
            for value in values:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

    def log_message(self, format: str, *args: Any) -> None:
        # The handler writes the audit log; the access line carries no query string (PHI).
        if self.server.access_log:
            status = args[1] if len(args) > 1 else ""
            path = urlsplit(self.path).path
            print(f"{time.strftime('%H:%M:%S')} {self.command} {path} {status}", flush=True)


class _FrontServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], routes: Sequence[Route], access_log: bool) -> None:
        super().__init__(address, _Handler)
        # Longest prefix first, so the default route ("") comes last.
        self.routes = sorted(routes, key=lambda route: len(route.prefix), reverse=True)
        self.access_log = access_log

    def route_for(self, path: str) -> Route:
        return next(route for route in self.routes if route.claims(path))

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-request is routine; anything else is worth a traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class HttpFront:
    def __init__(
        self,
        routes: LambdaHandler | Sequence[Route],
        host: str = "127.0.0.1",
        port: int = 8080,
        access_log: bool = False,
    ) -> None:
        if callable(routes):  # one function serves every path
            routes = [Route("", routes, "fhirlake-api")]
        if not any(route.prefix == "" for route in routes):
            raise ValueError("one route must be the default (prefix '')")
        self._server = _FrontServer((host, port), routes, access_log)
        self._thread = threading.Thread(target=self._server.serve_forever, name="fhirlake-http", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

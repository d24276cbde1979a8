"""moto in server mode on loopback, with DynamoDB's atomicity.

moto serves requests on many threads without locking its DynamoDB backend, so two conditional writes
(or transactions) racing on one item can both pass their condition — something DynamoDB never allows.
DynamoDB requests are therefore applied one at a time; everything else (S3, SQS long polls...) stays
concurrent.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

_DYNAMODB_TARGETS = ("DynamoDB_", "DynamoDBStreams_")


class _SerializedDynamoDB:
    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith(_DYNAMODB_TARGETS):
            return self._app(environ, start_response)
        with self._lock:
            return list(self._app(environ, start_response))  # the body is produced inside the lock


class MotoServer:
    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request access log
        # moto writes headers and body separately; with Nagle on, every response can wait for the
        # client's delayed ACK (~40 ms).
        WSGIRequestHandler.disable_nagle_algorithm = True
        app = _SerializedDynamoDB(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(
            self._host, self._port, app, threaded=True, request_handler=MotoRequestHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)

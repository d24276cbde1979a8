"""moto in server mode on loopback, with DynamoDB's atomicity.

moto serves requests on many threads without locking its DynamoDB backend, so two conditional writes
(or transactions) racing on one item can both pass their condition — something DynamoDB never allows.
DynamoDB requests are therefore applied one at a time; everything else (S3, SQS long polls...) stays
concurrent.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

_DYNAMODB_TARGETS = ("DynamoDB_", "DynamoDBStreams_")


class _NoBackup(dict):
    """``backend.tables`` as moto's ``transact_write_items`` sees it when no rollback can be needed: its
    backup step (``if name in self.tables: deepcopy(table)``) finds nothing; lookups work as usual."""

    def __contains__(self, key: object) -> bool:
        return False


def _transact_write_items(backend: Any, transact_items: list[dict[str, Any]]) -> None:
    """moto deep-copies every table a transaction touches before applying it (to roll back): a cost that
    grows with the table (seconds per write once the search index holds a few thousand entries). The
    transaction's conditions are checked here first, on distinct items and with nothing written; when
    they all hold, moto applies the writes without the copy. Anything else (a failing condition, a
    malformed request) takes moto's own path unchanged."""
    from moto.dynamodb.comparisons import get_filter_expression

    try:
        seen = set()
        for entry in transact_items:
            ((op_type, op),) = entry.items()
            table = backend.get_table(op["TableName"])
            if op_type == "Put":
                key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
                if table.range_key_attr is not None:
                    key[table.range_key_attr] = op["Item"][table.range_key_attr]
            elif op_type in ("Delete", "Update", "ConditionCheck"):
                key = op["Key"]
            else:
                raise ValueError(op_type)
            unique = (op["TableName"], str(sorted(key.items())))
            if unique in seen:
                raise ValueError("same item twice")
            seen.add(unique)
            if op.get("ConditionExpression") is not None:
                condition = get_filter_expression(
                    op["ConditionExpression"],
                    op.get("ExpressionAttributeNames"),
                    op.get("ExpressionAttributeValues"),
                )
                if not condition.expr(backend.get_item(op["TableName"], key)):
                    raise ValueError("condition")
    except Exception:
        return _ORIGINAL_TRANSACT(backend, transact_items)
    tables = backend.tables
    backend.tables = _NoBackup(tables)
    try:
        _ORIGINAL_TRANSACT(backend, transact_items)
    finally:
        tables.update(backend.tables)
        backend.tables = tables


_ORIGINAL_TRANSACT: Callable[..., None] = None  # type: ignore[assignment]


def patch_transactions() -> None:
    global _ORIGINAL_TRANSACT
    from moto.dynamodb.models import DynamoDBBackend

    if _ORIGINAL_TRANSACT is None:
        _ORIGINAL_TRANSACT = DynamoDBBackend.transact_write_items
        DynamoDBBackend.transact_write_items = _transact_write_items


class _SerializedDynamoDB:
    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith(_DYNAMODB_TARGETS):
            return self._app(environ, start_response)
        with self._lock:
            return list(self._app(environ, start_response))  # the body is produced inside the lock


_PARTITION_QUERY_LOCK = threading.Lock()


def _index_partition_queries() -> None:
    """Let moto answer a base-table Query from the one partition it names.

    moto compares every item of the table with the partition key on each Query (O(table size)); the
    local data store would slow down as it fills, which DynamoDB does not. moto keeps items by
    partition (``Table.items[hash][range]``), so the query is handed just that partition. Safe because
    DynamoDB requests are applied one at a time here.
    """
    from moto.dynamodb.models.table import Table

    if getattr(Table.query, "_fhirlake_partitioned", False):
        return
    original = Table.query

    def query(self: Table, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = kwargs.get("index_name", args[6] if len(args) > 6 else None)
        if index_name is not None or hash_key is None or not self.has_range_key:
            return original(self, hash_key, *args, **kwargs)
        partition = list((self.items.get(hash_key) or {}).values())
        # The override lives on the shared table object: in-process moto (tests) may run the parallel
        # shard queries of one search at once, so one query at a time holds it.
        with _PARTITION_QUERY_LOCK:
            self.all_items = lambda: partition  # type: ignore[method-assign]
            try:
                return original(self, hash_key, *args, **kwargs)
            finally:
                del self.all_items

    query._fhirlake_partitioned = True  # type: ignore[attr-defined]
    Table.query = query  # type: ignore[method-assign]


def serve(host: str, port: int) -> None:
    """moto's server app with the fixes above, until the process ends (the body of the moto process)."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request access log
    # moto writes headers and body separately; with Nagle on, every response can wait for the
    # client's delayed ACK (~40 ms).
    WSGIRequestHandler.disable_nagle_algorithm = True
    _index_partition_queries()
    patch_transactions()
    app = _SerializedDynamoDB(DomainDispatcherApplication(create_backend_app))
    server: BaseWSGIServer = make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler)
    parent = os.getppid()

    def orphaned() -> None:  # the runtime that started this process is gone (even killed): stop too
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=orphaned, name="orphan-watch", daemon=True).start()
    server.serve_forever()


class MotoServer:
    """moto in a process of its own on ``host:port``.

    moto keeps its data in module globals, and an in-process ``mock_aws`` (the unit tests' moto) resets
    them when it starts: a server in the same process would lose the local store's data. A separate
    process keeps it apart, as AWS is from the functions.
    """

    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        with tempfile.TemporaryFile() as log:  # the child keeps its own handle
            self._process = subprocess.Popen(
                [sys.executable, "-m", "fhirlake.local.moto_server", self._host, str(self._port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    log.seek(0)
                    output = log.read().decode(errors="replace")[-2000:]
                    raise RuntimeError(f"moto server did not start: {output}")
                try:
                    with socket.create_connection((self._host, self._port), timeout=0.5):
                        return
                except OSError:
                    time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"moto server did not listen on {self._host}:{self._port} within {timeout:.0f}s")

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=5)
        self._process = None


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))

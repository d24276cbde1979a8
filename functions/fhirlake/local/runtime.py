"""The embedded default: moto on loopback + the real Lambda handlers, wired as in the cloud.

    with LocalRuntime(port=8080) as runtime:
        print(runtime.api_url)

Data lives in the moto process memory: it is gone when the runtime stops.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import socket
import warnings
from collections.abc import Callable
from typing import Any

import boto3

from fhirlake import topology
from fhirlake.local.dispatcher import ScheduledInvoker, SqsPoller, StreamPoller
from fhirlake.local.http_front import HttpFront, Route
from fhirlake.local.lambda_context import LocalLambdaContext
from fhirlake.local.moto_server import MotoServer
from fhirlake.local.provision import Provisioned, provision
from fhirlake.local.state import LOCAL_CREDENTIALS, LOCAL_REGION


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def load_handler(dotted: str) -> Callable[[dict[str, Any], Any], Any]:
    """A fresh instance of the handler's module, as each Lambda function gets a sandbox of its own: its
    module-level state (clients, caches built on first use) is never shared with another function or
    with code that imported the module itself (tests)."""
    module_name, _, function_name = dotted.rpartition(".")
    spec = importlib.util.find_spec(module_name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"no handler module {module_name!r}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, function_name)


class LocalRuntime:
    def __init__(
        self,
        port: int = 8080,
        moto_port: int | None = None,
        host: str = "127.0.0.1",
        settings: dict[str, str] | None = None,
        access_log: bool = False,
    ) -> None:
        self._host = host
        self._port = port
        self._moto_port = moto_port or free_port()
        self._settings = settings or {}
        self._access_log = access_log
        self._moto: MotoServer | None = None
        self._front: HttpFront | None = None
        self._pollers: list[SqsPoller | StreamPoller | ScheduledInvoker] = []
        self.schedules: dict[str, ScheduledInvoker] = {}  # role -> invoker (tests run them on demand)
        self.resources: Provisioned | None = None

    @property
    def moto_url(self) -> str:
        return f"http://{self._host}:{self._moto_port}"

    @property
    def api_url(self) -> str:
        assert self._front is not None, "runtime not started"
        return self._front.url

    def session(self) -> boto3.Session:
        return boto3.Session(
            region_name=LOCAL_REGION, aws_access_key_id="local", aws_secret_access_key="local"
        )

    def client(self, service: str) -> Any:
        return self.session().client(service, endpoint_url=self.moto_url)

    def start(self) -> LocalRuntime:
        self._moto = MotoServer(self._host, self._moto_port)
        self._moto.start()
        self.resources = provision(self.session(), self.moto_url)
        # The handlers read exactly the variables the CDK sets on the Lambda functions; the SDK's
        # standard AWS_ENDPOINT_URL sends their calls to moto.
        os.environ.update(LOCAL_CREDENTIALS)
        os.environ.update(
            {
                "AWS_DEFAULT_REGION": LOCAL_REGION,
                "AWS_REGION": LOCAL_REGION,
                "AWS_ENDPOINT_URL": self.moto_url,
                "POWERTOOLS_SERVICE_NAME": "fhirlake",
                "POWERTOOLS_METRICS_NAMESPACE": "fhirlake",
                "POWERTOOLS_METRICS_DISABLED": "true",
                "POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "WARNING"),
                **self.resources.environment(),
                **self._settings,
            }
        )
        # Metrics are disabled locally (no CloudWatch); Powertools warns on every empty flush.
        warnings.filterwarnings("ignore", message="No application metrics to publish")
        self._start_functions()
        return self

    def _start_functions(self) -> None:
        assert self.resources is not None
        routes: list[Route] = []
        after_deploy: list[tuple[Callable[[dict[str, Any], Any], Any], topology.FunctionSpec]] = []
        for function in topology.FUNCTIONS:
            handler = load_handler(function.handler)
            name = f"fhirlake-{function.role}"
            kind, _, target = function.trigger.partition(":")
            if kind == "http":
                prefixes = function.routes or ("",)  # no routes: the default for every other path
                routes += [Route(prefix, handler, name, function.timeout_seconds) for prefix in prefixes]
            elif kind == "schedule":
                self.schedules[function.role] = ScheduledInvoker(handler, name, target, LOCAL_REGION)
                self._pollers.append(self.schedules[function.role])
            elif kind in ("queue", "dead-letter"):
                urls = self.resources.queue_urls if kind == "queue" else self.resources.dead_letter_urls
                sqs = self.client("sqs")
                arn = sqs.get_queue_attributes(QueueUrl=urls[target], AttributeNames=["QueueArn"])[
                    "Attributes"
                ]["QueueArn"]
                self._pollers.append(SqsPoller(sqs, urls[target], arn, handler, name, region=LOCAL_REGION))
            elif kind == "stream":
                assert self.resources.table_stream_arn, "the resource table has a stream (topology)"
                self._pollers.append(
                    StreamPoller(
                        self.client("dynamodbstreams"),
                        self.resources.table_stream_arn,
                        handler,
                        name,
                        batch_size=topology.STREAM_BATCH_SIZE,  # as the event source mapping's
                        region=LOCAL_REGION,
                        event_filter=function.stream_filter,
                    )
                )
            elif kind == "deploy":
                after_deploy.append((handler, function))
            else:
                raise ValueError(f"function {function.role!r}: unknown trigger {function.trigger!r}")
        # As the CDK triggers do after a deployment (a fresh local table makes them quick).
        for handler, function in after_deploy:
            context = LocalLambdaContext(
                function_name=f"fhirlake-{function.role}", timeout_seconds=function.timeout_seconds
            )
            handler({}, context)
        self._front = HttpFront(routes, self._host, self._port, self._access_log)
        self._front.start()
        for poller in self._pollers:
            poller.start()

    def stop(self) -> None:
        for poller in self._pollers:
            poller.stop()
        if self._front:
            self._front.stop()
        if self._moto:
            self._moto.stop()

    def __enter__(self) -> LocalRuntime:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

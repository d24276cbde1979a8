"""The api handler's Lambda SnapStart hooks: registered only where the runtime ships snapshot_restore_py."""

from __future__ import annotations

import random
import sys
import threading
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from botocore.client import BaseClient
from fhirlake.api.app import FhirApi
from fhirlake.bootstrap import warm_up
from fhirlake.fhir.types import resource_types

from .test_handler import api_module, invoke

__all__ = ["api_module"]  # the cold-start fixture, loaded after the fake runtime module below


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """A stand-in for the Lambda runtime's snapshot_restore_py that records what registers."""
    hooks = SimpleNamespace(before_snapshot=[], after_restore=[])
    fake = ModuleType("snapshot_restore_py")
    fake.register_before_snapshot = lambda func, *args: hooks.before_snapshot.append((func, args))
    fake.register_after_restore = lambda func, *args: hooks.after_restore.append((func, args))
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", fake)
    return hooks


@pytest.fixture
def snapstart_handler(registered: SimpleNamespace, request: pytest.FixtureRequest) -> ModuleType:
    """A cold start of the handler module where the runtime module exists (as on Lambda)."""
    return request.getfixturevalue("api_module")


def test_without_the_runtime_module_the_handler_loads_and_serves(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", None)  # import fails, as outside Lambda
    module = request.getfixturevalue("api_module")
    assert not hasattr(module, "register_before_snapshot")  # no hooks, no warm-up: init as before
    assert invoke(module.handler, "metadata")["statusCode"] == 200
    assert invoke(module.handler, "create")["statusCode"] == 201


def test_on_lambda_the_warm_up_runs_before_the_snapshot_and_random_is_reseeded_after(
    snapstart_handler: ModuleType, registered: SimpleNamespace
) -> None:
    assert registered.before_snapshot == [(warm_up, (snapstart_handler._api, None))]
    assert registered.after_restore == [(random.seed, ())]


def test_warm_up_answers_metadata_and_validates_every_type_without_calling_aws(
    snapstart_handler: ModuleType, registered: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    aws_calls: list[str] = []
    statuses: list[tuple[str, int]] = []
    handle = FhirApi.handle

    def spy(api: FhirApi, request: Any) -> Any:
        response = handle(api, request)
        statuses.append((request.path, response.status))
        return response

    ((hook, args),) = registered.before_snapshot
    with monkeypatch.context() as patch:
        caller = threading.get_ident()  # not the calls of a local runtime's pollers in this process

        def record(_client: Any, name: str, _params: Any) -> None:
            if threading.get_ident() == caller:
                aws_calls.append(name)

        patch.setattr(BaseClient, "_make_api_call", record)
        patch.setattr(FhirApi, "handle", spy)
        hook(*args)  # what Lambda does when it publishes a version
    assert aws_calls == []  # no AWS connection or data of the publishing moment in the snapshot
    assert statuses[0] == ("/metadata", 200)
    validated = {path.split("/")[1] for path, status in statuses[1:] if status == 200}
    assert validated == set(resource_types()) and len(statuses) == 1 + len(validated)
    # a restored environment then answers as a cold one would
    assert invoke(snapstart_handler.handler, "create")["statusCode"] == 201


def test_environments_restored_from_one_snapshot_draw_different_random_numbers(
    snapstart_handler: ModuleType, registered: SimpleNamespace
) -> None:
    ((reseed, args),) = registered.after_restore
    snapshot = random.getstate()
    draws = []
    for _environment in range(2):
        random.setstate(snapshot)  # each environment resumes with the snapshot's generator state
        reseed(*args)
        draws.append(random.random())
    assert draws[0] != draws[1]

"""Shared fixtures: the externally authored data in ../shared/data and the local runtime."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from fhirlake.local.moto_server import patch_transactions
from fhirlake.local.provision import Provisioned, provision
from moto import mock_aws

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FHIRLAKE_SHARED_DATA", REPO.parent / "shared" / "data"))

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """Under ``pytest -n N``: each test module runs on one worker, so its module fixtures (a Synthea lake,
    a loaded store) are built once rather than on every worker that gets one of its tests; the infra
    tests all run on one worker (one jsii runtime, each stack synthesized once).

    ``--dist loadgroup`` with ``xdist_group`` marks no longer groups anything: pytest-xdist 3.8 marks a
    group by rewriting ``item._nodeid``, which pytest 9 no longer reads."""
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return "tests/infra" if module.startswith("tests/infra/") else module

    return ModuleScheduling(config, log)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared test data not found at {SHARED_DATA} (set FHIRLAKE_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def runtime() -> Iterator[object]:
    """One embedded data store per test worker, on free loopback ports."""
    from fhirlake.local.runtime import LocalRuntime

    with LocalRuntime(port=0) as local:
        yield local


@pytest.fixture(scope="session")
def api_url(runtime) -> str:
    return runtime.api_url


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Provisioned]:
    # The HTTP tests' runtime points the SDK at a moto server; unit tests use moto in-process.
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    # moto deep-copies every table a transaction touches (to roll back): seconds per write once a table
    # holds a few thousand index entries. The local runtime's fix (conditions checked first) applies here too.
    patch_transactions()
    with mock_aws():
        yield provision(boto3.Session(region_name="us-east-1"), None)

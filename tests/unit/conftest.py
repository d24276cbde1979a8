"""Unit-test fixtures: the core on moto in-process (no sockets), provisioned from the topology."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from fhirlake.config import Settings
from fhirlake.local.provision import Provisioned, provision
from moto import mock_aws


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Provisioned]:
    # The HTTP tests' runtime points the SDK at a moto server; unit tests use moto in-process.
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        yield provision(boto3.Session(region_name="us-east-1"), None)


@pytest.fixture
def settings(aws: Provisioned) -> Settings:
    return Settings.from_env({**aws.environment()})

"""Unit-test fixtures: the core on moto in-process (no sockets), provisioned from the topology."""

from __future__ import annotations

import pytest
from fhirlake.config import Settings
from fhirlake.local.provision import Provisioned


@pytest.fixture
def settings(aws: Provisioned) -> Settings:
    return Settings.from_env({**aws.environment()})

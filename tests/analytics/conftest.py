"""The fixture lake (moto in-process) shared by the SQL engine, query, handler and population-trend tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from fhirlake import topology
from fhirlake.analytics.duckdb_engine import DuckDbEngine
from fhirlake.local.provision import Provisioned, provision
from moto import mock_aws

from tests.analytics.lake_fixture import DATABASE, FixtureLake, build_lake


@dataclass
class Lake:
    data: FixtureLake
    session: boto3.Session
    resources: Provisioned  # the whole topology (table, buckets), as the local runtime provisions it

    def engine(self) -> DuckDbEngine:
        return DuckDbEngine.from_session(self.session, DATABASE)


@pytest.fixture(scope="module")
def lake(shared_data: Path) -> Iterator[Lake]:
    """Built once per test module: a few hundred Synthea resources in Parquet + Glue tables and views."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("AWS_ENDPOINT_URL", raising=False)
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            patch.setenv(name, value)
        with mock_aws():
            session = boto3.Session(region_name="us-east-1")
            resources = provision(session, None)
            for name, value in resources.environment().items():
                patch.setenv(name, value)
            patch.setenv(topology.ANALYTICS_CATALOG.env_var, DATABASE)
            patch.setenv(topology.ENV_SQL_ENGINE, "duckdb")
            yield Lake(
                build_lake(session.client("s3"), session.client("glue"), shared_data), session, resources
            )


@pytest.fixture(scope="module")
def duckdb_engine(lake: Lake) -> DuckDbEngine:
    return lake.engine()

"""Builds the lake's pieces from the environment (the CDK and the local runtime set the same variables)."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import boto3

from fhirlake import topology
from fhirlake.aws import aws_client
from fhirlake.lake.maintenance import LakeMaintenance
from fhirlake.lake.storage import GlueCatalog, LakeFiles
from fhirlake.lake.viewdefs import CompiledView, deployed_views
from fhirlake.lake.writer import LakeWriter
from fhirlake.persistence.blobs import S3BlobStore


@dataclass(frozen=True)
class LakeSettings:
    lake_bucket: str
    glue_database: str
    blob_bucket: str | None = None  # bodies too large for an item (stream and backfill)
    table_name: str | None = None  # the resource table (backfill)
    tenant: str = "default"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LakeSettings:
        env = os.environ if env is None else env
        return cls(
            lake_bucket=env[topology.LAKE_BUCKET.env_var],
            glue_database=env[topology.ANALYTICS_CATALOG.env_var],
            blob_bucket=env.get(topology.BLOB_BUCKET.env_var),
            table_name=env.get(topology.RESOURCE_TABLE.env_var),
            tenant=env.get(topology.ENV_TENANT, "default"),
        )

    @classmethod
    def local(cls) -> LakeSettings:
        """The names the local runtime provisions (``fhirlake.local.provision``)."""
        return cls(
            lake_bucket=topology.LAKE_BUCKET.local_name,
            glue_database=topology.ANALYTICS_CATALOG.local_name,
            blob_bucket=topology.BLOB_BUCKET.local_name,
            table_name=topology.RESOURCE_TABLE.local_name,
        )


@dataclass(frozen=True)
class Lake:
    settings: LakeSettings
    files: LakeFiles
    catalog: GlueCatalog
    writer: LakeWriter
    maintenance: LakeMaintenance
    blobs: S3BlobStore
    dynamodb: object


def build_lake(
    settings: LakeSettings,
    session: boto3.Session | None = None,
    views: Sequence[CompiledView] | None = None,
) -> Lake:
    """``views``: the ViewDefinitions to materialize; by default the shipped ones plus FHIRLAKE_VIEWS_DIR."""
    s3 = aws_client("s3", session)
    files = LakeFiles(s3, settings.lake_bucket)
    catalog = GlueCatalog(aws_client("glue", session), settings.glue_database)
    return Lake(
        settings=settings,
        files=files,
        catalog=catalog,
        writer=LakeWriter(files, catalog, deployed_views() if views is None else views),
        maintenance=LakeMaintenance(files),
        blobs=S3BlobStore(s3, settings.blob_bucket or ""),
        dynamodb=aws_client("dynamodb", session),
    )


def sandbox_lake() -> Callable[[], Lake]:
    """The lake accessor of one Lambda sandbox (one handler module instance): the lake of this
    deployment's settings, built on first use and kept across invocations."""
    return functools.cache(lambda: build_lake(LakeSettings.from_env()))

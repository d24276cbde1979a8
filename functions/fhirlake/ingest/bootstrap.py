"""Composition root of the import: the ImportService from the environment the CDK (or local runtime) sets."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import boto3

from fhirlake.api.app import FhirApi
from fhirlake.aws import aws_client
from fhirlake.bootstrap import build_store
from fhirlake.config import Settings
from fhirlake.ingest.jobs import JobStore
from fhirlake.ingest.service import Core, ImportService, ImportSettings
from fhirlake.persistence.dynamodb_search import DynamoSearch
from fhirlake.search.extract import index_values
from fhirlake.service.crud import ResourceService
from fhirlake.validation import get_validator


def core_factory(settings: Settings, session: boto3.Session | None = None) -> Callable[[str], Core]:
    store = build_store(settings, session)

    @cache
    def core(level: str) -> Core:
        validator = get_validator(level)
        service = ResourceService(store, validator, searcher=DynamoSearch(store, index_values))
        api = FhirApi(service, validator, settings.max_body_bytes)
        return Core(service=service, store=store, validator=validator, handle=api.handle)

    return core


def build_import_service(
    env: dict[str, str] | None = None,
    session: boto3.Session | None = None,
    log: Callable[..., None] | None = None,
) -> ImportService:
    settings = ImportSettings.from_env(env)
    store_client: Any = aws_client("dynamodb", session)
    return ImportService(
        settings,
        s3=aws_client("s3", session),
        sqs=aws_client("sqs", session),
        events=aws_client("events", session),
        jobs=JobStore(store_client, settings.table_name, settings.tenant),
        core=core_factory(settings, session),
        log=log,
    )

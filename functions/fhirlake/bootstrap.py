"""Composition root: builds the core from Settings and AWS clients.

Endpoints come from the standard AWS SDK configuration (``AWS_ENDPOINT_URL`` and friends), which
is how the local runtime points the very same code at moto on 127.0.0.1.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from fhirlake.api.app import FhirApi
from fhirlake.config import Settings
from fhirlake.persistence.blobs import S3BlobStore
from fhirlake.persistence.dynamodb import DynamoResourceStore
from fhirlake.persistence.dynamodb_search import DynamoSearch
from fhirlake.search.extract import index_values
from fhirlake.service.crud import ResourceService
from fhirlake.validation import get_validator

_CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 4},
    connect_timeout=3,
    read_timeout=20,
    max_pool_connections=32,
)


def aws_client(service: str, session: boto3.Session | None = None) -> Any:
    return (session or boto3.Session()).client(service, config=_CLIENT_CONFIG)


def build_store(settings: Settings, session: boto3.Session | None = None) -> DynamoResourceStore:
    blobs = S3BlobStore(aws_client("s3", session), settings.blob_bucket)
    return DynamoResourceStore(
        aws_client("dynamodb", session), settings.table_name, blobs, settings.tenant, indexer=index_values
    )


def build_service(settings: Settings, session: boto3.Session | None = None) -> ResourceService:
    store = build_store(settings, session)
    validator = get_validator(settings.validation_level)
    return ResourceService(store, validator, searcher=DynamoSearch(store, index_values))


def build_api(settings: Settings, session: boto3.Session | None = None) -> FhirApi:
    service = build_service(settings, session)
    return FhirApi(service, get_validator(settings.validation_level), settings.max_body_bytes)

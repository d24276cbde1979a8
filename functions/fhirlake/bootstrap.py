"""Composition root: builds the core from Settings and AWS clients (``fhirlake.aws``)."""

from __future__ import annotations

import boto3

from fhirlake.api.app import FhirApi
from fhirlake.api.http import Request
from fhirlake.aws import aws_client
from fhirlake.config import Settings
from fhirlake.fhir.types import resource_types
from fhirlake.persistence.blobs import S3BlobStore
from fhirlake.persistence.dynamodb import DynamoResourceStore
from fhirlake.persistence.dynamodb_search import DynamoSearch
from fhirlake.search.extract import index_values
from fhirlake.service.crud import ResourceService
from fhirlake.validation import get_validator


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


# Base URL of the warm-up requests when the deployment sets none (each request derives its own).
WARM_UP_BASE_URL = "https://warm-up.invalid/fhir"


def warm_up(api: FhirApi, base_url: str | None = None) -> None:
    """Load now what the first requests of a new execution environment would otherwise load: the search
    registry of every type (``GET /metadata``), the validation tables of every type (``$validate``) and
    the search-value extraction of every type. Lambda SnapStart runs it before taking its snapshot.

    Files and CPU only: it never calls AWS, so no connection, credential or clock reading of the
    publishing environment ends up in the snapshot that every restored environment shares.
    """
    base = base_url or WARM_UP_BASE_URL
    fhir_json = {"accept": "application/fhir+json", "content-type": "application/fhir+json"}
    api.handle(Request("GET", "/metadata", headers=fhir_json, base_url=base))
    for resource_type in sorted(resource_types()):
        body = b'{"resourceType":"%s"}' % resource_type.encode()
        path = f"/{resource_type}/$validate"
        api.handle(Request("POST", path, headers=fhir_json, body=body, base_url=base))
        index_values({"resourceType": resource_type})

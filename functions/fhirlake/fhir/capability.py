"""The CapabilityStatement: what this server really implements (and nothing more)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from fhirlake import __version__
from fhirlake.fhir.instant import now_instant
from fhirlake.fhir.types import resource_types
from fhirlake.search.parameters import parameters
from fhirlake.search.query import common_parameters

TYPE_INTERACTIONS = (
    "read",
    "vread",
    "update",
    "patch",  # JSON Patch and FHIRPath Patch (fhirlake.fhir.patch)
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
)
SYSTEM_INTERACTIONS = ("transaction", "batch", "history-system", "search-system")


# Operations beyond $validate, by resource type.
_TYPE_OPERATIONS: dict[str, tuple[dict[str, Any], ...]] = {
    "Patient": (
        {
            "name": "everything",
            "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
            "documentation": "Instance level only (Patient/[id]/$everything): the patient, its compartment "
            "and the practitioners, organizations, locations, medications and devices they refer to. "
            "Parameters start, end, _since, _type, _count.",
        },
    ),
}


def _search_params(rtype: str) -> list[dict[str, Any]]:
    return [
        {"name": p.code, "definition": p.url, "type": p.type}
        for p in sorted(parameters(rtype).values(), key=lambda p: p.code)
    ]


def _system_search_params() -> list[dict[str, Any]]:
    """What ``GET [base]?...`` takes without ``_type``: the parameters every type has, and ``_type``."""
    common = common_parameters(resource_types())
    any_type = next(iter(sorted(resource_types())))
    return [
        *(p for p in _search_params(any_type) if p["name"] in common),
        {
            "name": "_type",
            "type": "token",
            "documentation": "The resource types to search (comma-separated); with it, every parameter the "
            "listed types share can be used",
        },
    ]


def capability_statement(base_url: str) -> dict[str, Any]:
    """The statement for this base URL; built once a day per base (146 types and their parameters)."""
    return _capability_statement(base_url, now_instant()[:10])


@lru_cache(maxsize=8)
def _capability_statement(base_url: str, day: str) -> dict[str, Any]:
    validate_op = {
        "name": "validate",
        "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate",
    }
    resources = [
        {
            "type": rtype,
            "profile": f"http://hl7.org/fhir/StructureDefinition/{rtype}",
            "interaction": [{"code": code} for code in TYPE_INTERACTIONS],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "conditionalRead": "full-support",
            "conditionalUpdate": True,
            "conditionalDelete": "multiple",
            "searchParam": _search_params(rtype),
            "operation": [validate_op, *_TYPE_OPERATIONS.get(rtype, ())],
        }
        for rtype in sorted(resource_types())
    ]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": day,
        "publisher": "fhirlake",
        "kind": "instance",
        "software": {"name": "fhirlake", "version": __version__},
        "implementation": {"description": "fhirlake FHIR R4 data store", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json", "application/fhir+json"],  # JSON Patch, FHIRPath Patch
        "rest": [
            {
                "mode": "server",
                "documentation": "Behind Amazon API Gateway; requests are signed with AWS SigV4 (IAM).",
                "security": {
                    "cors": False,
                    "description": "AWS IAM (SigV4) authorization on every request.",
                },
                "resource": resources,
                "interaction": [{"code": code} for code in SYSTEM_INTERACTIONS],
                "searchParam": _system_search_params(),
                "operation": [validate_op],
                "compartment": [
                    f"http://hl7.org/fhir/CompartmentDefinition/{name.lower()}"
                    for name in ("Device", "Encounter", "Patient", "Practitioner", "RelatedPerson")
                ],
            }
        ],
    }

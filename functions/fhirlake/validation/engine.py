"""PLACEHOLDER engine: only the `minimal` checks, at every level.

Being replaced by the strict R4 validator (issue 3). Keep `build_validator(level) -> Validator`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fhirlake.fhir.outcome import Issue, error
from fhirlake.fhir.types import is_resource_type, is_valid_id
from fhirlake.validation import ValidationLevel


@dataclass
class MinimalValidator:
    level: ValidationLevel

    def validate(self, resource: Any, expected_type: str | None = None) -> list[Issue]:
        if not isinstance(resource, dict):
            return [error("structure", "A resource must be a JSON object")]
        rtype = resource.get("resourceType")
        if not isinstance(rtype, str) or not is_resource_type(rtype):
            return [error("structure", "resourceType is missing or not an R4 resource type", "resourceType")]
        issues: list[Issue] = []
        if expected_type and rtype != expected_type:
            issues.append(error("invalid", f"Expected a {expected_type} resource, got {rtype}", "resourceType"))
        if "id" in resource and not is_valid_id(resource["id"]):
            issues.append(error("value", "Invalid resource id (1-64 of A-Z a-z 0-9 - .)", f"{rtype}.id"))
        return issues


def build_validator(level: ValidationLevel) -> MinimalValidator:
    return MinimalValidator(level)

"""Bytes in, issues out: parse (fhirlake.fhir.json: exact decimals, syntax errors as issues) then validate."""

from __future__ import annotations

from typing import Any

from fhirlake.fhir import json as fhir_json
from fhirlake.fhir.outcome import FhirError, Issue
from fhirlake.validation import ValidationLevel, get_validator


def parse_json(raw: bytes | str) -> tuple[Any, list[Issue]]:
    """Parse ``raw``; on failure return ``(None, [issue])``."""
    try:
        return fhir_json.loads(raw), []
    except FhirError as exc:
        return None, exc.issues


def parse_and_validate(
    raw: bytes | str, level: ValidationLevel | str = ValidationLevel.STRICT, expected_type: str | None = None
) -> tuple[Any, list[Issue]]:
    """Parse and validate; returns ``(resource or None, issues)``."""
    resource, issues = parse_json(raw)
    if issues:
        return None, issues
    return resource, get_validator(level).validate(resource, expected_type)

"""One validator interface for every write path (API, import, transactions).

Callers ask :func:`get_validator` for a :class:`Validator` at a :class:`ValidationLevel` and get
back a list of :class:`~fhirlake.fhir.outcome.Issue`; an empty list (or only warnings) means valid.
The implementation behind it is swappable without touching any caller.
"""

from __future__ import annotations

from enum import StrEnum
from functools import cache
from typing import Any, Protocol

from fhirlake.fhir.outcome import Issue


class ValidationLevel(StrEnum):
    STRICT = "strict"  # structure + terminology (required bindings) + invariants
    STRUCTURE_ONLY = "structure-only"  # structure and data types, no terminology, no invariants
    MINIMAL = "minimal"  # JSON object, known resourceType, id format


class Validator(Protocol):
    level: ValidationLevel

    def validate(self, resource: Any, expected_type: str | None = None) -> list[Issue]:
        """Return every problem found in ``resource`` (a parsed JSON value).

        ``expected_type`` is the resource type the caller requires (e.g. from the URL); a
        mismatch is reported as an issue. Never raises for bad input.
        """
        ...


@cache
def get_validator(level: ValidationLevel | str = ValidationLevel.STRICT) -> Validator:
    from fhirlake.validation.engine import build_validator

    return build_validator(ValidationLevel(level))


def parse_and_validate(
    raw: bytes | str, level: ValidationLevel | str = ValidationLevel.STRICT, expected_type: str | None = None
) -> tuple[Any, list[Issue]]:
    """Parse JSON bytes and validate: ``(resource or None, issues)``.

    Malformed JSON (comments, trailing commas, bad close markers...) gives one ``invalid`` issue with
    the line/column in its diagnostics and the element being parsed as its expression.
    """
    from fhirlake.validation.parse import parse_and_validate as _parse_and_validate

    return _parse_and_validate(raw, level, expected_type)

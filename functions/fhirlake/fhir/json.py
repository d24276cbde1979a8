"""FHIR JSON in and out: fast (orjson) but faithful to the spec's rules on numbers.

FHIR decimals keep their precision (http://hl7.org/fhir/R4/json.html: ``1.50`` is not ``1.5``),
so a body holding a decimal that a float cannot reproduce exactly is parsed with ``Decimal``
and written back verbatim. Everything else takes the orjson path.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import orjson

from fhirlake.fhir.outcome import FhirError

# A decimal token whose float round trip would change its text: trailing zeros after the
# point, an exponent, or more digits than a double keeps. May also match inside strings;
# that only costs the slower parse.
_PRECISION_AT_RISK = re.compile(rb"\d\.\d*0(?!\d)|\d[eE][-+]?\d|\d\.\d{15,}|\d{16,}")


class JsonDecimal(Decimal):
    """A decimal that remembers the exact text it was parsed from."""

    text: str

    def __new__(cls, text: str) -> JsonDecimal:
        value = super().__new__(cls, text)
        value.text = text
        return value


def _encode_decimal(value: object) -> orjson.Fragment:
    if isinstance(value, JsonDecimal):
        return orjson.Fragment(value.text.encode())
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value).encode())
    raise TypeError(f"Cannot serialise {type(value).__name__}")


def loads(raw: bytes | str) -> Any:
    """Parse a FHIR JSON body; malformed input raises a 400 FhirError with line and column."""
    data = raw.encode() if isinstance(raw, str) else raw
    if _PRECISION_AT_RISK.search(data) is None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # fall through for the precise error position (and >64-bit integers)
    try:
        return json.loads(data, parse_float=JsonDecimal)
    except json.JSONDecodeError as exc:
        raise FhirError.of(
            400,
            "structure",
            f"The body is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
        ) from None
    except (UnicodeDecodeError, RecursionError):
        raise FhirError.of(400, "structure", "The body is not valid UTF-8 JSON") from None


def dumps(resource: Any, *, pretty: bool = False) -> bytes:
    return orjson.dumps(resource, default=_encode_decimal, option=orjson.OPT_INDENT_2 if pretty else 0)

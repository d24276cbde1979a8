"""FHIR JSON in and out: fast (orjson) but faithful to the spec's rules on numbers.

FHIR decimals keep their precision (http://hl7.org/fhir/R4/json.html: ``1.50`` is not ``1.5``),
so a body holding a decimal that a float cannot reproduce exactly is parsed with ``Decimal``
and written back verbatim. Everything else takes the orjson path.

Which bodies need the slow parse: if orjson writes the parsed value back byte for byte (compact
NDJSON from Synthea, Bulk Data exports and HealthLake is written that way), every number kept its
text, so none does — a 2 µs check. Otherwise a regex scan finds the number tokens at risk (~15 µs on a
1.5 kB resource, ten times the cost of the check).
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import orjson

from fhirlake.fhir.json_syntax import syntax_issue
from fhirlake.fhir.outcome import FhirError

# A decimal token whose float round trip would change its text: trailing zeros after the
# point, an exponent, or more digits than a double keeps. Anchored where a number token can start
# inside a resource (after ':', ',' or '[' and JSON whitespace), so ids and UUIDs ("8e1a...") no
# longer force the slow parse; it may still match inside strings, which only costs the slower parse.
_PRECISION_AT_RISK = re.compile(
    rb"[:,\[][ \t\r\n]*-?[0-9]+(?:\.[0-9]*0(?![0-9])|(?:\.[0-9]+)?[eE]|\.[0-9]{15,}|[0-9]{15,})"
)


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
    """Parse a FHIR JSON body; malformed input raises a 400 FhirError with line, column and path."""
    data = raw.encode() if isinstance(raw, str) else raw
    try:
        value = orjson.loads(data)  # also the syntax check: its errors carry positions
    except orjson.JSONDecodeError as exc:
        if "64-bit" not in str(exc):
            raise FhirError(400, [syntax_issue(data, exc)]) from None
    else:
        if orjson.dumps(value) == data or _PRECISION_AT_RISK.search(data) is None:
            return value
    try:
        return json.loads(data, parse_float=JsonDecimal)  # exact decimals, and integers beyond 64 bits
    except json.JSONDecodeError as exc:
        raise FhirError(400, [syntax_issue(data, exc)]) from None
    except (UnicodeDecodeError, RecursionError):
        raise FhirError.of(400, "invalid", "The body is not valid UTF-8 JSON") from None


def dumps(resource: Any, *, pretty: bool = False) -> bytes:
    return orjson.dumps(resource, default=_encode_decimal, option=orjson.OPT_INDENT_2 if pretty else 0)

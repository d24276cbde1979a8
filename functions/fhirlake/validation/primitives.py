"""Checks for the R4 primitive types (http://hl7.org/fhir/R4/datatypes.html#primitive).

Regexes are the ones in the core package's primitive StructureDefinitions (``type.extension[regex]``),
tightened where the spec's prose is stricter than its regex: values may not be empty (ele-1), dates must
exist in the calendar, base64 must decode (length multiple of 4, padding only at the end), integers must
fit the 32-bit ranges. Each checker returns ``None`` when the JSON value is acceptable, otherwise a short
diagnostic naming the rule (never the value: values may be PHI).
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from datetime import date as _date
from decimal import Decimal
from functools import lru_cache

from fhirlake.fhir.types import resource_types

Checker = Callable[[object], str | None]

_YEAR = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
_TZ = r"(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
_TIME = r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?"
DATE_RE = re.compile(rf"{_YEAR}(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?")
DATETIME_RE = re.compile(rf"{_YEAR}(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])(T{_TIME}{_TZ})?)?)?")
INSTANT_RE = re.compile(rf"{_YEAR}-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])T{_TIME}{_TZ}")
TIME_RE = re.compile(_TIME)
STRING_RE = re.compile(r"[ \r\n\t\S]+", re.ASCII)  # Java regex semantics: \s is ASCII
CODE_RE = re.compile(r"[^\s]+(\s[^\s]+)*", re.ASCII)
ID_RE = re.compile(r"[A-Za-z0-9\-.]{1,64}")
URI_RE = re.compile(r"\S+", re.ASCII)
OID_RE = re.compile(r"urn:oid:[0-2](\.(0|[1-9][0-9]*))+")
UUID_RE = re.compile(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
BASE64_RE = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_WS_RE = re.compile(r"\s+", re.ASCII)
INT_MIN, INT_MAX = -(2**31), 2**31 - 1


def _real_date(value: str) -> bool:
    """The regexes accept 2023-02-31; the calendar does not."""
    if len(value) < 10 or value[8:10] <= "28":  # (the regex matched: 2 digits) every month has 28 days
        return True
    try:
        _date(int(value[0:4]), int(value[5:7]), int(value[8:10]))
    except ValueError:
        return False
    return True


def check_string(v: object) -> str | None:
    if type(v) is not str:
        return "Must be a JSON string"
    if not v:
        return "Empty string (a value must be present, ele-1)"
    if v.isprintable() or STRING_RE.fullmatch(v):
        return None
    return "Invalid characters in string"


def check_code(v: object) -> str | None:
    if type(v) is not str:
        return "Must be a JSON string"
    if not v:
        return "Empty string (a value must be present, ele-1)"
    # Fast path: printable means no ASCII whitespace but the space (\t \n \r \f \v are not printable),
    # so a printable code without a leading, trailing or double space matches CODE_RE.
    if v.isprintable() and (" " not in v or (v[0] != " " and v[-1] != " " and "  " not in v)):
        return None
    return None if CODE_RE.fullmatch(v) else "Invalid code format (no leading, trailing or double whitespace)"


def _regex_checker(regex: re.Pattern[str], label: str) -> Checker:
    match = regex.fullmatch

    def check(v: object) -> str | None:
        if type(v) is not str:
            return "Must be a JSON string"
        if not v:
            return "Empty string (a value must be present, ele-1)"
        return None if match(v) else f"Invalid {label} format"

    return check


def _uri_checker(label: str) -> Checker:
    """``\\S+`` (uri, url, canonical): a printable string without a space has no ASCII whitespace."""
    match = URI_RE.fullmatch

    def check(v: object) -> str | None:
        if type(v) is not str:
            return "Must be a JSON string"
        if not v:
            return "Empty string (a value must be present, ele-1)"
        if (v.isprintable() and " " not in v) or match(v):
            return None
        return f"Invalid {label} format"

    return check


# Timestamps and references repeat across the resources of a patient (an encounter's start time, the
# patient's urn:uuid): in the Synthea NDJSON 73 % of dateTime and 94 % of Reference.reference checks
# see a value already checked. Short values only, so a bounded cache cannot pin large strings (at most
# ~2.5 MB each: 8,192 entries of <= 128 characters).
MEMO_MAX_LEN = 128
MEMO_SIZE = 8192


def memoized_checker(check_text: Callable[[str], str | None]) -> Checker:
    """The checker of a JSON-string type from a pure check of its text, memoized for short values."""
    cached = lru_cache(maxsize=MEMO_SIZE)(check_text)

    def check(v: object) -> str | None:
        if type(v) is not str:
            return "Must be a JSON string"
        return cached(v) if len(v) <= MEMO_MAX_LEN else check_text(v)

    check.cache_clear = cached.cache_clear  # type: ignore[attr-defined]  # for benchmarks and tests
    return check


def _date_checker(regex: re.Pattern[str], label: str) -> Checker:
    match = regex.fullmatch

    def check_text(v: str) -> str | None:
        if not match(v):
            return f"Invalid {label} format"
        if not _real_date(v):
            return f"Invalid {label}: not a calendar date"
        return None

    return memoized_checker(check_text)


def check_boolean(v: object) -> str | None:
    return None if v is True or v is False else "Must be a JSON boolean (true or false)"


def check_integer(v: object) -> str | None:
    if type(v) is not int:
        if type(v) is float and v.is_integer():
            return "Must be a JSON integer (no decimal point)"
        return "Must be a JSON number without a fraction (integer)"
    return None if INT_MIN <= v <= INT_MAX else "integer out of the 32-bit range"


def check_positive_int(v: object) -> str | None:
    if type(v) is not int:
        return "Must be a JSON number without a fraction (positiveInt)"
    return None if 1 <= v <= INT_MAX else "positiveInt must be >= 1 (and fit 32 bits)"


def check_unsigned_int(v: object) -> str | None:
    if type(v) is not int:
        return "Must be a JSON number without a fraction (unsignedInt)"
    return None if 0 <= v <= INT_MAX else "unsignedInt must be >= 0 (and fit 32 bits)"


def check_decimal(v: object) -> str | None:
    t = type(v)
    if t is float or t is int or isinstance(v, Decimal):  # Decimal: precision-preserving parse (fhir.json)
        return None
    return "Must be a JSON number (decimal)"


_BASE64_ALPHABET = (string.ascii_letters + string.digits + "+/").encode()


def is_base64(s: str) -> bool:
    """``len(s) % 4 == 0 and BASE64_RE.fullmatch(s)``, in C: every character is in the alphabet, except
    that the last one, or the last two, may be "=" padding (bytes.translate deletes the alphabet, what
    remains is invalid). ~8x faster than the regex on attachment data (26 -> 3 us for 1.8 KB); compared
    exhaustively with the regex on short strings in tests/validation/test_fast_paths.py."""
    if len(s) % 4 or not s.isascii():
        return False
    unpadded = s[:-2] + s[-2:].rstrip("=")
    return not unpadded.encode().translate(None, _BASE64_ALPHABET)


def check_base64(v: object) -> str | None:
    if type(v) is not str:
        return "Must be a JSON string"
    if not v:
        return "Empty string (a value must be present, ele-1)"
    s = _WS_RE.sub("", v) if (" " in v or "\n" in v or "\r" in v or "\t" in v) else v
    return None if is_base64(s) else "Invalid base64Binary content (not valid base64)"


def check_xhtml(v: object) -> str | None:
    if type(v) is not str:
        return "Must be a JSON string"
    s = v.lstrip()
    if not s.startswith("<div"):
        return "Narrative must be an XHTML <div> element"
    head = s[: s.find(">") + 1]
    if "http://www.w3.org/1999/xhtml" not in head:
        return "Narrative <div> must be in the XHTML namespace (xmlns)"
    return None


_REF_RE = re.compile(r"([A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(/_history/[A-Za-z0-9\-.]{1,64})?")
_ABS_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S+", re.ASCII)


def _check_reference_text(v: str) -> str | None:
    """Reference.reference: relative ``Type/id[/_history/vid]``, absolute URL/URN, ``#local``, or a
    conditional ``Type?query`` (as used inside transactions)."""
    if not v:
        return "Empty string (a value must be present, ele-1)"
    if v[0] == "#":
        return None if v == "#" or ID_RE.fullmatch(v, 1) else "Invalid local reference (#id)"
    m = _REF_RE.fullmatch(v)
    if m:
        return None if m.group(1) in resource_types() else "Reference to an unknown resource type"
    if _ABS_RE.fullmatch(v):
        return None
    q = v.find("?")
    if q > 0 and v[:q] in resource_types():
        return None
    return "Invalid reference format (expected Type/id, an absolute URL, #id or Type?criteria)"


check_reference = memoized_checker(_check_reference_text)


CHECKERS: dict[str, Checker] = {
    "string": check_string,
    "markdown": check_string,
    "code": check_code,
    "id": _regex_checker(ID_RE, "id"),
    "uri": _uri_checker("uri"),
    "url": _uri_checker("url"),
    "canonical": _uri_checker("canonical"),
    "oid": _regex_checker(OID_RE, "oid"),
    "uuid": _regex_checker(UUID_RE, "uuid"),
    "date": _date_checker(DATE_RE, "date"),
    "dateTime": _date_checker(DATETIME_RE, "dateTime"),
    "instant": _date_checker(INSTANT_RE, "instant"),
    "time": _regex_checker(TIME_RE, "time"),
    "boolean": check_boolean,
    "integer": check_integer,
    "positiveInt": check_positive_int,
    "unsignedInt": check_unsigned_int,
    "decimal": check_decimal,
    "base64Binary": check_base64,
    "xhtml": check_xhtml,
    "reference": check_reference,  # pseudo type: Reference.reference
}

# Types whose values may be local references ('#id') that count for dom-3.
URI_LIKE = frozenset({"uri", "url", "canonical", "reference"})

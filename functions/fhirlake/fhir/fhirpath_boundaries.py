"""FHIRPath ``lowBoundary()`` / ``highBoundary()`` as SQL on FHIR v2 specifies and tests them.

A partial value stands for a range: ``1970-06`` is 1970-06-01 .. 1970-06-30, ``12:34`` is 12:34:00 ..
12:34:59.999999999, a dateTime without an offset may be anywhere from +14:00 to -12:00, and a decimal
``1.0`` covers 1.0 .. 1.09999999 (the suite's convention: the unwritten digits, up to 8 decimal places,
are all 0 or all 9).
"""

from __future__ import annotations

import calendar
import re
from decimal import Decimal
from typing import Any

_DECIMAL_PLACES = 8
_MAX_DIGITS = 15  # a boundary must survive a round trip through a double (SQL engines' DOUBLE)
_DATE_RE = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")
_DATETIME_RE = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?)?)?)?(Z|[+-]\d{2}:\d{2})?"
)
_TIME_RE = re.compile(r"(\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?")


def boundary(value: Any, high: bool, fhir_type: str | None = None) -> Any:
    """The low or high boundary of ``value``, or None when it has none (or is out of range)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, (float, Decimal)):
        return _decimal(value, high)
    if not isinstance(value, str):
        return None
    if fhir_type == "time" or (fhir_type is None and _TIME_RE.fullmatch(value)):
        return _time(value, high)
    if fhir_type in ("dateTime", "instant") or "T" in value:
        return _datetime(value, high)
    return _date(value, high)


def _decimal(value: float | Decimal, high: bool) -> Decimal | None:
    text = getattr(value, "text", None) or (repr(value) if isinstance(value, float) else str(value))
    if "e" in text.lower():
        text = format(Decimal(text), "f")
    whole, _, fraction = text.lstrip("-").partition(".")
    if len(fraction) > _DECIMAL_PLACES or len(whole.lstrip("0")) + _DECIMAL_PLACES > _MAX_DIGITS:
        return None
    pad = ("9" if high else "0") * (_DECIMAL_PLACES - len(fraction))
    sign = "-" if text.startswith("-") else ""
    return Decimal(f"{sign}{whole}.{fraction}{pad}")


def _fraction(digits: str | None, high: bool) -> str:
    digits = digits or ""
    return (digits + ("9" if high else "0") * 9)[:9]


def _date(value: str, high: bool) -> str | None:
    m = _DATE_RE.fullmatch(value)
    if not m:
        return None
    year, month, day = m.groups()
    month = month or ("12" if high else "01")
    if day is None:
        day = f"{calendar.monthrange(int(year), int(month))[1]:02d}" if high else "01"
    return f"{year}-{month}-{day}"


def _datetime(value: str, high: bool) -> str | None:
    m = _DATETIME_RE.fullmatch(value)
    if not m:
        return None
    year, month, day, hour, minute, second, fraction, offset = m.groups()
    date = _date("-".join(p for p in (year, month, day) if p), high)
    top = high
    hour = hour or ("23" if top else "00")
    minute = minute or ("59" if top else "00")
    second = second or ("59" if top else "00")
    # no offset: the earliest moment is at +14:00, the latest at -12:00
    offset = offset or ("-12:00" if high else "+14:00")
    return f"{date}T{hour}:{minute}:{second}.{_fraction(fraction, high)}{offset}"


def _time(value: str, high: bool) -> str | None:
    m = _TIME_RE.fullmatch(value)
    if not m:
        return None
    hour, minute, second, fraction = m.groups()
    minute = minute or ("59" if high else "00")
    second = second or ("59" if high else "00")
    return f"{hour}:{minute}:{second}.{_fraction(fraction, high)}"

"""Normalization shared by indexing (``extract``) and querying: the same function turns a resource's value
and a search argument into comparable form, so the two sides cannot drift apart.

- :func:`normalize_string` - string search (http://hl7.org/fhir/R4/search.html#string): case- and
  accent-insensitive: Unicode NFKD, combining marks removed, casefolded, whitespace runs collapsed to one
  space, trimmed.
- :func:`date_bounds` - the instant range a FHIR date/dateTime/instant covers at its precision
  (search.html#date): ``2020`` is ``2020-01-01T00:00:00.000Z..2020-12-31T23:59:59.999Z``. Values with a
  time zone are converted to UTC. **Values without a time zone (dates, and dateTimes written without a
  zone) are taken as UTC**: the spec says "the server's local time zone"; fhirlake's server time zone is
  UTC, on both the index and the query side.
- :func:`number_bounds` - the implicit precision range of a decimal (search.html#number): ``100`` is
  ``[99.5, 100.5)``, ``100.00`` is ``[99.995, 100.005)``, i.e. +/- half a unit of the last written digit.
  For exponent notation the spec's own example is followed literally: ``1e2`` is ``[95, 105)`` (half a
  unit one digit below the last written digit of the mantissa).
- :func:`format_instant` - UTC, millisecond, fixed-width ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (string order is
  time order).
"""

from __future__ import annotations

import calendar
import re
import unicodedata
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from functools import lru_cache

from fhirlake.search.values import OPEN_HIGH, OPEN_LOW

__all__ = [
    "OPEN_HIGH",
    "OPEN_LOW",
    "date_bounds",
    "format_instant",
    "normalize_string",
    "number_bounds",
    "number_text",
]

_WS = re.compile(r"\s+")


@lru_cache(maxsize=16384)
def normalize_string(s: str) -> str:
    """Case/accent-insensitive form for string search: NFKD, no combining marks, casefold, one space."""
    if s.isascii():
        return _WS.sub(" ", s.casefold()).strip()
    decomposed = unicodedata.normalize("NFKD", s)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _WS.sub(" ", stripped.casefold()).strip()


def format_instant(moment: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.mmmZ`` in UTC (naive datetimes are taken as UTC)."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    # isoformat pads the year to 4 digits and truncates to milliseconds as the spec's form wants; it is C
    # (~25 % cheaper than formatting the fields): "...T12:00:00.000+00:00" minus the offset, plus Z
    return moment.isoformat(timespec="milliseconds")[:-6] + "Z"


# FHIR date / dateTime / instant (https://hl7.org/fhir/R4/datatypes.html#primitive); also accepts a time
# without seconds or without a zone, which search arguments may carry.
_DATE = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}:\d{2})?)?)?)?"
)
_MS = timedelta(milliseconds=1)


@lru_cache(maxsize=65536)
def date_bounds(text: str) -> tuple[str, str]:
    """(low, high) UTC instants covered by a FHIR date/dateTime/instant; ValueError on bad input."""
    if not isinstance(text, str):
        raise ValueError(f"not a date: {text!r}")
    m = _DATE.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"not a FHIR date/dateTime/instant: {text!r}")
    year_s, month_s, day_s, hour_s, minute_s, second_s, frac, zone = m.groups()
    year = int(year_s)
    month = int(month_s) if month_s else 1
    if not 1 <= month <= 12 or year == 0:
        raise ValueError(f"not a valid date: {text!r}")
    last_day = calendar.monthrange(year, month)[1]
    day = int(day_s) if day_s else 1
    if not 1 <= day <= last_day:
        raise ValueError(f"not a valid date: {text!r}")
    if hour_s is None:  # date precision: whole year / month / day, taken as UTC
        end_month = month if month_s else 12
        end_day = day if day_s else calendar.monthrange(year, end_month)[1]
        low = f"{year:04d}-{month:02d}-{day:02d}T00:00:00.000Z"
        high = f"{year:04d}-{end_month:02d}-{end_day:02d}T23:59:59.999Z"
        return low, high
    hour, minute = int(hour_s), int(minute_s)
    second = int(second_s) if second_s else 0
    if hour == 24 and minute == 0 and second == 0 and not frac:  # 24:00:00 is the end of the day
        hour, extra = 23, timedelta(hours=1)
    else:
        extra = timedelta(0)
    if hour > 23 or minute > 59 or second > 60:
        raise ValueError(f"not a valid time: {text!r}")
    leap = second == 60  # a leap second is folded into the preceding second
    if leap:
        second = 59
    if frac:
        digits = frac[:6].ljust(6, "0")
        micro = int(digits)
        precision = timedelta(microseconds=10 ** (6 - min(len(frac), 6)))
    else:
        micro = 0
        precision = timedelta(seconds=1) if second_s else timedelta(minutes=1)
    if zone is None or zone == "Z":
        tz = UTC  # no zone: taken as UTC (see module docstring)
    else:
        sign = 1 if zone[0] == "+" else -1
        zh, zm = int(zone[1:3]), int(zone[4:6])
        if zh > 14 or zm > 59:
            raise ValueError(f"not a valid time zone: {text!r}")
        tz = timezone(sign * timedelta(hours=zh, minutes=zm))
    try:
        start = datetime(year, month, day, hour, minute, second, micro, tzinfo=tz) + extra
        start = start.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before the first representable instant
        start = None
    if start is None:
        return OPEN_LOW, OPEN_HIGH
    low = format_instant(start)
    if not frac:  # second or minute precision (zone offsets are whole minutes): no arithmetic needed, and
        # at 9999-12-31T23:59 the end is OPEN_HIGH, which is the same text; ~40 % of the function's time
        return low, low[:-4] + "999Z" if second_s else low[:-7] + "59.999Z"
    try:  # the last millisecond the value's precision covers (sub-millisecond precision: the value itself)
        end = start + precision - _MS if precision >= _MS else start
        high = format_instant(end)
    except OverflowError:
        high = OPEN_HIGH
    if leap:
        high = high[:-4] + "999Z"
    return low, high


_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def number_text(value: object) -> str | None:
    """A JSON number's text as written (exact for ``JsonDecimal``/``Decimal``, shortest repr for float)."""
    if isinstance(value, bool):
        return None
    text = getattr(value, "text", None)  # fhirlake.fhir.json.JsonDecimal keeps the source text
    if isinstance(text, str):
        return text
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, float):
        return repr(value) if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, str):
        return value
    return None


@lru_cache(maxsize=65536)
def number_bounds(text: str) -> tuple[Decimal, Decimal, Decimal]:
    """(value, low, high) of a decimal with its implicit precision; ValueError on bad input.

    ``100`` -> (100, 99.5, 100.5); ``100.00`` -> (100.00, 99.995, 100.005); ``1e2`` -> (1E+2, 95, 105).
    The range is half-open ``[low, high)`` in the spec; both ends are returned, the comparison is the
    caller's.
    """
    if not isinstance(text, str):
        raise ValueError(f"not a number: {text!r}")
    text = text.strip()
    if _NUMBER.fullmatch(text) is None:
        raise ValueError(f"not a number: {text!r}")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"not a number: {text!r}") from None
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    if "e" in text or "E" in text:
        exponent -= 1  # spec example: 1e2 -> [95, 105)
    half = Decimal(5).scaleb(exponent - 1)
    return value, value - half, value + half

"""FHIR instants as fhirlake stores them: UTC, millisecond precision, fixed width, so that
string order is time order (they are used inside sort keys)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_FORMAT = "%Y-%m-%dT%H:%M:%S"


def format_instant(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return f"{moment.strftime(_FORMAT)}.{moment.microsecond // 1000:03d}Z"


def now_instant() -> str:
    return format_instant(datetime.now(UTC))


def parse_instant(text: str) -> datetime:
    """Parse a client-supplied instant/dateTime (``_since``); a bare date means midnight UTC."""
    value = text.strip().replace("Z", "+00:00").replace(" ", "+")
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        if "T" in value:
            raise ValueError("an instant needs a time zone")
        moment = moment.replace(tzinfo=UTC)
    return moment


def after(previous: str, candidate: str) -> str:
    """``candidate`` if later than ``previous``, else ``previous`` + 1 ms (clock skew between writers)."""
    if candidate > previous:
        return candidate
    return format_instant(parse_instant(previous) + timedelta(milliseconds=1))


def http_date(instant: str) -> str:
    """RFC 7231 date for Last-Modified."""
    return parse_instant(instant).strftime("%a, %d %b %Y %H:%M:%S GMT")

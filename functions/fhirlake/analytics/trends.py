"""Disease-progression trends: one chart model, two sources.

- ``patient_progression``: one patient's observation values over time with condition onsets and medication
  starts marked, read through the FHIR service layer (search), so it shows the data as written a moment
  ago, not as the lake caught up with it.
- ``population_trend``: the monthly prevalence of a condition, or the monthly mean of an observation
  code, across the population, through the SQL engine (Athena or local DuckDB) and the shipped queries.

Renderers (``charts``) turn the model into PNG or interactive HTML.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

from fhirlake.analytics.engine import SqlEngine
from fhirlake.analytics.queries import shipped_query
from fhirlake.fhir.outcome import FhirError
from fhirlake.persistence import StoredVersion
from fhirlake.service.crud import ResourceService

Measure = Literal["prevalence", "mean"]
MEASURES: tuple[Measure, ...] = ("prevalence", "mean")
MarkerKind = Literal["condition", "medication"]
SEARCH_PAGE = 1000  # the service's largest _count
DEFAULT_YEARS = 10  # population trends without a range cover the last ten years


@dataclass(frozen=True)
class Point:
    at: datetime
    value: float
    note: str = ""  # extra tooltip text, e.g. "12 of 140 patients"


@dataclass(frozen=True)
class Series:
    name: str
    unit: str = ""
    points: tuple[Point, ...] = ()


@dataclass(frozen=True)
class Marker:
    at: datetime
    kind: MarkerKind
    label: str


@dataclass(frozen=True)
class Chart:
    title: str
    y_label: str
    series: tuple[Series, ...] = ()
    markers: tuple[Marker, ...] = ()
    subtitle: str = ""

    @property
    def empty(self) -> bool:
        return not any(s.points for s in self.series)

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "subtitle": self.subtitle,
            "yLabel": self.y_label,
            "series": [
                {
                    "name": s.name,
                    "unit": s.unit,
                    "points": [{"at": p.at.isoformat(), "value": p.value, "note": p.note} for p in s.points],
                }
                for s in self.series
            ],
            "markers": [{"at": m.at.isoformat(), "kind": m.kind, "label": m.label} for m in self.markers],
        }


@dataclass(frozen=True)
class Code:
    system: str | None  # None: any system
    code: str

    @classmethod
    def parse(cls, token: str, parameter: str = "code") -> Code:
        """A FHIR token ``system|code`` or a bare ``code``."""
        system, bar, code = token.strip().rpartition("|")
        if not code:
            raise FhirError.of(400, "value", f"{parameter} must be a code or system|code", parameter)
        return cls(system if bar else None, code)

    @property
    def token(self) -> str:
        return f"{self.system}|{self.code}" if self.system is not None else self.code


# -- one patient, through the service layer -----------------------------------------------------------
def patient_progression(service: ResourceService, patient_id: str, code: Code, base_url: str = "") -> Chart:
    """``code``'s observation values for one patient over time, condition onsets and medication starts."""
    patient = service.read("Patient", patient_id).resource or {}  # 404/410 for an unknown patient
    observations = list(
        _search(service, "Observation", [("patient", patient_id), ("code", code.token)], base_url)
    )
    series = _observation_series(observations, code)
    markers = sorted(
        [
            *_condition_onsets(service, patient_id, base_url),
            *_medication_starts(service, patient_id, base_url),
        ],
        key=lambda m: (m.at, m.kind, m.label),
    )
    name = _display(observations, code)
    return Chart(
        title=f"{name} for {_patient_name(patient) or 'Patient/' + patient_id}",
        subtitle=f"{sum(len(s.points) for s in series)} observations, {len(markers)} events",
        y_label=", ".join(sorted({s.unit for s in series if s.unit})) or "value",
        series=tuple(series),
        markers=tuple(markers),
    )


def _search(
    service: ResourceService, resource_type: str, query: list[tuple[str, str]], base_url: str
) -> Iterator[dict[str, Any]]:
    searching = service.searching()
    cursor: str | None = None
    while True:
        page_query = [*query, ("_count", str(SEARCH_PAGE))] + ([("_cursor", cursor)] if cursor else [])
        result = searching.search(resource_type, page_query, base_url, strict=True)
        yield from (v.resource for v in result.page.versions if isinstance(v, StoredVersion) and v.resource)
        cursor = result.page.next_cursor
        if not cursor:
            return


def _observation_series(observations: list[dict[str, Any]], code: Code) -> list[Series]:
    """One series for ``valueQuantity``; panels (e.g. blood pressure) give one series per component."""
    by_name: dict[tuple[str, str], list[Point]] = {}
    name = _display(observations, code)  # one series per code and unit, whatever each display says
    for observation in observations:
        at = _instant(
            observation.get("effectiveDateTime") or (observation.get("effectivePeriod") or {}).get("start")
        )
        if at is None:
            continue
        if _quantity(observation) is not None:
            value, unit = _quantity(observation)  # type: ignore[misc]
            by_name.setdefault((name, unit), []).append(Point(at, value, unit))
        for component in observation.get("component") or []:
            quantity = _quantity(component)
            if quantity is not None:
                part = _concept_text(component.get("code")) or "component"
                by_name.setdefault((part, quantity[1]), []).append(Point(at, quantity[0], quantity[1]))
    return [
        Series(name, unit, tuple(sorted(points, key=lambda p: p.at)))
        for (name, unit), points in by_name.items()
    ]


def _condition_onsets(service: ResourceService, patient_id: str, base_url: str) -> Iterator[Marker]:
    for condition in _search(service, "Condition", [("patient", patient_id)], base_url):
        at = _instant(condition.get("onsetDateTime") or condition.get("recordedDate"))
        if at is not None:
            yield Marker(at, "condition", _concept_text(condition.get("code")) or "condition")


def _medication_starts(service: ResourceService, patient_id: str, base_url: str) -> Iterator[Marker]:
    """The first prescription of each medication (Synthea renews the same one many times)."""
    first: dict[str, Marker] = {}
    for request in _search(service, "MedicationRequest", [("patient", patient_id)], base_url):
        at = _instant(request.get("authoredOn"))
        concept = request.get("medicationCodeableConcept")
        label = (
            _concept_text(concept)
            or (request.get("medicationReference") or {}).get("display")
            or "medication"
        )
        key = _first_code(concept) or label
        if at is not None and (key not in first or at < first[key].at):
            first[key] = Marker(at, "medication", label)
    yield from first.values()


# -- the population, through SQL ----------------------------------------------------------------------
def population_trend(
    engine: SqlEngine,
    code: Code,
    measure: Measure,
    since: date | None = None,
    until: date | None = None,
    today: date | None = None,
) -> Chart:
    """Monthly prevalence of a condition code, or monthly mean of an observation code, from the lake."""
    if measure not in MEASURES:
        raise FhirError.of(400, "value", f"measure must be one of {', '.join(MEASURES)}", "measure")
    today = today or datetime.now(UTC).date()
    last = _month(until or today)
    first = _month(since) if since else date(last.year - DEFAULT_YEARS, last.month, 1)
    if first > last:
        raise FhirError.of(400, "value", "since must not be after until", "since")
    if measure == "prevalence":
        sql = shipped_query("prevalence_by_month").with_parameters(
            {
                "condition_system": code.system or "",
                "condition_code": code.code,
                "first_month": first.isoformat(),
                "last_month": last.isoformat(),
            }
        )
        rows = engine.run(sql).records()
        points = tuple(
            Point(
                _midnight(r["month"]),
                100.0 * (r["prevalence"] or 0.0),
                f"{r['cases']} of {r['population']} patients",
            )
            for r in rows
        )
        series = Series(f"Prevalence of {code.code}", "%", points)
        return Chart(
            title=f"Prevalence of {code.code} by month",
            subtitle=f"{first:%Y-%m} to {last:%Y-%m}; patients born by each month",
            y_label="% of patients",
            series=(series,),
        )
    sql = shipped_query("observation_mean_by_month").with_parameters(
        {"code_system": code.system or "http://loinc.org", "code": code.code}
    )
    rows = [r for r in engine.run(sql).records() if r["month"] and first <= _as_date(r["month"]) <= last]
    unit = next((r["unit"] for r in rows if r.get("unit")), "")
    points = tuple(
        Point(
            _midnight(r["month"]),
            float(r["mean_value"]),
            f"{r['observations']} observations, {r['patients']} patients",
        )
        for r in rows
    )
    return Chart(
        title=f"Mean {code.code} by month",
        subtitle=f"{first:%Y-%m} to {last:%Y-%m}",
        y_label=unit or "mean value",
        series=(Series(f"Mean of {code.code}", unit, points),),
    )


# -- helpers --------------------------------------------------------------------------------------------
def _month(day: date) -> date:
    return date(day.year, day.month, 1)


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _midnight(value: Any) -> datetime:
    day = _as_date(value)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _instant(text: str | None) -> datetime | None:
    """A FHIR dateTime (any precision) as a UTC datetime; None when absent or unreadable."""
    if not text:
        return None
    # Partial precision ("2010", "2010-05") starts on the first day of its year or month.
    padded = text + "-01-01"[len(text) - 4 :] if len(text) in (4, 7) else text
    try:
        parsed = datetime.fromisoformat(padded.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _quantity(element: dict[str, Any]) -> tuple[float, str] | None:
    quantity = element.get("valueQuantity") or {}
    value = quantity.get("value")
    if value is None:
        return None
    return float(value), quantity.get("unit") or quantity.get("code") or ""


def _first_code(concept: dict[str, Any] | None) -> str | None:
    return next((c.get("code") for c in (concept or {}).get("coding") or [] if c.get("code")), None)


def _concept_text(concept: dict[str, Any] | None) -> str | None:
    if not concept:
        return None
    return concept.get("text") or next(
        (
            c.get("display") or c.get("code")
            for c in concept.get("coding") or []
            if c.get("display") or c.get("code")
        ),
        None,
    )


def _display(observations: list[dict[str, Any]], code: Code) -> str:
    for observation in observations:
        for coding in (observation.get("code") or {}).get("coding") or []:
            if coding.get("code") == code.code and coding.get("display"):
                return f"{coding['display']} ({code.code})"
    return code.code


def _patient_name(patient: dict[str, Any]) -> str:
    name = (patient.get("name") or [{}])[0]
    return " ".join([*(name.get("given") or []), name.get("family") or ""]).strip()


__all__ = [
    "MEASURES",
    "Chart",
    "Code",
    "Marker",
    "Measure",
    "Point",
    "Series",
    "patient_progression",
    "population_trend",
]

"""``Patient/[id]/$everything`` (R4 patient-operation-everything.html): the patient, every resource of
its compartment, and the practitioners, organizations, locations, medications and devices they refer to.

No HTTP here: :func:`parse_everything` turns the operation's parameters into an :class:`EverythingQuery`
and :meth:`PatientEverything.page` answers one page of it.

Paging never holds a whole patient in memory. The record is a fixed list of *steps*: the patient itself,
then one index search per (member type, compartment parameter) of the Patient CompartmentDefinition
(Observation ``subject``, Observation ``performer``, ...), types in alphabetical order. A page walks the
steps from its cursor, which is (step index, that step's own search cursor), as system search pages type
after type. A resource linked to the patient by several parameters of its type is returned by the first
of them only: a later step drops what an earlier parameter of the same type also links (decided with the
search's own matching rules), so the union needs no bound and no memory across pages.

Parameters:

- ``_count``: page size (default and maximum as search: ``DEFAULT_COUNT``, ``MAX_COUNT``);
- ``_since``: only resources with ``meta.lastUpdated`` >= the instant (``_lastUpdated=ge...``);
- ``_type``: the resource types returned (comma-separated, may repeat); supporting resources too;
- ``start`` / ``end``: care dates, applied to the type's date parameter in ``CARE_DATE`` as
  ``ge{start}`` / ``le{end}`` (overlap for periods, search.html#date); types without an entry there are
  returned unfiltered, as the operation allows. A resource without that date is left out when either is
  given.

Supporting resources (``search.mode = include``): on each page, the current Practitioner,
PractitionerRole, Organization, Location, Medication and Device that the page's resources refer to
through their reference search parameters (the references ``_include`` follows), one batched read per
type. They are not followed further (a PractitionerRole's Organization is not added), and a supporting
resource referred to on several pages comes back on each of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cache

from fhirlake.fhir.instant import format_instant, parse_instant
from fhirlake.fhir.outcome import FhirError, Issue
from fhirlake.fhir.types import is_valid_id, resource_types
from fhirlake.persistence import ResourceStore, StoredVersion
from fhirlake.search.extract import parameter_values
from fhirlake.search.normalize import date_bounds
from fhirlake.search.parameters import SearchParameter, parameters
from fhirlake.search.query import DEFAULT_COUNT, MAX_COUNT, Criterion, SearchRequest, matches, parse_search
from fhirlake.service import sorting
from fhirlake.service.crud import gone
from fhirlake.service.searching import SearchService, compartments, step_position

COMPARTMENT = "Patient"
# The care date of each compartment type (a date search parameter of that type). Record-keeping dates
# (AllergyIntolerance.recordedDate, Claim.created, List.date...) are not care dates: those types are
# returned whatever start/end say.
CARE_DATE: dict[str, str] = {
    "Account": "period",
    "AdverseEvent": "date",
    "Appointment": "date",
    "CarePlan": "date",
    "CareTeam": "date",
    "ChargeItem": "occurrence",
    "ClinicalImpression": "date",
    "Communication": "sent",
    "CommunicationRequest": "occurrence",
    "Composition": "period",
    "Condition": "onset-date",
    "DetectedIssue": "identified",
    "DeviceRequest": "event-date",
    "DiagnosticReport": "date",
    "DocumentReference": "period",
    "Encounter": "date",
    "EpisodeOfCare": "date",
    "Flag": "date",
    "Goal": "start-date",
    "ImagingStudy": "started",
    "Immunization": "date",
    "ImmunizationEvaluation": "date",
    "ImmunizationRecommendation": "date",
    "MeasureReport": "period",
    "Media": "created",
    "MedicationAdministration": "effective-time",
    "MedicationDispense": "whenhandedover",
    "MedicationRequest": "authoredon",
    "MedicationStatement": "effective",
    "NutritionOrder": "datetime",
    "Observation": "date",
    "Procedure": "date",
    "QuestionnaireResponse": "authored",
    "RequestGroup": "authored",
    "ResearchSubject": "date",
    "RiskAssessment": "date",
    "ServiceRequest": "occurrence",
    "Specimen": "collected",
    "VisionPrescription": "datewritten",
}
# "The server also returns whatever resources are needed to support the records - e.g. linked
# practitioners, medications, locations, organizations etc." Devices are not in the R4 Patient
# compartment, so the ones the record uses come this way too.
SUPPORTING_TYPES = ("Device", "Location", "Medication", "Organization", "Practitioner", "PractitionerRole")
# Parameters any request may carry (http.html#parameters) that change nothing here.
_IGNORED = frozenset({"_format", "_pretty"})
_OWN = frozenset({"_count", "_since", "_type", "start", "end", "_cursor"})


@dataclass(frozen=True, slots=True)
class EverythingQuery:
    count: int = DEFAULT_COUNT
    since: str | None = None  # instant, normalized
    types: frozenset[str] | None = None  # None: every type
    start: str | None = None
    end: str | None = None
    cursor: str | None = None
    warnings: tuple[Issue, ...] = ()
    # What paging links repeat (the parameters as the client sent them, without _cursor).
    link_params: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class EverythingPage:
    versions: list[StoredVersion]  # the patient (first page), then compartment members
    included: list[StoredVersion]  # supporting resources
    next_cursor: str | None
    warnings: list[Issue] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Step:
    resource_type: str
    link: str  # the compartment parameter; "" for the patient itself


def parse_everything(query: list[tuple[str, str]], strict: bool) -> EverythingQuery:
    """The operation's parameters (from the query string, or a Parameters body turned into pairs).

    Malformed values are a 400 naming the parameter; unknown parameters are a 400 with
    ``Prefer: handling=strict`` and are ignored with a warning otherwise, as search does."""
    values: dict[str, str] = {}
    listed: list[str] = []
    warnings: list[Issue] = []
    links: list[tuple[str, str]] = []
    for name, value in query:
        if name in _IGNORED:
            links.append((name, value))
            continue
        if name not in _OWN:
            message = f"Unknown parameter '{name}' for Patient $everything"
            if strict:
                raise FhirError.of(400, "not-supported", message)
            warnings.append(Issue("warning", "not-supported", message + " (ignored)"))
            continue
        if name == "_type":
            listed += [t.strip() for t in value.split(",") if t.strip()]
        elif name in values:
            raise FhirError.of(400, "value", f"{name} may be given only once", name)
        else:
            values[name] = value
        if name != "_cursor":
            links.append((name, value))
    unknown = [t for t in listed if t not in resource_types()]
    if unknown:
        raise FhirError.of(400, "value", f"_type: '{unknown[0]}' is not an R4 resource type", "_type")
    count = values.get("_count", str(DEFAULT_COUNT))
    if not count.isdigit():
        raise FhirError.of(400, "value", "_count must be a non-negative integer", "_count")
    return EverythingQuery(
        count=min(int(count), MAX_COUNT),
        since=since_instant(values.get("_since")),
        types=frozenset(listed) if listed else None,
        start=_care_date("start", values.get("start")),
        end=_care_date("end", values.get("end")),
        cursor=values.get("_cursor"),
        warnings=tuple(warnings),
        link_params=tuple(links),
    )


class PatientEverything:
    def __init__(self, store: ResourceStore, search: SearchService) -> None:
        self._store = store
        self._search = search

    def page(self, patient_id: str, query: EverythingQuery, base_url: str) -> EverythingPage:
        """One page of the record: 404 for an unknown patient, 410 for a deleted one."""
        patient = self._store.current(COMPARTMENT, patient_id) if is_valid_id(patient_id) else None
        if patient is None:
            raise FhirError.of(404, "not-found", f"{COMPARTMENT}/{patient_id} is not known")
        if patient.deleted:
            raise gone(patient)
        steps = _steps(query.types)
        scope = f"{COMPARTMENT}/{patient_id}/$everything?" + "&".join(
            f"{k}={v}" for k, v in query.link_params
        )
        index, inner = step_position(query.cursor, scope, len(steps))
        found: list[StoredVersion] = []
        next_cursor: str | None = None
        while index < len(steps) and query.count > 0:
            if len(found) == query.count:  # full: the next page starts with this step
                next_cursor = sorting.encode_cursor([index, inner], scope)
                break
            step = steps[index]
            if not step.link:  # the patient itself leads the record
                if query.since is None or patient.last_updated >= query.since:
                    found.append(patient)
                index, inner = index + 1, None
                continue
            request = replace(
                self._request(step, patient_id, query, base_url), count=query.count - len(found), cursor=inner
            )
            page = self._search.page(request)
            earlier = self._earlier_links(steps, index, patient_id, query, base_url)
            found += [
                v
                for v in page.versions
                if v.resource is not None
                and not (step.resource_type == COMPARTMENT and v.id == patient_id)
                and not any(matches(c, parameter_values(c.param, v.resource)) for c in earlier)
            ]
            if page.next_cursor is not None:
                inner = page.next_cursor
            else:
                index, inner = index + 1, None
        return EverythingPage(found, self._supporting(found, query.types), next_cursor, list(query.warnings))

    # -- pieces -------------------------------------------------------------------------------
    @staticmethod
    def _request(step: _Step, patient_id: str, query: EverythingQuery, base_url: str) -> SearchRequest:
        criteria = [(step.link, f"{COMPARTMENT}/{patient_id}")]
        if query.since is not None:
            criteria.append(("_lastUpdated", f"ge{query.since}"))
        date_code = CARE_DATE.get(step.resource_type)
        if date_code is not None:
            bounds = (("ge", query.start), ("le", query.end))
            criteria += [(date_code, prefix + value) for prefix, value in bounds if value]
        return parse_search(step.resource_type, criteria, base_url, strict=True)

    def _earlier_links(
        self, steps: list[_Step], index: int, patient_id: str, query: EverythingQuery, base_url: str
    ) -> list[Criterion]:
        """The link criteria of the same type's earlier steps: a resource they match was returned there."""
        rtype = steps[index].resource_type
        earlier = [s for s in steps[:index] if s.resource_type == rtype and s.link]
        return [self._request(s, patient_id, query, base_url).criteria[0] for s in earlier]

    def _supporting(self, found: list[StoredVersion], types: frozenset[str] | None) -> list[StoredVersion]:
        """The current supporting resources ``found`` refers to: one batched read per type (not one per
        reference parameter, as separate ``_include`` specs would cost)."""
        wanted = {t for t in SUPPORTING_TYPES if types is None or t in types}
        refs: dict[str, dict[str, None]] = {}
        for version in found:
            for param in _supporting_links(version.resource_type):
                for value in parameter_values(param, version.resource or {}):
                    if value.ref_type in wanted and value.ref_id:
                        refs.setdefault(value.ref_type, {})[value.ref_id] = None
        out: list[StoredVersion] = []
        for rtype in sorted(refs):
            current = self._store.current_many(rtype, list(refs[rtype]))
            out += [current[i] for i in refs[rtype] if i in current and current[i].resource is not None]
        return out


def _steps(types: frozenset[str] | None) -> list[_Step]:
    members = compartments()[COMPARTMENT]
    steps = [_Step(COMPARTMENT, "")] if types is None or COMPARTMENT in types else []
    for rtype in sorted(members, key=lambda t: (t != COMPARTMENT, t)):
        if types is None or rtype in types:
            steps += [_Step(rtype, link) for link in members[rtype]]
    return steps


@cache
def _supporting_links(resource_type: str) -> tuple[SearchParameter, ...]:
    """The reference parameters of a type that can point to a supporting type."""
    return tuple(
        param
        for param in parameters(resource_type).values()
        if param.type == "reference" and not set(param.targets).isdisjoint(SUPPORTING_TYPES)
    )


def since_instant(value: str | None) -> str | None:
    """A ``_since`` value (history, $everything) as a normalized instant; 400 naming it if malformed."""
    if value is None:
        return None
    try:
        return format_instant(parse_instant(value))
    except ValueError:
        raise FhirError.of(
            400, "value", "_since must be an instant such as 2024-01-31T10:00:00Z", "_since"
        ) from None


def _care_date(name: str, value: str | None) -> str | None:
    """A FHIR date (or dateTime) for ``start`` / ``end``; checked here so the error names it."""
    if value is None:
        return None
    try:
        date_bounds(value)
    except ValueError:
        raise FhirError.of(400, "value", f"{name} must be a date such as 2024-01-31", name) from None
    return value

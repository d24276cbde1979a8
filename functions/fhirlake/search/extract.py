"""Index values of a resource: every R4 search parameter of its type evaluated and normalized
(the forms are specified in ``fhirlake.search.values``).

How each parameter is evaluated (deterministic; the plan is in the tables, see ``parameters``):

1. Each top-level ``|`` branch of the official expression is either a plain path (``Patient.name``,
   ``(Observation.value as Quantity)``, ``Condition.onset.as(Age)``, ``Observation.subject.where(resolve()
   is Patient)``) walked natively over the JSON dict with its choice elements expanded at build time
   (``valueQuantity``), or anything else (``telecom.where(system='email')``, ``relatedArtifact.where(type=
   ...).resource``, ``Patient.deceased.exists() and ...``), evaluated with fhirpathpy (compiled once per
   process, with ``models["r4"]``). Those three shapes (all the R4 registry has) are evaluated over the
   dict first, giving fhirpathpy's result; a shape fhirpathpy might read differently goes to fhirpathpy.
2. ``.where(resolve() is T)`` cannot resolve without the store: the references are kept when their literal
   type (``T/id``, also at the end of an absolute URL) or ``Reference.type`` is ``T``.
3. The elements found are converted by parameter type and element type (known from the StructureDefinitions
   at build time, or from the element's shape):

   - token: Coding; CodeableConcept (one value per coding, ``text`` = normalized display, plus one text-only
     value for ``CodeableConcept.text`` unless a coding's display already says the same); Identifier
     (``system``/``value``, one value per ``Identifier.type``
     coding for ``:of-type``, ``text`` = type text); ContactPoint (``value``, no system); boolean
     (``true``/``false``); code/string/id/uri primitives (``code`` = the value; for ``code`` elements bound
     to a single-system required value set that system, e.g. administrative-gender, as ``system``).
   - string: string/markdown; HumanName (family, each given/prefix/suffix, text); Address (each line, city,
     district, state, postalCode, country, text): one value per part, ``text`` normalized, ``exact`` as is.
   - reference: Reference (``reference`` without ``/_history/n``, ``ref_type``/``ref_id`` for ``Type/id``
     also at the end of absolute URLs, ``system``/``code_value`` from ``Reference.identifier``);
     canonical/uri (``reference`` = the value, ``|version`` kept; type/id from the URL without version).
     An Attachment (Consent.source-reference) has no reference: skipped.
   - date: date/dateTime/instant (precision range); Period (open ends ``OPEN_LOW``/``OPEN_HIGH``); Timing
     (one range from the earliest to the latest of its events and ``repeat.boundsPeriod``: the spec says
     only the outer limits matter). Free-text ``string``/``Age``/``Range`` onsets are not dates: skipped.
   - number: integer/decimal (implicit precision range, ``normalize.number_bounds``); Range (``number`` None,
     ``number_low``/``number_high`` the range's low/high values, None where open).
   - quantity: Quantity/SimpleQuantity/Age/Duration/Count/Distance (value with precision range, ``system``,
     ``code_value`` = unit code, ``text`` = normalized unit); Money (``system`` urn:iso:std:iso:4217,
     ``code_value`` currency); Range (as for number, units from low or high). SampledData is skipped (it is
     a series, not a quantity).
   - uri: ``uri`` = the value.
   - composite: for each base element, each component's relative path is evaluated on it and converted by
     the component parameter's type; one value per combination (cartesian product). Text-only token values
     (from ``CodeableConcept.text``) are left out of composites: a composite token matches ``system|code``.
4. Values are de-duplicated per parameter (first occurrence order). Contained resources are not indexed.

``index_values`` (every parameter of a type, the write path's hot loop) gives the same values in the same
order as ``parameter_values`` of each parameter in registry order, but from a plan compiled once per type
and deployment configuration: the plain paths of all parameters form one key tree, walked once per
resource (``subject``/``patient``, every ``meta.*`` and ``code``-based parameter share their prefixes), and
only the parameters whose paths found something convert.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Callable, Mapping
from functools import cache, lru_cache
from typing import Any

from fhirlake.fhir.types import resource_types
from fhirlake.search.normalize import (
    OPEN_HIGH,
    OPEN_LOW,
    date_bounds,
    normalize_string,
    number_bounds,
    number_text,
)
from fhirlake.search.parameters import ExpressionPart, SearchParameter, parameters
from fhirlake.search.values import IndexValue

__all__ = ["element_values", "evaluate", "index_values", "parameter_values"]

log = logging.getLogger(__name__)

QUANTITY_TYPES = frozenset(
    {"Quantity", "SimpleQuantity", "MoneyQuantity", "Age", "Count", "Distance", "Duration"}
)
ISO_4217 = "urn:iso:std:iso:4217"
_HISTORY = re.compile(r"/_history/[^/]*$")
_LITERAL = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})$")

Out = list[IndexValue]
# (parameter code, element, element type or None, implicit system, output): appends the element's values
Converter = Callable[[str, Any, str | None, str | None, Out], None]

# IndexValue is a frozen 18-field dataclass: its __init__ (~6 us) dominated extraction time. Values are
# immutable and repeat a lot across resources (codes, units, statuses, references), so they are built
# through a bounded cache (~0.5 us on a hit).
_iv = lru_cache(maxsize=1 << 16)(IndexValue)


# The most frequent forms with positional arguments: a cache key of keyword arguments costs ~3x more.
@lru_cache(maxsize=1 << 16)
def _token_value(code: str, text: str | None, system: Any, value: Any) -> IndexValue:
    return IndexValue(code, "token", text=text, system=system, code_value=value)


@lru_cache(maxsize=1 << 16)
def _date_value(code: str, low: str, high: str) -> IndexValue:
    return IndexValue(code, "date", low=low, high=high)


@lru_cache(maxsize=1 << 16)
def _string_value(code: str, text: str) -> IndexValue:
    return IndexValue(code, "string", text=normalize_string(text), exact=text)


@lru_cache(maxsize=1 << 16)
def _uri_value(code: str, uri: str) -> IndexValue:
    return IndexValue(code, "uri", uri=uri)


# ---------------------------------------------------------------------------------------------------------
# Evaluation


def _walk(root: Any, keys: tuple[str, ...]) -> list[Any]:
    """The values at a JSON key path, lists flattened at every step, nulls dropped."""
    if len(keys) == 1 and type(root) is dict:  # most paths: one member of the resource
        value = root.get(keys[0])
        if value is None:
            return []
        return [v for v in value if v is not None] if type(value) is list else [value]
    current = [root]
    for key in keys:
        nxt: list[Any] = []
        for node in current:
            if type(node) is not dict:
                continue
            value = node.get(key)
            if value is None:
                continue
            if type(value) is list:
                nxt.extend(v for v in value if v is not None)
            else:
                nxt.append(value)
        if not nxt:
            return nxt
        current = nxt
    return current


@cache
def _compiled(expression: str) -> Callable[[Any], list[Any]]:
    import fhirpathpy
    from fhirpathpy.models import models

    return fhirpathpy.compile(expression, model=models["r4"])


def evaluate(sp: SearchParameter, resource: dict[str, Any]) -> list[tuple[Any, str | None, str | None]]:
    """The elements a parameter's expression selects: (element, FHIR type or None, implicit system).

    Reference filters of ``.where(resolve() is T)`` are applied. For composites: the base elements.
    """
    out: list[tuple[Any, str | None, str | None]] = []
    for part in sp.parts:
        out.extend(_part_elements(part, resource))
    return out


Element = tuple[Any, str | None, str | None]  # (element, FHIR type or None, implicit system)


def _part_elements(part: ExpressionPart, resource: dict[str, Any]) -> list[Element]:
    if part.alternatives is not None:
        found = [
            (v, alt.element_type, alt.implicit_system)
            for alt in part.alternatives
            for v in _walk(resource, alt.keys)
        ]
    else:
        native = _native(part.expression)
        selected = native(resource) if native is not None else None
        if selected is None:
            selected = _compiled(part.expression)(resource)
        found = [(v, part.hint, None) for v in selected]
    if part.resolve_type is not None:
        found = [f for f in found if _reference_type(f[0]) == part.resolve_type]
    return found


# The non-path expressions of R4 whose shape is simple enough to evaluate over the dict: fhirpathpy costs
# ~100-200 us per call (Patient/Practitioner/PractitionerRole email and phone, Patient.deceased), the dict
# walk ~1 us. Each evaluator returns what fhirpathpy returns, or None for any shape it does not handle
# exactly as fhirpathpy does (invalid data: a single element where a list belongs, nulls, non-string
# codes, primitive extensions); fhirpathpy then decides.
_FILTERED = re.compile(
    r"([A-Z][A-Za-z]+)\.([a-z][A-Za-z]*)\.where\(([a-z][A-Za-z]*)='([^'\\]*)'\)(?:\.([a-z][A-Za-z]*))?"
)
_DECEASED = "Patient.deceased.exists() and Patient.deceased != false"
Native = Callable[[dict[str, Any]], list[Any] | None]


@cache
def _native(expression: str) -> Native | None:
    """A dict evaluator of an expression fhirpathpy would otherwise evaluate; None if there is none."""
    if expression == _DECEASED:
        return _patient_deceased
    m = _FILTERED.fullmatch(expression)
    if m is None:
        return None
    rtype, member, key, literal, select = m.groups()
    return lambda resource: _filtered(resource, rtype, member, key, literal, select)


def _filtered(
    resource: dict[str, Any], rtype: str, member: str, key: str, literal: str, select: str | None
) -> list[Any] | None:
    """``T.member.where(key='literal')[.select]`` (``telecom.where(system='email')``, ``relatedArtifact
    .where(type='depends-on').resource``): the repeating complex ``member``'s elements whose string ``key``
    is ``literal``, or their string ``select``."""
    if resource.get("resourceType") != rtype:
        return None
    elements = resource.get(member)
    if elements is None:
        return []
    if type(elements) is not list:
        return None
    out: list[Any] = []
    for element in elements:
        if type(element) is not dict or f"_{key}" in element:
            return None
        if key not in element:
            continue
        value = element[key]
        if type(value) is not str:
            return None
        if value != literal:
            continue
        if select is None:
            out.append(element)
            continue
        if f"_{select}" in element:
            return None
        if select in element:
            selected = element[select]
            if type(selected) is not str:
                return None
            out.append(selected)
    return out


def _patient_deceased(resource: dict[str, Any]) -> list[Any] | None:
    """``Patient.deceased.exists() and Patient.deceased != false``: false without ``deceased[x]``, the
    boolean itself, true for a dateTime."""
    if resource.get("resourceType") != "Patient" or "_deceasedBoolean" in resource:
        return None
    if "_deceasedDateTime" in resource:
        return None
    flag, moment = resource.get("deceasedBoolean"), resource.get("deceasedDateTime")
    if moment is None:
        return [flag] if type(flag) is bool else [False] if flag is None else None
    return [True] if type(moment) is str and flag is None else None


# ---------------------------------------------------------------------------------------------------------
# Conversion per parameter type


@lru_cache(maxsize=1 << 16)
def _literal_type(literal: str) -> str | None:
    """The resource type of a literal reference (``T/id``, also at the end of an absolute URL)."""
    m = _LITERAL.search(_HISTORY.sub("", literal))
    return m.group(1) if m and m.group(1) in resource_types() else None


def _reference_type(ref: Any) -> str | None:
    if type(ref) is dict:
        literal = ref.get("reference")
        if isinstance(literal, str):
            found = _literal_type(literal)
            if found is not None:
                return found
        declared = ref.get("type")
        return declared if isinstance(declared, str) else None
    if isinstance(ref, str):
        m = _LITERAL.search(ref.split("|", 1)[0])
        if m and m.group(1) in resource_types():
            return m.group(1)
    return None


def _text(value: Any) -> str | None:
    return normalize_string(value) if isinstance(value, str) and value else None


def _shape(value: Any) -> str | None:
    """Guess the FHIR type of an element from its JSON shape (for expressions without a known type)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int | float) or (number_text(value) is not None and not isinstance(value, dict)):
        return "decimal"
    if type(value) is not dict:
        return None
    if "coding" in value:
        return "CodeableConcept"
    if "reference" in value or ("identifier" in value and "display" in value):
        return "Reference"
    if "start" in value or "end" in value:
        return "Period"
    if "low" in value or "high" in value:
        return "Range"
    if "family" in value or "given" in value:
        return "HumanName"
    if "line" in value or "city" in value or "postalCode" in value:
        return "Address"
    if "value" in value and ("unit" in value or "comparator" in value):
        return "Quantity"
    if "currency" in value:
        return "Money"
    if (
        "value" in value
        and "system" in value
        and value.get("system") in ("phone", "fax", "email", "pager", "url", "sms", "other")
    ):
        return "ContactPoint"
    if "value" in value:
        return "Identifier"
    if "code" in value or "system" in value:
        return "Coding"
    if "event" in value or "repeat" in value:
        return "Timing"
    return None


def _coding(code: str, c: Any, out: Out) -> None:
    if type(c) is not dict:
        return
    system, value, display = c.get("system"), c.get("code"), c.get("display")
    if not isinstance(display, str):  # as _text: only a non-empty string is a display
        display = None
    if system is None and value is None and not display:
        return
    out.append(_coding_value(code, system, value, display))


@lru_cache(maxsize=1 << 16)
def _coding_value(code: str, system: Any, value: Any, display: str | None) -> IndexValue:
    """A Coding's value, cached on the raw display: one lookup instead of normalizing it and then looking
    the value up."""
    return _token_value(code, _text(display), system, value)


def _codeable_concept(code: str, v: Any, etype: str | None, implicit: str | None, out: Out) -> None:
    if type(v) is not dict:
        return
    start = len(out)
    for c in v.get("coding") or ():
        _coding(code, c, out)
    text = _text(v.get("text"))
    if text and all(iv.text != text for iv in out[start:]):
        out.append(_iv(code, "token", text=text))


def _coding_token(code: str, v: Any, etype: str | None, implicit: str | None, out: Out) -> None:
    _coding(code, v, out)


def _identifier(code: str, v: Any, etype: str | None, implicit: str | None, out: Out) -> None:
    if type(v) is not dict:
        return
    system, value = v.get("system"), v.get("value")
    itype = v.get("type") if type(v.get("type")) is dict else {}
    text = _text(itype.get("text"))
    if system is None and value is None:
        return
    typed = False
    for c in itype.get("coding") or ():
        if type(c) is dict and (c.get("system") or c.get("code")):
            typed = True
            out.append(
                _iv(
                    code,
                    "token",
                    text=text,
                    system=system,
                    code_value=value,
                    type_system=c.get("system"),
                    type_code=c.get("code"),
                )
            )
    if not typed:
        out.append(_token_value(code, text, system, value))


def _contact_point(code: str, v: Any, etype: str | None, implicit: str | None, out: Out) -> None:
    if type(v) is dict and isinstance(v.get("value"), str):
        out.append(_token_value(code, None, None, v["value"]))


# Token conversions of the complex types; the plan binds them per path when the element type is known.
_TOKEN_TYPES: dict[str, Converter] = {
    "CodeableConcept": _codeable_concept,
    "Coding": _coding_token,
    "Identifier": _identifier,
    "ContactPoint": _contact_point,
}


def _token(code: str, v: Any, etype: str | None, implicit: str | None, out: Out) -> None:
    if etype is None or etype in ("Element", "BackboneElement"):
        etype = _shape(v)
    complex_type = _TOKEN_TYPES.get(etype)  # type: ignore[arg-type]
    if complex_type is not None:
        complex_type(code, v, etype, implicit, out)
    elif etype == "boolean" or isinstance(v, bool):
        if isinstance(v, bool):
            out.append(_token_value(code, None, None, "true" if v else "false"))
    elif isinstance(v, str):
        out.append(_token_value(code, None, implicit, v))
    elif isinstance(v, int):
        out.append(_token_value(code, None, None, str(v)))


_NAME_PARTS = ("family", "given", "prefix", "suffix", "text")
_ADDRESS_PARTS = ("line", "city", "district", "state", "postalCode", "country", "text")


def _string(code: str, v: Any, etype: str | None, implicit: str | None, out: Out) -> None:
    if isinstance(v, str):
        if v:
            out.append(_string_value(code, v))
        return
    if type(v) is not dict:
        return
    if etype not in ("HumanName", "Address"):
        etype = _shape(v)
    keys = _NAME_PARTS if etype == "HumanName" else _ADDRESS_PARTS if etype == "Address" else ()
    for key in keys:
        part = v.get(key)
        for s in part if type(part) is list else (part,):
            if isinstance(s, str) and s:
                out.append(_string_value(code, s))


def _literal(text: str) -> tuple[str | None, str | None]:
    m = _LITERAL.search(text)
    if m and m.group(1) in resource_types():
        return m.group(1), m.group(2)
    return None, None


def _reference(code: str, v: Any, etype: str | None, implicit: str | None, out: Out) -> None:
    if isinstance(v, str):  # canonical / uri / url
        if v:
            rtype, rid = _literal(v.split("|", 1)[0])
            out.append(_iv(code, "reference", reference=v, ref_type=rtype, ref_id=rid))
        return
    if type(v) is not dict or etype == "Attachment":
        return
    literal = v.get("reference")
    ident = v.get("identifier")
    if type(ident) is not dict and isinstance(literal, str) and literal:  # most: a literal reference only
        out.append(_literal_reference(code, literal))
        return
    reference = rtype = rid = None
    if isinstance(literal, str) and literal:
        reference = _HISTORY.sub("", literal)
        rtype, rid = _literal(reference)
    system = value = None
    if type(ident) is dict:
        system, value = ident.get("system"), ident.get("value")
    if reference is None and system is None and value is None:
        return
    out.append(
        _iv(
            code,
            "reference",
            reference=reference,
            ref_type=rtype,
            ref_id=rid,
            system=system,
            code_value=value,
        )
    )


@lru_cache(maxsize=1 << 16)
def _literal_reference(code: str, literal: str) -> IndexValue:
    """The value of a Reference with a (non-empty) literal ``reference`` and no identifier; cached: the same
    patients, encounters and practitioners are referenced by many resources."""
    reference = _HISTORY.sub("", literal)
    rtype, rid = _literal(reference)
    return IndexValue(code, "reference", reference=reference, ref_type=rtype, ref_id=rid)


def _bounds(text: Any) -> tuple[str, str] | None:
    if not isinstance(text, str):
        return None
    try:
        return date_bounds(text)
    except ValueError:
        return None


def _date(code: str, v: Any, etype: str | None, implicit: str | None, out: Out) -> None:
    if isinstance(v, str):
        if etype in (None, "date", "dateTime", "instant"):
            b = _bounds(v)
            if b:
                out.append(_date_value(code, b[0], b[1]))
        return
    if type(v) is not dict:
        return
    if etype not in ("Period", "Timing"):
        etype = _shape(v)
    if etype == "Period":
        start, end = _bounds(v.get("start")), _bounds(v.get("end"))
        if start or end:
            out.append(_date_value(code, start[0] if start else OPEN_LOW, end[1] if end else OPEN_HIGH))
    elif etype == "Timing":
        lows: list[str] = []
        highs: list[str] = []
        for event in v.get("event") or ():
            b = _bounds(event)
            if b:
                lows.append(b[0])
                highs.append(b[1])
        repeat = v.get("repeat")
        period = repeat.get("boundsPeriod") if type(repeat) is dict else None
        if type(period) is dict:
            start, end = _bounds(period.get("start")), _bounds(period.get("end"))
            if start or end:
                lows.append(start[0] if start else OPEN_LOW)
                highs.append(end[1] if end else OPEN_HIGH)
        if lows:
            out.append(_iv(code, "date", low=min(lows), high=max(highs)))


def _decimal(value: Any) -> Any:
    text = number_text(value)
    if text is None:
        return None
    try:
        return number_bounds(text)
    except ValueError:
        return None


def _range_bounds(v: dict[str, Any]) -> tuple[Any, Any, dict[str, Any]]:
    low, high = v.get("low"), v.get("high")
    low = low if type(low) is dict else {}
    high = high if type(high) is dict else {}
    lo, hi = _decimal(low.get("value")), _decimal(high.get("value"))
    return (lo[0] if lo else None), (hi[0] if hi else None), (low if "value" in low else high)


def _number(code: str, v: Any, etype: str | None, implicit: str | None, out: Out) -> None:
    if type(v) is dict:
        if etype == "Range" or _shape(v) == "Range":
            lo, hi, _unit = _range_bounds(v)
            if lo is not None or hi is not None:
                out.append(_iv(code, "number", number_low=lo, number_high=hi))
        return
    b = _decimal(v)
    if b:
        out.append(_iv(code, "number", number=b[0], number_low=b[1], number_high=b[2]))


def _quantity(code: str, v: Any, etype: str | None, implicit: str | None, out: Out) -> None:
    if type(v) is not dict:
        if etype in ("decimal", "integer", None):  # a bare number (no unit)
            b = _decimal(v)
            if b:
                out.append(_iv(code, "quantity", number=b[0], number_low=b[1], number_high=b[2]))
        return
    if etype is None or (etype not in QUANTITY_TYPES and etype not in ("Money", "Range", "SampledData")):
        etype = _shape(v)
    if etype == "Range":
        lo, hi, unit = _range_bounds(v)
        if lo is not None or hi is not None:
            out.append(
                _iv(
                    code,
                    "quantity",
                    number_low=lo,
                    number_high=hi,
                    system=unit.get("system"),
                    code_value=unit.get("code"),
                    text=_text(unit.get("unit")),
                )
            )
        return
    if etype == "Money":
        b = _decimal(v.get("value"))
        if b:
            currency = v.get("currency")
            out.append(
                _iv(
                    code,
                    "quantity",
                    number=b[0],
                    number_low=b[1],
                    number_high=b[2],
                    system=ISO_4217 if currency else None,
                    code_value=currency,
                )
            )
        return
    if etype in QUANTITY_TYPES:
        b = _decimal(v.get("value"))
        if b:
            out.append(
                _iv(
                    code,
                    "quantity",
                    number=b[0],
                    number_low=b[1],
                    number_high=b[2],
                    system=v.get("system"),
                    code_value=v.get("code"),
                    text=_text(v.get("unit")),
                )
            )


def _uri(code: str, v: Any, etype: str | None, implicit: str | None, out: Out) -> None:
    if isinstance(v, str) and v:
        out.append(_iv(code, "uri", uri=v))


CONVERTERS: dict[str, Converter] = {
    "token": _token,
    "string": _string,
    "reference": _reference,
    "date": _date,
    "number": _number,
    "quantity": _quantity,
    "uri": _uri,
}


def element_values(
    code: str,
    param_type: str,
    element: Any,
    element_type: str | None = None,
    implicit_system: str | None = None,
) -> list[IndexValue]:
    """The IndexValues of one FHIR element for a parameter of ``param_type`` (not composite)."""
    out: Out = []
    CONVERTERS[param_type](code, element, element_type, implicit_system, out)
    return out


def _composite(sp: SearchParameter, resource: dict[str, Any], out: Out) -> None:
    for part in sp.parts:
        for alt in part.alternatives or ():
            for base in _walk(resource, alt.keys):
                per_component: list[list[IndexValue]] = []
                for ccode, ctype, calts in zip(
                    (c[0] for c in sp.components), sp.component_types, alt.components, strict=True
                ):
                    values: Out = []
                    convert = CONVERTERS[ctype]
                    for calt in calts:
                        found = (
                            _walk(resource, calt.keys[1:])
                            if calt.keys[:1] == ("%resource",)
                            else _walk(base, calt.keys)
                        )
                        for v in found:
                            convert(ccode, v, calt.element_type, calt.implicit_system, values)
                    if ctype == "token":  # a text-only token (CodeableConcept.text) cannot match system|code
                        values = [v for v in values if v.code_value is not None or v.system is not None]
                    if not values:
                        break
                    per_component.append(list(dict.fromkeys(values)))
                else:
                    for combo in itertools.product(*per_component):
                        out.append(_iv(sp.code, "composite", components=combo))


def parameter_values(sp: SearchParameter, resource: dict[str, Any]) -> list[IndexValue]:
    """The de-duplicated IndexValues of one parameter for a resource."""
    out: Out = []
    if sp.type == "composite":
        _composite(sp, resource, out)
    else:
        convert = CONVERTERS[sp.type]
        code = sp.code
        for part in sp.parts:
            if part.alternatives is None:
                for element, etype, implicit in _part_elements(part, resource):
                    convert(code, element, etype, implicit, out)
                continue
            wanted = part.resolve_type  # as evaluate(), without building its tuples (the hot path)
            for alt in part.alternatives:
                for element in _walk(resource, alt.keys):
                    if wanted is None or _reference_type(element) == wanted:
                        convert(code, element, alt.element_type, alt.implicit_system, out)
    return list(dict.fromkeys(out)) if len(out) > 1 else out


# ---------------------------------------------------------------------------------------------------------
# index_values: every parameter of a type, compiled once per parameter table


class _PathNode:
    """A JSON key path that some parameters read: the slot of the per-resource table that receives the
    values found there (None for a prefix only), the parameters reading it, and the paths one key longer."""

    __slots__ = ("children", "readers", "slot")

    def __init__(self) -> None:
        self.slot: int | None = None
        self.readers: set[int] = set()  # the positions of the parameters that read this path
        self.children: dict[str, _PathNode] = {}


class _NativeParameter:
    """A parameter whose parts are all plain paths: converts the values the walk left in its slots."""

    __slots__ = ("alternatives", "sp")

    def __init__(self, sp: SearchParameter, alternatives: list[tuple[int, str, str | None, str | None]]):
        self.sp = sp
        # (slot, converter, element type, implicit system, resolve type), in the parameter's part/alternative
        # order; the converter is bound to the element type where one is known (no type dispatch per value)
        self.alternatives = tuple(
            (slot, _converter(sp.type, etype), etype, implicit, resolve)
            for slot, etype, implicit, resolve in alternatives
        )


def _converter(param_type: str, element_type: str | None) -> Converter:
    """The conversion of a parameter type's values of one element type: the type's converter or, for the
    frequent element types, the branch of it that element type takes."""
    if param_type == "token":
        return _TOKEN_TYPES.get(element_type, _token)  # type: ignore[arg-type]
    return CONVERTERS[param_type]


class _GenericParameter:
    """A composite, or a parameter with a part only fhirpathpy evaluates: :func:`parameter_values`, skipped
    when every path starts at a key the resource does not have (``first_keys`` None: always evaluated)."""

    __slots__ = ("first_keys", "sp")

    def __init__(self, sp: SearchParameter, first_keys: frozenset[str] | None):
        self.sp = sp
        self.first_keys = first_keys

    def values(self, resource: dict[str, Any]) -> Out:
        if self.first_keys is not None and self.first_keys.isdisjoint(resource):
            return []
        return parameter_values(self.sp, resource)


class _TypePlan:
    """All parameters of one type: a key-path tree walked once per resource (parameters that share a path or
    a prefix, e.g. ``subject``/``patient`` or every ``meta.*``, share its walk), then each parameter in
    registry order converting what the walk found for its paths."""

    __slots__ = ("generic", "parameters", "roots", "slot_count")

    def __init__(self, params: Mapping[str, SearchParameter]) -> None:
        self.roots: dict[str, _PathNode] = {}
        self.slot_count = 0
        self.parameters: list[_NativeParameter | _GenericParameter] = []
        for sp in params.values():
            alternatives = [(alt, part.resolve_type) for part in sp.parts for alt in part.alternatives or ()]
            native = all(part.alternatives is not None for part in sp.parts)
            if sp.type == "composite" or not native or any(not alt.keys for alt, _ in alternatives):
                first_keys = frozenset(alt.keys[0] for alt, _ in alternatives if alt.keys)
                whole = not native or any(not alt.keys for alt, _ in alternatives)
                self.parameters.append(_GenericParameter(sp, None if whole else first_keys))
                continue
            position = len(self.parameters)
            self.parameters.append(
                _NativeParameter(
                    sp,
                    [
                        (
                            self._slot(alt.keys, position),
                            alt.element_type,
                            alt.implicit_system,
                            resolve,
                        )
                        for alt, resolve in alternatives
                    ],
                )
            )
        self.generic = frozenset(
            i for i, param in enumerate(self.parameters) if type(param) is _GenericParameter
        )

    def _slot(self, keys: tuple[str, ...], reader: int) -> int:
        """The slot of a path (one per distinct path), its nodes added to the tree."""
        level = self.roots
        for key in keys[:-1]:
            level = level.setdefault(key, _PathNode()).children
        node = level.setdefault(keys[-1], _PathNode())
        node.readers.add(reader)
        if node.slot is None:
            node.slot = self.slot_count
            self.slot_count += 1
        return node.slot

    def walk(self, resource: dict[str, Any]) -> tuple[list[list[Any] | None], set[int]]:
        """The values at each path (as ``_walk`` finds them; None where there are none) by slot, and the
        positions of the parameters with something to convert (the generic ones always)."""
        found: list[list[Any] | None] = [None] * self.slot_count
        touched = set(self.generic)
        roots = self.roots
        for key, value in resource.items():  # the resource's keys: fewer than the paths' first keys
            node = roots.get(key)
            if node is None or value is None:
                continue
            # the member's values as _walk steps to them (inlined: a call per member was ~3 % of the time)
            if type(value) is not list:
                _reached(node, [value], found, touched)
                continue
            if None in value:
                value = [v for v in value if v is not None]
            if value:
                _reached(node, value, found, touched)
        return found, touched


def _reached(node: _PathNode, values: list[Any], found: list[list[Any] | None], touched: set[int]) -> None:
    if node.slot is not None:
        found[node.slot] = values
        touched |= node.readers
    for key, child in node.children.items():
        nxt: list[Any] = []
        for v in values:
            if type(v) is dict:
                value = v.get(key)
                if value is None:
                    continue
                if type(value) is not list:
                    nxt.append(value)
                elif None in value:
                    nxt += [item for item in value if item is not None]
                else:
                    nxt += value
        if nxt:
            _reached(child, nxt, found, touched)


_PLANS: dict[int, tuple[Mapping[str, SearchParameter], _TypePlan]] = {}


def _type_plan(params: Mapping[str, SearchParameter]) -> _TypePlan:
    """The compiled plan of a parameter table, built once per table (the registry caches its tables per
    type and deployment configuration, so the mapping's identity is the key)."""
    found = _PLANS.get(id(params))
    if found is not None and found[0] is params:
        return found[1]
    plan = _TypePlan(params)
    _PLANS[id(params)] = (params, plan)
    return plan


def index_values(resource: dict[str, Any], *, strict: bool = False) -> list[IndexValue]:
    """All IndexValues of a resource, for every supported parameter of its type: the same values, in the
    same order, as :func:`parameter_values` of each parameter in registry order.

    A failure inside one parameter (which valid R4 never triggers) is logged and that parameter skipped,
    unless ``strict``. ValueError if ``resourceType`` is not an R4 resource type.
    """
    rtype = resource.get("resourceType") if isinstance(resource, dict) else None
    if not isinstance(rtype, str):
        raise ValueError("not a FHIR resource (no resourceType)")
    try:
        params = parameters(rtype)
    except KeyError:
        raise ValueError(f"not an R4 resource type: {rtype!r}") from None
    plan = _type_plan(params)
    found, touched = plan.walk(resource)
    out: Out = []
    for position in sorted(touched):
        param = plan.parameters[position]
        try:
            if type(param) is _GenericParameter:
                out.extend(param.values(resource))
                continue
            values: Out = []  # inlined (not a method of the parameter): the hot loop of every write
            code = param.sp.code
            for slot, convert, etype, implicit, wanted in param.alternatives:
                elements = found[slot]
                if elements is None:
                    continue
                for element in elements:
                    if wanted is None or _reference_type(element) == wanted:
                        convert(code, element, etype, implicit, values)
            out.extend(dict.fromkeys(values) if len(values) > 1 else values)
        except Exception:
            if strict:
                raise
            log.warning("search parameter %s.%s could not be evaluated", rtype, param.sp.code, exc_info=True)
    return out

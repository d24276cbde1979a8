"""Search requests: parsing the query string (search.html#syntax) and the matching rules of every
parameter type, evaluated over a resource's :class:`~fhirlake.search.values.IndexValue`s.

The index narrows candidates; these rules decide. A candidate is a match only if :func:`matches` says so
against its *current* body, which is what makes stale or premature index entries harmless.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache

from fhirlake.fhir.outcome import FhirError, Issue
from fhirlake.search.normalize import date_bounds, format_instant, normalize_string, number_bounds
from fhirlake.search.parameters import SearchParameter, parameters, unsupported
from fhirlake.search.terminology import subsumption, value_set_codes
from fhirlake.search.values import IndexValue

DEFAULT_COUNT = 50
MAX_COUNT = 1000
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
# Result parameters fhirlake implements; others are refused (501) rather than silently ignored.
RESULT_PARAMETERS = {"_count", "_total", "_format", "_pretty", "_cursor", "_summary", "_elements"}
NOT_YET = {"_contained", "_containedType", "_list", "_filter", "_query", "_text", "_content"}
MODIFIERS = {
    "string": {"exact", "contains", "missing"},
    "token": {"text", "not", "of-type", "missing", "in", "not-in", "above", "below"},
    "reference": {"identifier", "missing"},  # plus :{Type}
    "date": {"missing"},
    "number": {"missing"},
    "quantity": {"missing"},
    "uri": {"below", "above", "missing"},
}
_SPLIT_COMMA = re.compile(r"(?<!\\),")
_SPLIT_PIPE = re.compile(r"(?<!\\)\|")
_SPLIT_DOLLAR = re.compile(r"(?<!\\)\$")


def _unescape(text: str) -> str:
    return text.replace("\\,", ",").replace("\\|", "|").replace("\\$", "$").replace("\\\\", "\\")


@dataclass(frozen=True, slots=True)
class SearchValue:
    raw: str
    prefix: str = "eq"
    text: str | None = None  # normalized string
    system: str | None = None  # token / quantity / identifier system ("" = explicitly none)
    code: str | None = None  # token code / quantity unit
    type_system: str | None = None
    type_code: str | None = None
    ref_type: str | None = None
    ref_id: str | None = None
    reference: str | None = None
    low: str | None = None
    high: str | None = None
    number: Decimal | None = None
    number_low: Decimal | None = None
    number_high: Decimal | None = None
    # token :in/:not-in/:above/:below: the (system, code) pairs the value stands for
    codes: frozenset[tuple[str, str]] | None = None
    components: tuple[SearchValue, ...] = ()  # composite: one value per component, in definition order


@dataclass(frozen=True, slots=True)
class Criterion:
    code: str
    param: SearchParameter
    modifier: str | None
    values: tuple[SearchValue, ...]  # OR

    @property
    def missing(self) -> bool | None:
        if self.modifier != "missing":
            return None
        return self.values[0].raw == "true"


@dataclass
class SearchRequest:
    resource_type: str
    criteria: list[Criterion]
    count: int = DEFAULT_COUNT
    total: str = "none"
    cursor: str | None = None
    summary: str | None = None
    elements: tuple[str, ...] = ()
    warnings: list[Issue] = field(default_factory=list)
    # The query string to repeat in paging links (without _cursor).
    link_params: list[tuple[str, str]] = field(default_factory=list)


def parse_search(
    resource_type: str, query: list[tuple[str, str]], base_url: str, strict: bool
) -> SearchRequest:
    """Parse a search query; 400 for malformed values, 501 for known but unimplemented features.

    Unknown parameters are an error with ``Prefer: handling=strict`` and are ignored (and reported in the
    Bundle's OperationOutcome) otherwise, as search.html#errors describes.
    """
    known = parameters(resource_type)
    request = SearchRequest(resource_type, [])
    for name, value in query:
        base_name, _, modifier = name.partition(":")
        if base_name in RESULT_PARAMETERS:
            _result_parameter(request, base_name, value)
            if base_name != "_cursor":
                request.link_params.append((name, value))
            continue
        if base_name == "_type":
            raise FhirError.of(400, "value", "_type is a parameter of system-level search ([base]?_type=...)")
        if base_name in NOT_YET or "." in base_name or base_name in unsupported(resource_type):
            raise FhirError.of(501, "not-supported", f"Search parameter '{base_name}' is not supported yet")
        param = known.get(base_name)
        if param is None:
            message = f"Unknown search parameter '{base_name}' for {resource_type}"
            if strict:
                raise FhirError.of(400, "not-found", message)
            request.warnings.append(Issue("warning", "not-found", message + " (ignored)"))
            continue
        request.criteria.append(_criterion(resource_type, param, modifier or None, value, base_url))
        request.link_params.append((name, value))
    return request


def common_parameters(resource_types: Iterable[str]) -> frozenset[str]:
    """The parameter codes every one of ``resource_types`` has, with the same type (system search,
    search.html#all: "parameters common to all types listed can be used")."""
    shared: dict[str, str] | None = None
    for rtype in resource_types:
        own = {code: p.type for code, p in parameters(rtype).items()}
        shared = own if shared is None else {c: t for c, t in shared.items() if own.get(c) == t}
    return frozenset(shared or ())


def _result_parameter(request: SearchRequest, name: str, value: str) -> None:
    if name == "_count":
        if not value.isdigit():
            raise FhirError.of(400, "value", "_count must be a non-negative integer")
        request.count = min(int(value), MAX_COUNT)
    elif name == "_total":
        if value not in ("none", "estimate", "accurate"):
            raise FhirError.of(400, "value", "_total must be none, estimate or accurate")
        request.total = value
    elif name == "_cursor":
        request.cursor = value
    elif name == "_summary":
        if value not in ("true", "false", "text", "data", "count"):
            raise FhirError.of(400, "value", "_summary must be true, false, text, data or count")
        request.summary = None if value == "false" else value
    elif name == "_elements":
        request.elements = tuple(e.strip() for e in value.split(",") if e.strip())


def _criterion(
    rtype: str, param: SearchParameter, modifier: str | None, value: str, base_url: str
) -> Criterion:
    allowed = MODIFIERS.get(param.type, {"missing"})
    type_modifier = param.type == "reference" and modifier is not None and modifier[:1].isupper()
    if modifier is not None and modifier not in allowed and not type_modifier:
        if modifier == "iterate":
            raise FhirError.of(
                501, "not-supported", f"Modifier :{modifier} is not supported yet on {param.code}"
            )
        raise FhirError.of(
            400, "value", f"Modifier :{modifier} is not valid on {param.type} parameter {param.code}"
        )
    if modifier == "missing":
        if value not in ("true", "false"):
            raise FhirError.of(400, "value", f"{param.code}:missing must be true or false")
        return Criterion(param.code, param, modifier, (SearchValue(value),))
    raw_values = [v for v in _SPLIT_COMMA.split(value)]
    if not any(raw_values):
        raise FhirError.of(400, "value", f"Search parameter {param.code} has no value")
    try:
        parsed = tuple(_value(param, modifier, v, base_url) for v in raw_values if v != "")
    except ValueError as exc:
        raise FhirError.of(
            400, "value", f"Invalid value for {rtype} search parameter {param.code}: {exc}"
        ) from None
    return Criterion(param.code, param, modifier, parsed)


def _split_prefix(param: SearchParameter, raw: str) -> tuple[str, str]:
    if param.type in ("date", "number", "quantity") and raw[:2] in PREFIXES and not raw[:2].isdigit():
        return raw[:2], raw[2:]
    return "eq", raw


def _value(param: SearchParameter, modifier: str | None, raw: str, base_url: str) -> SearchValue:
    kind = param.type
    if kind == "composite":
        return _composite_value(param, raw, base_url)
    if kind == "string":
        return SearchValue(
            raw, text=normalize_string(_unescape(raw)) if modifier != "exact" else _unescape(raw)
        )
    if kind == "uri":
        return SearchValue(raw, reference=_unescape(raw))
    if kind == "token":
        if modifier == "text":
            return SearchValue(raw, text=normalize_string(_unescape(raw)))
        if modifier in ("in", "not-in"):  # the value set's canonical URL (a "|version" is part of it)
            return SearchValue(raw, codes=value_set_codes(_unescape(raw)))
        parts = [_unescape(p) for p in _SPLIT_PIPE.split(raw)]
        if modifier in ("above", "below"):
            if len(parts) > 2 or not parts[-1]:
                raise ValueError("expected [system|]code")
            system = parts[0] or None if len(parts) == 2 else None
            return SearchValue(raw, codes=subsumption(system, parts[-1], below=modifier == "below"))
        if modifier == "of-type":
            if len(parts) != 3:
                raise ValueError("expected system|code|value")
            return SearchValue(raw, type_system=parts[0], type_code=parts[1], code=parts[2])
        if len(parts) == 1:
            return SearchValue(raw, code=parts[0])
        if len(parts) == 2:
            return SearchValue(raw, system=parts[0], code=parts[1] or None)
        raise ValueError("too many '|'")
    if kind == "reference":
        if modifier == "identifier":
            parts = [_unescape(p) for p in _SPLIT_PIPE.split(raw)]
            return SearchValue(raw, system=parts[0] if len(parts) == 2 else None, code=parts[-1])
        ref = _unescape(raw)
        if base_url and ref.startswith(base_url + "/"):
            ref = ref[len(base_url) + 1 :]
        ref = re.sub(r"/_history/[^/]+$", "", ref)
        segments = ref.split("/")
        if modifier and modifier[:1].isupper():
            return SearchValue(
                raw, ref_type=modifier, ref_id=segments[-1], reference=f"{modifier}/{segments[-1]}"
            )
        if "://" in ref or ref.startswith(("urn:", "#")):  # a URL, or a contained reference: as written
            return SearchValue(raw, reference=ref)
        if len(segments) == 2:
            return SearchValue(raw, ref_type=segments[0], ref_id=segments[1], reference=ref)
        if len(segments) == 1:
            return SearchValue(raw, ref_id=segments[0])
        raise ValueError("expected [type]/[id], [id] or a URL")
    prefix, rest = _split_prefix(param, raw)
    if kind == "date":
        low, high = date_bounds(rest)
        return SearchValue(raw, prefix=prefix, low=low, high=high)
    if kind == "number":
        number, low, high = number_bounds(rest)
        return SearchValue(raw, prefix=prefix, number=number, number_low=low, number_high=high)
    if kind == "quantity":
        parts = [_unescape(p) for p in _SPLIT_PIPE.split(rest)]
        if len(parts) not in (1, 3):
            raise ValueError("expected number or number|system|code")
        number, low, high = number_bounds(parts[0])
        system = parts[1] if len(parts) == 3 else None
        code = parts[2] if len(parts) == 3 and parts[2] else None
        return SearchValue(
            raw,
            prefix=prefix,
            number=number,
            number_low=low,
            number_high=high,
            system=system or None,
            code=code,
        )
    raise ValueError(f"parameters of type {kind} are not searchable")


@cache
def _component_parameters(param: SearchParameter) -> tuple[SearchParameter, ...]:
    """The component parameters of a composite, as parameters of their own type (for parsing)."""
    return tuple(
        SearchParameter(code=code, type=ctype, url="", expression=expression, base=param.base)
        for (code, expression), ctype in zip(param.components, param.component_types, strict=True)
    )


def _composite_value(param: SearchParameter, raw: str, base_url: str) -> SearchValue:
    """``token$quantity`` (search.html#composite): one value per component, '$' between them; each is
    written as for its own type (prefixes on a date/number/quantity component)."""
    parts = _SPLIT_DOLLAR.split(raw)
    components = _component_parameters(param)
    if len(parts) != len(components):
        raise ValueError(f"expected {len(components)} components separated by '$'")
    if any(p == "" for p in parts):
        raise ValueError("a component has no value")
    return SearchValue(
        raw,
        components=tuple(_value(c, None, part, base_url) for c, part in zip(components, parts, strict=True)),
    )


# -- matching ------------------------------------------------------------------------------------------
def matches(criterion: Criterion, values: list[IndexValue]) -> bool:
    """Whether a resource whose values for ``criterion.code`` are ``values`` satisfies it."""
    missing = criterion.missing
    if missing is not None:
        return (not values) == missing
    if criterion.modifier == "not":  # token :not — none of the values match any of the codes
        return not any(_token(v, sv, None) for v in values for sv in criterion.values)
    if criterion.modifier == "not-in":  # none of the values is in any of the value sets
        return not any(_token(v, sv, "in") for v in values for sv in criterion.values)
    if criterion.param.type == "composite":
        return any(_composite(v, sv) for sv in criterion.values for v in values)
    test = _TESTS[criterion.param.type]
    return any(test(v, sv, criterion.modifier) for sv in criterion.values for v in values)


def _string(v: IndexValue, sv: SearchValue, modifier: str | None) -> bool:
    if modifier == "exact":
        return v.exact == sv.text
    if v.text is None or sv.text is None:
        return False
    return sv.text in v.text if modifier == "contains" else v.text.startswith(sv.text)


def _token(v: IndexValue, sv: SearchValue, modifier: str | None) -> bool:
    if modifier == "text":
        return v.text is not None and sv.text is not None and v.text.startswith(sv.text)
    if modifier == "of-type":
        return (v.type_system, v.type_code, v.code_value) == (sv.type_system, sv.type_code, sv.code)
    if sv.codes is not None:  # :in, :above, :below: a code of the value set / hierarchy
        return v.code_value is not None and (v.system or "", v.code_value) in sv.codes
    if sv.system is not None:  # "system|code", "|code" (no system), "system|" (any code)
        if (v.system or "") != sv.system:
            return False
        return sv.code is None or v.code_value == sv.code
    return v.code_value == sv.code


def _reference(v: IndexValue, sv: SearchValue, modifier: str | None) -> bool:
    if modifier == "identifier":
        return v.code_value == sv.code and (sv.system is None or v.system == sv.system)
    if sv.ref_id is not None and sv.ref_type is None:
        return v.ref_id == sv.ref_id
    if sv.ref_type is not None:
        return v.ref_type == sv.ref_type and v.ref_id == sv.ref_id
    return v.reference == sv.reference


def _uri(v: IndexValue, sv: SearchValue, modifier: str | None) -> bool:
    if v.uri is None or sv.reference is None:
        return False
    if modifier == "below":
        return v.uri.startswith(sv.reference)
    if modifier == "above":
        return sv.reference.startswith(v.uri)
    return v.uri == sv.reference


def _approximate(sv: SearchValue) -> tuple[str, str]:
    """``ap``: the search range widened by 10% of its distance from now (search.html#prefix)."""
    now = datetime.now(UTC)
    low = datetime.fromisoformat(sv.low.replace("Z", "+00:00"))  # type: ignore[union-attr]
    high = datetime.fromisoformat(sv.high.replace("Z", "+00:00"))  # type: ignore[union-attr]
    return format_instant(low - abs(now - low) * 0.1), format_instant(high + abs(now - high) * 0.1)


def _date(v: IndexValue, sv: SearchValue, modifier: str | None) -> bool:
    tl, th, sl, sh = v.low, v.high, sv.low, sv.high
    if tl is None or th is None or sl is None or sh is None:
        return False
    prefix = sv.prefix
    contained = sl <= tl and th <= sh
    if prefix == "eq":
        return contained
    if prefix == "ne":
        return not contained
    if prefix == "gt":
        return th > sh
    if prefix == "lt":
        return tl < sl
    if prefix == "ge":
        return th > sh or contained
    if prefix == "le":
        return tl < sl or contained
    if prefix == "sa":
        return tl > sh
    if prefix == "eb":
        return th < sl
    low, high = _approximate(sv)  # ap
    return tl <= high and th >= low


def _number(v: IndexValue, sv: SearchValue, modifier: str | None) -> bool:
    if v.number is None and v.number_low is None:
        return False
    if sv.system is not None or sv.code is not None:  # quantity units
        if sv.system is not None and v.system != sv.system:
            return False
        if sv.code is not None and sv.code not in (v.code_value, v.exact):
            return False
    n, low, high = sv.number, sv.number_low, sv.number_high
    assert n is not None and low is not None and high is not None
    if v.number is None:  # a Range: compare with its bounds
        t_low, t_high = v.number_low, v.number_high
    else:
        t_low = t_high = v.number
    prefix = sv.prefix
    if prefix == "eq":
        return t_low is not None and t_high is not None and low <= t_low and t_high < high
    if prefix == "ne":
        return not (t_low is not None and t_high is not None and low <= t_low and t_high < high)
    if prefix in ("gt", "sa"):
        return t_high is not None and t_high > n
    if prefix in ("lt", "eb"):
        return t_low is not None and t_low < n
    if prefix == "ge":
        return t_high is not None and t_high >= n
    if prefix == "le":
        return t_low is not None and t_low <= n
    margin = abs(n) * Decimal("0.1")  # ap: within 10 %
    return t_low is not None and t_high is not None and t_low <= n + margin and t_high >= n - margin


def _composite(v: IndexValue, sv: SearchValue) -> bool:
    """Every component matches, on the same element: the components of one composite IndexValue."""
    return len(v.components) == len(sv.components) and all(
        _TESTS[c.type](c, s, None) for c, s in zip(v.components, sv.components, strict=True)
    )


_TESTS = {
    "string": _string,
    "token": _token,
    "reference": _reference,
    "uri": _uri,
    "date": _date,
    "number": _number,
    "quantity": _number,
}

"""Search correctness against an independent brute-force oracle (issue 5).

~8 Synthea patients and ~150 HL7 examples are loaded into the local runtime over HTTP. The oracle evaluates
each SearchParameter's *official* FHIRPath expression (from the spec's search-parameters.json) with
fhirpathpy over every stored resource and applies the matching rules of search.html, written here from the
spec and kept deliberately simple. It shares no code with ``fhirlake.search`` (extraction, normalization,
matching). Hundreds of queries are generated (seeded) from the values present in the data, across every
parameter type, modifier and prefix, with OR lists, AND combinations and small ``_count`` values forcing
many pages; the engine's ids (all pages, no id twice) must equal the oracle's.

Spec points decided here (where search.html leaves room):

- Date values without a time zone are taken as UTC (fhirlake's server zone).
- ``ap`` is left to the server ("recommended 10%") and is not generated here (the HTTP tests cover it).
- A token ``system|code`` or ``|code`` query is generated only from Coding/Identifier values, whose system
  is explicit: for a primitive ``code`` (Patient.gender), whether its value set's system counts as "the
  system" is not said by the spec (fhirlake says it does).
- Reference ``Type/id`` and ``id`` queries are generated from relative references; an absolute reference
  to another server is matched by ``Type/id`` only when the URL's last two segments are ``Type/id`` (the
  spec allows servers to treat such URLs as the same resource; fhirlake does).
- ``:text`` is a string-style (starts-with, case/accent-insensitive) match on CodeableConcept.text,
  Coding.display and Identifier.type.text.
"""

from __future__ import annotations

import gzip
import json
import random
import re
import tarfile
import time
import unicodedata
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from functools import cache
from typing import Any

import fhirpathpy
import pytest
from fhirlake.fhir.references import bundle_resources
from fhirlake.search.parameters import parameter
from fhirpathpy.models import models

from tests.conftest import SHARED_DATA
from tests.integration.fhir_http import FhirHttp

pytestmark = pytest.mark.http

SEED = 20240605
QUERIES = 200  # plain type-level queries
PER_KIND = 12  # and this many of each added kind (Extras.KINDS)
PATIENTS = 8
MAX_RESULTS = 20  # results of most queries are at most this big (3-7 per page: up to 7 pages)
BIG_RESULTS = 3  # and a few are bigger (up to ~40 pages)
EXAMPLE_STRIDE = 5  # every 5th HL7 example: ~150 resources of ~90 types
SKIP_EXAMPLES = {"Questionnaire-qs1.json"}  # invalid R4 (the validator refuses it)


# -- the data ------------------------------------------------------------------------------------------
def _corpus() -> list[tuple[str, str, dict[str, Any]]]:
    out: list[tuple[str, str, dict[str, Any]]] = []
    folder = SHARED_DATA / "synthea" / "smart-generated-sample-data-r4"
    patients = sorted(
        (p for p in folder.glob("*.json.gz") if not p.name.startswith("_")), key=lambda p: p.stat().st_size
    )[:PATIENTS]
    for path in patients:
        with gzip.open(path) as raw:
            out.extend(bundle_resources(json.load(raw)))
    examples = sorted((SHARED_DATA / "r4-examples").glob("*.json"))[::EXAMPLE_STRIDE]
    for path in examples:
        if path.name in SKIP_EXAMPLES:
            continue
        resource = json.loads(path.read_text())
        rid = f"ox-{resource.get('id', path.stem)}"[:64]
        out.append((resource["resourceType"], rid, {**resource, "id": rid}))
    return out


@dataclass
class Loaded:
    fhir: FhirHttp
    base: str
    resources: dict[str, dict[str, dict[str, Any]]]  # type -> id -> stored body (with meta the server set)
    seconds: float


@pytest.fixture(scope="module")
def loaded(api_url: str) -> Loaded:
    started = time.monotonic()
    fhir = FhirHttp(api_url)
    corpus = _corpus()

    def put(item: tuple[str, str, dict[str, Any]]) -> dict[str, Any]:
        rtype, rid, body = item
        response = fhir.put(f"{rtype}/{rid}", body)
        assert response.status_code in (200, 201), (rtype, rid, response.text[:500])
        return response.json()

    with ThreadPoolExecutor(4) as pool:
        stored = list(pool.map(put, corpus))
    resources: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for body in stored:
        resources[body["resourceType"]][body["id"]] = body
    return Loaded(fhir, api_url.rstrip("/"), dict(resources), time.monotonic() - started)


# -- the oracle: official expressions through fhirpathpy ------------------------------------------------
@cache
def _official() -> dict[str, list[dict[str, Any]]]:
    """resource type (or Resource/DomainResource) -> SearchParameter resources of the R4 spec."""
    bundle = json.loads((SHARED_DATA / "spec" / "r4" / "search-parameters.json").read_text())
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in bundle["entry"]:
        sp = entry["resource"]
        for base in sp.get("base", []):
            out[base].append(sp)
    return out


def official_parameters(rtype: str) -> dict[str, dict[str, Any]]:
    found = {}
    for base in ("Resource", "DomainResource", rtype):
        for sp in _official().get(base, []):
            if sp.get("expression") and sp["type"] not in ("composite", "special"):
                found[sp["code"]] = sp
    # Only what fhirlake says it supports (the others are refused with 501, tested elsewhere).
    return {code: sp for code, sp in found.items() if parameter(rtype, code) is not None}


def _fhirpath(expression: str, rtype: str) -> str:
    """The official expression in a form fhirpathpy evaluates without a resolver or type hierarchy."""
    expression = re.sub(r"resolve\(\) is (\w+)", r"reference.startsWith('\1/')", expression)
    expression = re.sub(r"\s+as\s+(\w+)", r".ofType(\1)", expression)
    expression = expression.replace(".as(", ".ofType(")
    # R4 errata: Observation-code-value-date names the System type DateTime for FHIR dateTime values.
    expression = expression.replace(".ofType(DateTime)", ".ofType(dateTime)")
    return re.sub(r"(?<![\w.])(?:Domain)?Resource\.", f"{rtype}.", expression)


@cache
def _compiled(expression: str) -> Callable[[Any], list[Any]]:
    return fhirpathpy.compile(expression, model=models["r4"])


def evaluate(resource: dict[str, Any], sp: dict[str, Any]) -> list[Any]:
    return _compiled(_fhirpath(sp["expression"], resource["resourceType"]))(resource)


# -- oracle values (one small converter per parameter type) ---------------------------------------------
def fold(text: str) -> str:
    """search.html#string: case- and accent-insensitive."""
    decomposed = unicodedata.normalize("NFKD", text)
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).casefold().split())


def strings(element: Any) -> list[str]:
    if isinstance(element, str):
        return [element]
    if not isinstance(element, dict):
        return []
    out: list[str] = []
    for key in ("family", "given", "prefix", "suffix", "text", "line", "city", "district", "state"):
        value = element.get(key)
        out += [value] if isinstance(value, str) else [v for v in value or () if isinstance(v, str)]
    for key in ("postalCode", "country"):
        if isinstance(element.get(key), str):
            out.append(element[key])
    return out


@dataclass(frozen=True)
class Token:
    system: str | None
    code: str | None
    texts: tuple[str, ...] = ()
    types: tuple[tuple[str | None, str | None], ...] = ()
    explicit: bool = False  # a Coding/Identifier (its system, or its lack of one, is meaningful)


def tokens(element: Any) -> list[Token]:
    if isinstance(element, bool):
        return [Token(None, "true" if element else "false")]
    if isinstance(element, str | int):
        return [Token(None, str(element))]
    if not isinstance(element, dict):
        return []
    if "coding" in element or ("text" in element and "value" not in element and "code" not in element):
        out = [t for c in element.get("coding") or () for t in tokens(c)]
        text = element.get("text")
        return [*out, Token(None, None, (text,))] if isinstance(text, str) else out
    if "value" in element and isinstance(element.get("value"), str):  # Identifier / ContactPoint
        if element.get("system") in ("phone", "fax", "email", "pager", "url", "sms", "other"):
            return [Token(None, element["value"])]
        itype = element.get("type") or {}
        types = tuple((c.get("system"), c.get("code")) for c in itype.get("coding") or ())
        texts = (itype["text"],) if isinstance(itype.get("text"), str) else ()
        return [Token(element.get("system"), element["value"], texts, types, True)]
    if "code" in element or "system" in element or "display" in element:  # Coding
        texts = (element["display"],) if isinstance(element.get("display"), str) else ()
        return [Token(element.get("system"), element.get("code"), texts, (), True)]
    return []


@dataclass(frozen=True)
class Ref:
    reference: str | None
    identifier: tuple[str | None, str | None] | None = None


def refs(element: Any) -> list[Ref]:
    if isinstance(element, str):
        return [Ref(element)]
    if not isinstance(element, dict):
        return []
    reference = element.get("reference")
    ident = element.get("identifier")
    identifier = (ident.get("system"), ident.get("value")) if isinstance(ident, dict) else None
    if not isinstance(reference, str) and identifier is None:
        return []
    return [
        Ref(re.sub(r"/_history/[^/]+$", "", reference) if isinstance(reference, str) else None, identifier)
    ]


_DATE = re.compile(
    r"(\d{4})(?:-(\d\d)(?:-(\d\d)(?:T(\d\d):(\d\d)(?::(\d\d)(\.\d+)?)?(Z|[+-]\d\d:\d\d)?)?)?)?"
)
LOWEST = datetime(1, 1, 1, tzinfo=UTC)
HIGHEST = datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)


def date_range(text: str) -> tuple[datetime, datetime]:
    """The instants a date/dateTime/instant covers, both ends included (millisecond resolution)."""
    m = _DATE.fullmatch(text)
    if not m:
        raise ValueError(text)
    y, mo, d, h, mi, s, frac, zone = m.groups()
    if h is None:
        start = datetime(int(y), int(mo or 1), int(d or 1), tzinfo=UTC)
        if d:
            end = start + timedelta(days=1)
        elif mo:
            end = datetime(int(y) + (mo == "12"), int(mo) % 12 + 1, 1, tzinfo=UTC)
        else:
            end = datetime(int(y) + 1, 1, 1, tzinfo=UTC)
        return start, end - timedelta(milliseconds=1)
    tz = UTC
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    micro = int((frac or ".0")[1:7].ljust(6, "0"))
    start = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s or 0), micro, tzinfo=tz).astimezone(UTC)
    if frac:
        step = timedelta(microseconds=10 ** max(0, 6 - len(frac[1:])))
    else:
        step = timedelta(seconds=1) if s else timedelta(minutes=1)
    return start, start + max(step, timedelta(milliseconds=1)) - timedelta(milliseconds=1)


def dates(element: Any) -> list[tuple[datetime, datetime]]:
    try:
        if isinstance(element, str):
            return [date_range(element)]
        if isinstance(element, dict) and ("start" in element or "end" in element):
            low = date_range(element["start"])[0] if "start" in element else LOWEST
            high = date_range(element["end"])[1] if "end" in element else HIGHEST
            return [(low, high)]
        if isinstance(element, dict) and ("event" in element or "repeat" in element):
            ranges = [date_range(e) for e in element.get("event") or ()]
            bounds = (element.get("repeat") or {}).get("boundsPeriod")
            ranges += dates(bounds) if bounds else []
            return [(min(r[0] for r in ranges), max(r[1] for r in ranges))] if ranges else []
    except (ValueError, OverflowError):
        return []
    return []


@dataclass(frozen=True)
class Qty:
    value: Decimal | None  # None: a Range
    low: Decimal | None = None
    high: Decimal | None = None
    system: str | None = None
    code: str | None = None


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        return None
    return Decimal(str(value))


def quantities(element: Any) -> list[Qty]:
    if not isinstance(element, dict):
        value = _decimal(element)
        return [Qty(value)] if value is not None else []
    if "low" in element or "high" in element:
        low, high = element.get("low") or {}, element.get("high") or {}
        unit = low if "value" in low else high
        return [
            Qty(
                None,
                _decimal(low.get("value")),
                _decimal(high.get("value")),
                unit.get("system"),
                unit.get("code"),
            )
        ]
    if "currency" in element:
        return [Qty(_decimal(element.get("value")), system="urn:iso:std:iso:4217", code=element["currency"])]
    if "value" in element and "data" not in element:
        return [Qty(_decimal(element["value"]), system=element.get("system"), code=element.get("code"))]
    return []


CONVERT: dict[str, Callable[[Any], list[Any]]] = {
    "string": strings,
    "token": tokens,
    "reference": refs,
    "date": dates,
    "number": quantities,
    "quantity": quantities,
    "uri": lambda e: [e] if isinstance(e, str) else [],
}


class Oracle:
    def __init__(self, loaded: Loaded) -> None:
        self.base = loaded.base
        self.resources = loaded.resources
        self.params = {rtype: official_parameters(rtype) for rtype in self.resources}
        self.values: dict[tuple[str, str], dict[str, list[Any]]] = {}  # (type, code) -> id -> values
        for rtype, by_id in self.resources.items():
            for code, sp in self.params[rtype].items():
                per_id = {}
                for rid, body in by_id.items():
                    found = [v for element in evaluate(body, sp) for v in CONVERT[sp["type"]](element)]
                    per_id[rid] = list(dict.fromkeys(found))
                self.values[(rtype, code)] = per_id

    def ids(self, rtype: str, criteria: list[Criterion]) -> set[str]:
        return {
            rid
            for rid in self.resources[rtype]
            if all(c.holds(self.values[(rtype, c.code)][rid]) for c in criteria)
        }


# -- the matching rules of search.html ------------------------------------------------------------------
@dataclass
class Criterion:
    code: str
    name: str  # as sent: code[:modifier]
    value: str  # as sent
    holds: Callable[[list[Any]], bool]


def escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace(",", "\\,").replace("|", "\\|").replace("$", "\\$")


def relative(reference: str | None, base: str) -> str | None:
    if reference and reference.startswith(base + "/"):
        return reference[len(base) + 1 :]
    return reference


def ref_matches(ref: Ref, query: str, base: str) -> bool:
    target = relative(ref.reference, base)
    if target is None:
        return False
    if "/" not in query:  # [id]: any target type
        return target.split("/")[-1] == query and len(target.split("/")) >= 2
    return target == query or (target.endswith("/" + query) and "://" in target)


def date_holds(prefix: str, t: tuple[datetime, datetime], s: tuple[datetime, datetime]) -> bool:
    (tl, th), (sl, sh) = t, s
    contained = sl <= tl and th <= sh
    return {
        "eq": contained,
        "ne": not contained,
        "gt": th > sh,
        "lt": tl < sl,
        "ge": th > sh or contained,
        "le": tl < sl or contained,
        "sa": tl > sh,
        "eb": th < sl,
    }[prefix]


def number_holds(prefix: str, q: Qty, n: Decimal, text: str) -> bool:
    exponent = Decimal(text).as_tuple().exponent
    half = Decimal(5).scaleb(int(exponent) - 1)
    low, high = (q.value, q.value) if q.value is not None else (q.low, q.high)
    if prefix in ("eq", "ne"):
        inside = low is not None and high is not None and n - half <= low and high < n + half
        return inside if prefix == "eq" else not inside
    if prefix in ("gt", "sa"):
        return high is not None and high > n
    if prefix in ("lt", "eb"):
        return low is not None and low < n
    if prefix == "ge":
        return high is not None and high >= n
    return low is not None and low <= n  # le


# -- query generation -----------------------------------------------------------------------------------
DATE_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb")
NUMBER_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le")


class Generator:
    def __init__(self, oracle: Oracle, seed: int) -> None:
        self.oracle = oracle
        self.rng = random.Random(seed)
        # (type, code) with at least one value, and the values present
        self.present = {
            key: [v for vs in per_id.values() for v in vs]
            for key, per_id in sorted(self.oracle.values.items())
            if any(per_id.values())
        }
        self.keys = sorted(self.present)
        self.big = BIG_RESULTS

    def criterion(
        self, rtype: str | None = None, codes: set[str] | None = None
    ) -> tuple[str, Criterion] | None:
        rng = self.rng
        if rtype is None:  # types weighted by how many resources they have: bigger results, more pages
            rtype = self.weighted_type()
        keys = [k for k in self.keys if k[0] == rtype and (codes is None or k[1] in codes)]
        if not keys:
            return None
        key = rng.choice(keys)
        rtype, code = key
        sp_type = self.oracle.params[rtype][code]["type"]
        if rng.random() < 0.06:
            missing = rng.choice(["true", "false"])
            return rtype, Criterion(
                code, f"{code}:missing", missing, lambda vs, m=missing: (not vs) == (m == "true")
            )
        ors = [self.value(sp_type, key) for _ in range(1 if rng.random() < 0.7 else rng.randint(2, 3))]
        ors = [o for o in ors if o is not None]
        if not ors:
            return None
        modifier = ors[0][0]
        ors = [o for o in ors if o[0] == modifier]  # one modifier per parameter occurrence
        name = code + (f":{modifier}" if modifier else "")
        if modifier == "not":  # :not with OR values: none of the values may match (search.html#token)
            tests = [o[2] for o in ors]
            return rtype, Criterion(
                code,
                name,
                ",".join(o[1] for o in ors),
                lambda vs, ts=tests: not any(t(v) for t in ts for v in vs),
            )
        tests = [o[2] for o in ors]
        return rtype, Criterion(
            code, name, ",".join(o[1] for o in ors), lambda vs, ts=tests: any(t(v) for t in ts for v in vs)
        )

    def value(
        self, sp_type: str, key: tuple[str, str]
    ) -> tuple[str | None, str, Callable[[Any], bool]] | None:
        """(modifier, value as sent, test of one oracle value) from a value present in the data."""
        return self.value_of(sp_type, self.rng.choice(self.present[key]))

    def value_of(self, sp_type: str, v: Any) -> tuple[str | None, str, Callable[[Any], bool]] | None:
        """(modifier, value as sent, test of one oracle value) from the oracle value ``v``."""
        rng = self.rng
        base = self.oracle.base
        if sp_type == "string":
            folded = fold(v)
            kind = rng.choice(["prefix", "prefix", "exact", "contains"])
            if kind == "exact":
                return "exact", escape(v), lambda t, q=v: t == q
            if kind == "contains" and len(folded) > 3:
                i = rng.randrange(0, len(folded) - 2)
                part = folded[i : i + rng.randint(2, 4)].strip() or folded
                return "contains", escape(part), lambda t, q=part: q in fold(t)
            part = folded[: rng.randint(1, max(1, len(folded)))].strip() or folded
            sent = part.upper() if rng.random() < 0.3 else part
            return None, escape(sent), lambda t, q=part: fold(t).startswith(q)
        if sp_type == "token":
            kind = rng.choice(["code", "code", "system|code", "|code", "system|", "not", "text", "of-type"])
            if kind == "text" and v.texts:
                text = fold(rng.choice(v.texts))
                part = text[: rng.randint(2, max(2, len(text)))].strip() or text
                return "text", escape(part), lambda t, q=part: any(fold(x).startswith(q) for x in t.texts)
            if kind == "of-type" and v.types and v.types[0][0] and v.types[0][1]:
                ts, tc = v.types[0]
                sent = f"{escape(ts)}|{escape(tc)}|{escape(v.code)}"
                return (
                    "of-type",
                    sent,
                    lambda t, q=(ts, tc, v.code): (q[0], q[1]) in t.types and t.code == q[2],
                )
            if v.code is None:
                return None
            if kind == "system|code" and v.explicit and v.system:
                sent = f"{escape(v.system)}|{escape(v.code)}"
                return None, sent, lambda t, q=v: t.system == q.system and t.code == q.code and t.explicit
            if kind == "|code" and v.explicit and not v.system:
                return (
                    None,
                    f"|{escape(v.code)}",
                    lambda t, q=v: t.explicit and not t.system and t.code == q.code,
                )
            if kind == "system|" and v.explicit and v.system:
                return None, f"{escape(v.system)}|", lambda t, q=v: t.explicit and t.system == q.system
            if kind == "not":
                return "not", escape(v.code), lambda t, q=v: t.code == q.code
            return None, escape(v.code), lambda t, q=v: t.code == q.code
        if sp_type == "reference":
            kind = rng.choice(["typed", "typed", "id", "url", "modifier", "identifier"])
            if kind == "identifier" and v.identifier and v.identifier[1]:
                system, value = v.identifier
                sent = f"{escape(system)}|{escape(value)}" if system else escape(value)
                return (
                    "identifier",
                    sent,
                    lambda t, q=(system, value): (
                        t.identifier is not None
                        and (t.identifier[1] == q[1] and (q[0] is None or t.identifier[0] == q[0]))
                    ),
                )
            target = relative(v.reference, base)
            if not target:
                return None
            parts = target.split("/")
            if "://" in target or target.startswith(("urn:", "#")) or len(parts) != 2:
                return None, escape(target), lambda t, q=target: relative(t.reference, base) == q
            rtype, rid = parts
            if kind == "id":
                return None, escape(rid), lambda t, q=rid: ref_matches(t, q, base)
            if kind == "url":
                return None, escape(f"{base}/{target}"), lambda t, q=target: ref_matches(t, q, base)
            if kind == "modifier":
                return rtype, escape(rid), lambda t, q=target: ref_matches(t, q, base)
            return None, escape(target), lambda t, q=target: ref_matches(t, q, base)
        if sp_type == "date":
            low, high = v
            anchor = low if low != LOWEST else high
            if anchor == HIGHEST:
                return None
            precision = rng.choice([4, 7, 10, 19])
            text = anchor.strftime("%Y-%m-%dT%H:%M:%SZ")[:precision] + ("Z" if precision == 19 else "")
            text = text.replace("ZZ", "Z")
            prefix = rng.choice(DATE_PREFIXES)
            s = date_range(text)
            sent = f"{prefix}{text}" if prefix != "eq" or rng.random() < 0.5 else text
            return None, sent, lambda t, p=prefix, q=s: date_holds(p, t, q)
        if sp_type in ("number", "quantity"):
            n = v.value if v.value is not None else (v.low if v.low is not None else v.high)
            if n is None:
                return None
            n = n + rng.choice([Decimal(0), Decimal(0), Decimal("0.1"), Decimal(-1)])
            text = str(n)
            prefix = rng.choice(NUMBER_PREFIXES)
            sent = f"{prefix}{text}"
            if sp_type == "quantity" and v.code and rng.random() < 0.5:
                sent += f"|{escape(v.system or '')}|{escape(v.code)}"
                return (
                    None,
                    sent,
                    lambda t, p=prefix, q=v, n=n, x=text: (
                        t.code == q.code
                        and (not q.system or t.system == q.system)
                        and number_holds(p, t, n, x)
                    ),
                )
            return None, sent, lambda t, p=prefix, n=n, x=text: number_holds(p, t, n, x)
        if sp_type == "uri":
            kind = rng.choice(["eq", "eq", "below", "above"])
            if kind == "below" and "/" in v:
                part = v[: v.rfind("/") + 1]
                return "below", escape(part), lambda t, q=part: t.startswith(q)
            if kind == "above":
                longer = v.rstrip("/") + "/sub/part"
                return "above", escape(longer), lambda t, q=longer: q.startswith(t)
            return None, escape(v), lambda t, q=v: t == q
        return None

    def weighted_type(self) -> str:
        types = sorted({k[0] for k in self.keys})
        return self.rng.choices(types, [len(self.oracle.resources[t]) ** 0.75 for t in types])[0]

    def query(self) -> tuple[str, list[Criterion], int]:
        while True:
            first = self.criterion()
            if first is None:
                continue
            rtype, criterion = first
            criteria = [criterion]
            if self.rng.random() < 0.35:
                extra = self.criterion(rtype)
                if extra is not None:
                    criteria.append(extra[1])
            size = len(self.oracle.ids(rtype, criteria))
            if size <= MAX_RESULTS:
                return rtype, criteria, self.rng.randint(3, 7)
            if self.big > 0:  # a few large results, paged with small pages all the way
                self.big -= 1
                return rtype, criteria, 7


# -- terminology, composites, compartments: straight from the R4 core package -----------------------------
@cache
def _package() -> dict[str, list[dict[str, Any]]]:
    """The package's ValueSets, CodeSystems and CompartmentDefinitions."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    with tarfile.open(SHARED_DATA / "spec" / "r4" / "hl7.fhir.r4.core-4.0.1.tgz") as tgz:
        for member in tgz:
            name = member.name.removeprefix("package/")
            kind = name.split("-", 1)[0]
            if kind in ("ValueSet", "CodeSystem", "CompartmentDefinition") and name.endswith(".json"):
                out[kind].append(json.load(tgz.extractfile(member)))  # type: ignore[arg-type]
    return out


class Terminology:
    """Value sets whose compose is plain (concept lists, whole complete code systems) and the concept
    nesting of complete code systems (hierarchyMeaning is-a or unstated): enough for :in and :below."""

    def __init__(self) -> None:
        complete = {cs["url"]: cs for cs in _package()["CodeSystem"] if cs.get("content") == "complete"}
        self.children: dict[str, dict[str, set[str]]] = {}
        self.parents: dict[str, dict[str, set[str]]] = {}
        for url, cs in complete.items():
            if cs.get("hierarchyMeaning") not in (None, "is-a"):
                continue
            stack = [(c, None) for c in cs.get("concept", [])]
            while stack:
                concept, parent = stack.pop()
                code = concept["code"]
                # Nesting, and the standard concept properties (concept-properties.html): a v3 code with
                # several parents is nested under one and named as "child" by the others.
                links = [(parent, code)] if parent is not None else []
                for prop in concept.get("property", []):
                    if prop["code"] == "child" and "valueCode" in prop:
                        links.append((code, prop["valueCode"]))
                    elif prop["code"] in ("parent", "subsumedBy") and "valueCode" in prop:
                        links.append((prop["valueCode"], code))
                for up, down in links:
                    self.children.setdefault(url, {}).setdefault(up, set()).add(down)
                    self.parents.setdefault(url, {}).setdefault(down, set()).add(up)
                stack += [(c, code) for c in concept.get("concept", [])]
        self.value_sets: dict[str, set[tuple[str, str]]] = {}
        for vs in _package()["ValueSet"]:
            compose = vs.get("compose") or {}
            codes: set[tuple[str, str]] | None = set()
            for inc in compose.get("include", []):
                if codes is None or inc.get("filter") or inc.get("valueSet") or "system" not in inc:
                    codes = None
                elif "concept" in inc:
                    codes |= {(inc["system"], c["code"]) for c in inc["concept"]}
                elif inc["system"] in complete:
                    codes |= {
                        (inc["system"], c) for c in self._all(complete[inc["system"]].get("concept", []))
                    }
                else:
                    codes = None
            if codes and not compose.get("exclude"):
                self.value_sets[vs["url"]] = codes
        self.containing: dict[tuple[str, str], list[str]] = defaultdict(list)
        for url, codes in sorted(self.value_sets.items()):
            for pair in codes:
                self.containing[pair].append(url)

    @staticmethod
    def _all(concepts: list[dict[str, Any]]) -> list[str]:
        return [code for c in concepts for code in (c["code"], *Terminology._all(c.get("concept", [])))]

    def closure(self, system: str, code: str, below: bool) -> set[str]:
        step = (self.children if below else self.parents).get(system, {})
        found, todo = {code}, [code]
        while todo:
            for nxt in step.get(todo.pop(), ()):
                if nxt not in found:
                    found.add(nxt)
                    todo.append(nxt)
        return found


@cache
def _official_by_url() -> dict[str, dict[str, Any]]:
    return {sp["url"]: sp for sps in _official().values() for sp in sps}


def official_composites(rtype: str) -> dict[str, dict[str, Any]]:
    """The composite parameters of a type fhirlake supports, without %resource components."""
    return {
        sp["code"]: sp
        for sp in _official().get(rtype, [])
        if sp["type"] == "composite"
        and parameter(rtype, sp["code"]) is not None
        and not any("%resource" in c["expression"] for c in sp["component"])
    }


def composite_values(resource: dict[str, Any], sp: dict[str, Any]) -> list[tuple[list[Any], ...]]:
    """Per base element: per component, its oracle values (components evaluated on that element)."""
    rtype = resource["resourceType"]
    parts = [p.strip() for p in sp["expression"].split("|") if p.strip().split(".")[0] == rtype]
    kinds = [_official_by_url()[c["definition"]]["type"] for c in sp["component"]]
    out = []
    for part in parts:
        (n,) = _compiled(f"{part}.count()")(resource)
        for i in range(n):  # fhirpathpy loses choice types across a union: one base element at a time
            out.append(
                tuple(
                    [
                        v
                        for e in _compiled(f"{part}[{i}].select({_fhirpath(c['expression'], rtype)})")(
                            resource
                        )
                        for v in CONVERT[kind](e)
                    ]
                    for c, kind in zip(sp["component"], kinds, strict=True)
                )
            )
    return out


def literal(ref: Ref, base: str) -> tuple[str, str] | None:
    """(type, id) of a reference written Type/id (relative, or the last two segments of a URL)."""
    target = relative(ref.reference, base)
    m = re.search(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})$", target or "")
    return (m.group(1), m.group(2)) if m else None


# -- the added query kinds: one Case each ----------------------------------------------------------------
Key = tuple[str, str]  # (resource type, id)


@dataclass
class Case:
    label: str
    path: str  # "" for system search
    params: list[tuple[str, str]]
    count: int
    expected: set[Key]
    ordered: list[Key] | None = None  # _sort: the expected order
    uncertain: frozenset[Key] = frozenset()  # depends on resources other tests stored: not compared


SORT_TYPES = ("date", "string", "token", "number", "quantity")


class Extras:
    """Generators of composite, :in/:not-in, :above/:below, system (_type), chained, _has, _sort and
    compartment searches, each with the oracle's answer."""

    KINDS = ("composite", "in", "below", "system", "chain", "has", "sort", "compartment")

    def __init__(self, generator: Generator, terminology: Terminology) -> None:
        self.g = generator
        self.o = generator.oracle
        self.rng = generator.rng
        self.term = terminology
        self.composites: dict[Key, dict[str, list[tuple[list[Any], ...]]]] = {}
        self.memo: dict[str, Any] = {}

    def _memo(self, name: str, make: Callable[[], list[Any]]) -> list[Any]:
        """Candidate lists are computed once (they depend on the data only)."""
        if name not in self.memo:
            self.memo[name] = make()
        assert self.memo[name], f"no candidates for {name} in the data"
        return self.memo[name]

    def case(self, kind: str) -> Case:
        for _ in range(400):
            found = getattr(self, f"_{kind}")()
            if found is None or len(found.expected) > MAX_RESULTS:
                continue
            if found.expected or self.rng.random() < 0.25:  # mostly queries with matches
                return found
        raise AssertionError(f"no {kind} query found in the data")

    def _plain(self, rtype: str, params: list[tuple[str, str]], criteria: list[Criterion]) -> Case:
        label = f"{rtype}?" + "&".join(f"{k}={v}" for k, v in params)
        ids = self.o.ids(rtype, criteria)
        return Case(label, rtype, params, self.rng.randint(3, 7), {(rtype, i) for i in ids})

    def _composite(self) -> Case | None:
        rng = self.rng
        rtype = rng.choice(sorted(t for t in self.o.resources if official_composites(t)))
        code, sp = rng.choice(sorted(official_composites(rtype).items()))
        per_id = self.composites.get((rtype, code))
        if per_id is None:
            per_id = {rid: composite_values(body, sp) for rid, body in self.o.resources[rtype].items()}
            self.composites[(rtype, code)] = per_id
        elements = [e for rid in sorted(per_id) for e in per_id[rid] if all(e)]
        if not elements:
            return None
        kinds = [_official_by_url()[c["definition"]]["type"] for c in sp["component"]]
        alternatives = []
        for _ in range(1 if rng.random() < 0.7 else 2):
            element = rng.choice(elements)
            made = [
                self._plain_value(kind, rng.choice(values))
                for kind, values in zip(kinds, element, strict=True)
            ]
            if any(m is None for m in made):
                return None
            alternatives.append(made)

        def holds(values: list[Any], alts=alternatives) -> bool:
            return any(
                all(any(t(x) for x in comp) for (_, t), comp in zip(alt, e, strict=True))
                for alt in alts
                for e in values
            )

        value = ",".join("$".join(sent for sent, _ in alt) for alt in alternatives)
        expected = {(rtype, rid) for rid, values in per_id.items() if holds(values)}
        return Case(f"{rtype}?{code}={value}", rtype, [(code, value)], rng.randint(3, 7), expected)

    def _plain_value(self, kind: str, v: Any) -> tuple[str, Callable[[Any], bool]] | None:
        """A component value: written as for its type, no modifier (search.html#composite)."""
        for _ in range(8):
            made = self.g.value_of(kind, v)
            if made is not None and made[0] is None:
                return made[1], made[2]
        return None

    def _explicit_tokens(self, usable: Callable[[Token], bool]) -> list[tuple[Key, Token]]:
        return [
            (key, v)
            for key, values in self.g.present.items()
            if self.o.params[key[0]][key[1]]["type"] == "token"
            and all(t.explicit or t.code is None for t in values)  # Codings / Identifiers only
            for v in dict.fromkeys(values)
            if v.explicit and v.system and v.code and usable(v)
        ]

    def _in(self) -> Case | None:
        candidates = self._memo(
            "in", lambda: self._explicit_tokens(lambda v: (v.system, v.code) in self.term.containing)
        )
        (rtype, code), v = self.rng.choice(candidates)
        url = self.rng.choice(self.term.containing[(v.system, v.code)])
        codes = self.term.value_sets[url]
        negate = self.rng.random() < 0.4
        name = f"{code}:{'not-in' if negate else 'in'}"
        inside = lambda vs, c=codes: any((t.system, t.code) in c for t in vs)  # noqa: E731
        criterion = Criterion(code, name, url, (lambda vs: not inside(vs)) if negate else inside)
        return self._plain(rtype, [(name, url)], [criterion])

    def _below(self) -> Case | None:
        candidates = self._memo(
            "below",
            lambda: self._explicit_tokens(
                lambda v: (
                    v.code in self.term.parents.get(v.system, {})
                    or v.code in self.term.children.get(v.system, {})
                )
            ),
        )
        (rtype, code), v = self.rng.choice(candidates)
        below = self.rng.random() < 0.6
        anchor = self.rng.choice(
            sorted(self.term.closure(v.system, v.code, not below))
        )  # an ancestor for :below
        wanted = self.term.closure(v.system, anchor, below)
        name, value = f"{code}:{'below' if below else 'above'}", f"{escape(v.system)}|{escape(anchor)}"
        criterion = Criterion(
            code, name, value, lambda vs, s=v.system, w=wanted: any(t.system == s and t.code in w for t in vs)
        )
        return self._plain(rtype, [(name, value)], [criterion])

    def _system(self) -> Case | None:
        first, second = sorted(set(self.rng.sample(sorted(self.o.resources), 2)))
        common = {
            c
            for c, sp in self.o.params[first].items()
            if c in self.o.params[second] and self.o.params[second][c]["type"] == sp["type"]
        }
        made = self.g.criterion(self.rng.choice([first, second]), common)
        if made is None:
            return None
        criterion = made[1]
        params = [("_type", f"{first},{second}"), (criterion.name, criterion.value)]
        expected = {(t, i) for t in (first, second) for i in self.o.ids(t, [criterion])}
        ordered = None
        if self.rng.random() < 0.4:
            params.append(("_sort", "-_id"))
            # descending ids; equal ids (of different types) by Type/id ascending
            ordered = sorted(
                sorted(expected, key=lambda k: f"{k[0]}/{k[1]}"), key=lambda k: k[1], reverse=True
            )
        label = "?" + "&".join(f"{k}={v}" for k, v in params)
        return Case(label, "", params, self.rng.randint(3, 7), expected, ordered)

    def _references(self) -> list[tuple[Key, str]]:
        """(type, reference parameter) with literal references to loaded resources, and the target types."""
        out = []
        for key, values in self.g.present.items():
            if self.o.params[key[0]][key[1]]["type"] != "reference":
                continue
            stored = self.o.resources
            loaded = {
                lit for r in values if (lit := literal(r, self.o.base)) and lit[1] in stored.get(lit[0], {})
            }
            out += [(key, target) for target in sorted({t for t, _ in loaded})]
        return out

    def _chain(self) -> Case | None:
        (rtype, code), target = self.rng.choice(self._memo("references", self._references))
        inner = self.g.criterion(target)
        if inner is None:
            return None
        found = {(target, i) for i in self.o.ids(target, [inner[1]])}
        if len(found) > 300:
            return None
        name = f"{code}:{target}.{inner[1].name}"
        per_id = self.o.values[(rtype, code)]
        expected, uncertain = set(), set()
        for rid, refs_ in per_id.items():
            if any(literal(r, self.o.base) in found for r in refs_):
                expected.add((rtype, rid))
            elif any(
                (lit := literal(r, self.o.base))
                and lit[0] == target
                and lit[1] not in self.o.resources[target]
                for r in refs_
            ):
                uncertain.add((rtype, rid))  # refers to a resource this test did not store
        case = Case(
            f"{rtype}?{name}={inner[1].value}",
            rtype,
            [(name, inner[1].value)],
            self.rng.randint(3, 7),
            expected,
        )
        case.uncertain = frozenset(uncertain)
        return case

    def _has(self) -> Case | None:
        (source, link), target = self.rng.choice(self._memo("references", self._references))
        inner = self.g.criterion(source)
        if inner is None:
            return None
        sources = self.o.ids(source, [inner[1]])
        if len(sources) > 300:
            return None
        expected = {
            lit
            for sid in sources
            for r in self.o.values[(source, link)][sid]
            if (lit := literal(r, self.o.base)) and lit[0] == target and lit[1] in self.o.resources[target]
        }
        name = f"_has:{source}:{link}:{inner[1].name}"
        return Case(
            f"{target}?{name}={inner[1].value}",
            target,
            [(name, inner[1].value)],
            self.rng.randint(3, 7),
            expected,
        )

    def _sort(self) -> Case | None:
        made = self.g.criterion()
        if made is None:
            return None
        rtype, criterion = made
        sortable = sorted(c for c, sp in self.o.params[rtype].items() if sp["type"] in SORT_TYPES)
        keys = [
            (c, self.rng.random() < 0.4)
            for c in self.rng.sample(sortable, min(len(sortable), self.rng.randint(1, 2)))
        ]
        ids = sorted(self.o.ids(rtype, [criterion]))
        for code, descending in reversed(keys):  # stable sorts, last key first; missing values last
            kind = self.o.params[rtype][code]["type"]
            chosen = {rid: sort_value(kind, self.o.values[(rtype, code)][rid], descending) for rid in ids}
            present = [rid for rid in ids if chosen[rid] is not None]
            present.sort(key=lambda rid: chosen[rid], reverse=descending)
            ids = present + [rid for rid in ids if chosen[rid] is None]
        sort = ",".join(("-" if d else "") + c for c, d in keys)
        params = [(criterion.name, criterion.value), ("_sort", sort)]
        case = self._plain(rtype, params, [criterion])
        case.ordered = [(rtype, rid) for rid in ids]
        return case

    def _compartment(self) -> Case | None:
        definition = next(d for d in _package()["CompartmentDefinition"] if d["code"] == "Patient")
        patients = set(self.o.resources.get("Patient", {}))
        members = [
            (r["code"], r["param"])
            for r in definition["resource"]
            if r.get("param")
            and r["code"] in self.o.resources
            and r["code"] != "Patient"
            and all((r["code"], p) in self.o.values for p in r["param"])
        ]
        member, links = self.rng.choice(members)
        # Mostly a patient that has members of this type (its reference is in one of the links).
        linked = sorted(
            {
                lit[1]
                for p in links
                for refs_ in self.o.values[(member, p)].values()
                for r in refs_
                if (lit := literal(r, self.o.base)) and lit[0] == "Patient" and lit[1] in patients
            }
        )
        pid = self.rng.choice(linked if linked and self.rng.random() < 0.8 else sorted(patients))
        target = f"Patient/{pid}"
        ids = {
            rid
            for rid in self.o.resources[member]
            if any(
                ref_matches(r, target, self.o.base) for p in links for r in self.o.values[(member, p)][rid]
            )
        }
        params: list[tuple[str, str]] = []
        if len(ids) > MAX_RESULTS or (ids and self.rng.random() < 0.3):  # narrowed by one more criterion
            extra = self.g.criterion(member)
            if extra is None:
                return None
            params.append((extra[1].name, extra[1].value))
            ids &= self.o.ids(member, [extra[1]])
        label = f"{target}/{member}?" + "&".join(f"{k}={v}" for k, v in params)
        return Case(label, f"{target}/{member}", params, self.rng.randint(3, 7), {(member, i) for i in ids})


def sort_value(kind: str, values: list[Any], descending: bool) -> Any:
    """search.html#sort as fhirlake reads it: the lowest value leads ascending, the highest descending;
    a date range sorts by its start ascending and its end descending."""
    if kind == "date":
        found = [v[1] if descending else v[0] for v in values]
    elif kind == "string":
        found = [fold(v) for v in values]
    elif kind == "token":
        found = [t.code for t in values if t.code is not None]
    else:
        found = [q.value if q.value is not None else q.low for q in values]
        found = [f for f in found if f is not None]
    if not found:
        return None
    return max(found) if descending else min(found)


# -- the test -------------------------------------------------------------------------------------------
def run(loaded: Loaded, case: Case) -> tuple[list[Key], int]:
    params = [*case.params, ("_count", str(case.count))]
    http, headers = loaded.fhir.http, {"Accept": "application/fhir+json"}
    url = f"{loaded.base}/{case.path}" if case.path else loaded.base
    response = http.get(url, params=params, headers=headers, timeout=60)
    assert response.status_code == 200, (case.label, response.text[:500])
    found: list[Key] = []
    pages = 0
    while True:
        bundle = response.json()
        pages += 1
        page = [
            (e["resource"]["resourceType"], e["resource"]["id"])
            for e in bundle.get("entry", [])
            if e["search"]["mode"] == "match"
        ]
        assert len(page) <= case.count
        found += page
        nxt = next((link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None)
        if nxt is None:
            return found, pages
        response = http.get(nxt, headers=headers, timeout=60)
        assert response.status_code == 200, response.text[:500]


def check(loaded: Loaded, case: Case) -> tuple[str | None, int]:
    found, pages = run(loaded, case)
    label = f"{case.label}&_count={case.count}"
    if len(found) != len(set(found)):
        return f"{label}: a resource on two pages", pages
    # Other tests' resources share the store: only this test's own are compared.
    mine = [k for k in found if k[1] in loaded.resources.get(k[0], {}) and k not in case.uncertain]
    expected = case.expected - case.uncertain
    if set(mine) != expected:
        return (
            f"{label}: engine-only {sorted(set(mine) - expected)[:3]} "
            f"oracle-only {sorted(expected - set(mine))[:3]}",
            pages,
        )
    if case.ordered is not None and mine != [k for k in case.ordered if k in expected]:
        return f"{label}: order {mine[:6]} != {case.ordered[:6]}", pages
    return None, pages


def test_engine_agrees_with_the_oracle(loaded: Loaded) -> None:
    started = time.monotonic()
    oracle = Oracle(loaded)
    generator = Generator(oracle, SEED)
    cases = []
    for rtype, criteria, count in (generator.query() for _ in range(QUERIES)):
        label = f"{rtype}?" + "&".join(f"{c.name}={c.value}" for c in criteria)
        expected = {(rtype, i) for i in oracle.ids(rtype, criteria)}
        cases.append(Case(label, rtype, [(c.name, c.value) for c in criteria], count, expected))
    extras = Extras(generator, Terminology())
    added = {kind: [extras.case(kind) for _ in range(PER_KIND)] for kind in Extras.KINDS}
    cases += [case for kind in Extras.KINDS for case in added[kind]]
    prepared = time.monotonic() - started

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda case: check(loaded, case), cases))
    failures = [f for f, _ in results if f]
    pages = sum(p for _, p in results)
    nonempty = sum(1 for case in cases if case.expected)
    print(
        f"\noracle: {sum(len(v) for v in loaded.resources.values())} resources "
        f"loaded in {loaded.seconds:.1f}s, {len(cases)} queries ({QUERIES} plain, {PER_KIND} of each of "
        f"{', '.join(Extras.KINDS)}; {nonempty} non-empty, {pages} pages), prepared in {prepared:.1f}s, "
        f"total {time.monotonic() - started:.1f}s"
    )
    assert not failures, f"{len(failures)} of {len(cases)} disagree:\n" + "\n".join(failures[:40])
    assert nonempty > len(cases) // 3  # the generator finds real values, not only empty results
    assert pages > len(cases) * 1.2  # small _count values really page
    for kind in Extras.KINDS:  # each added kind finds real matches too
        assert sum(1 for case in added[kind] if case.expected) >= PER_KIND // 3, kind

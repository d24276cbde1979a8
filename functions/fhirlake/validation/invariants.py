"""The spec's invariants (StructureDefinition ``constraint`` with severity ``error``).

Each invariant is compiled once, when its type's table is first loaded, into one of:

1. a native Python check (``NATIVE``) for rules whose FHIRPath is costly or which fhirpathpy cannot
   evaluate (per-1's partial-date comparison, ``hasValue()``);
2. handled by the engine itself (ele-1, ext-1, dom-2..dom-5, ref-1: ``ENGINE``);
3. fhirlake's FHIRPath compiler (:mod:`fhirlake.fhir.fhirpath`, the engine of the SQL on FHIR views, in
   its R4 invariant dialect: whole-string ``matches()``, choice names from the element tables) - most
   invariants, as compiled closures over the JSON;
4. fhirpathpy (imported lazily, only when such an invariant is first evaluated) with the R4 model, for
   the remaining expressions. If fhirpathpy cannot evaluate an expression it is skipped (``SKIPPED``
   lists them, the tests assert the list).

A result of ``true`` passes, ``false`` fails; an empty result (e.g. comparing dates of different
precision) passes, so the validator never rejects what the spec leaves undecided.
Invariants that need other resources (``resolve()``) or HTML parsing (``htmlChecks()``) are skipped.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any

from fhirlake.validation.primitives import MEMO_MAX_LEN, MEMO_SIZE

if TYPE_CHECKING:
    from fhirlake.fhir.fhirpath import ChoiceNames, Dialect

# choice element name -> its JSON names (value -> valueQuantity, ...), filled by the engine as it loads
# type tables, so an invariant's ``value`` navigates to whichever ``value[x]`` is present
CHOICES: dict[str, ChoiceNames] = {}
# Evaluated by the engine (structure walk) rather than here.
ENGINE = frozenset({"ele-1", "ext-1", "dom-2", "dom-3", "dom-4", "dom-5", "ref-1"})
# Not evaluated, with the reason (reported in docs/performance.md and asserted in tests).
SKIPPED: dict[str, str] = {
    "txt-1": "htmlChecks() (XHTML content rules) - only the <div> element and namespace are checked",
    "txt-2": "htmlChecks() (non-empty narrative) - only the <div> element and namespace are checked",
}
_UNSUPPORTED_FUNCTIONS = ("resolve()", "htmlChecks()", "conformsTo(", "memberOf(", "%terminologies")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DT_RE = re.compile(r"(\d{4})(-(\d{2})(-(\d{2})(T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})?)?)?)?")


def _parse_dt_key(value: str) -> tuple[int, Any] | None:
    """(precision, comparable) for a FHIR date/dateTime/instant string."""
    m = _DT_RE.fullmatch(value)
    if not m:
        return None
    if m.group(6):
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        # With a time zone: the exact distance from the epoch (a timedelta). Comparing aware datetimes whose
        # offsets are different objects calls utcoffset() each time: ~15x slower (-04:00 in Synthea).
        return 4, (dt - _EPOCH if dt.tzinfo is not None else dt)
    if m.group(4):
        return 3, value
    if m.group(2):
        return 2, value
    return 1, value


# per-1 compares every Period's start and end; the same timestamps recur across a patient's resources
# (two thirds of the calls in the Synthea NDJSON). The key is immutable, so sharing it is safe.
_cached_dt_key = lru_cache(maxsize=MEMO_SIZE)(_parse_dt_key)


def _dt_key(value: str) -> tuple[int, Any] | None:
    return _cached_dt_key(value) if len(value) <= MEMO_MAX_LEN else _parse_dt_key(value)


def compare_datetimes(a: str, b: str) -> int | None:
    """-1/0/1, or None when the spec leaves the comparison undecided (different precision, overlap)."""
    ka, kb = _dt_key(a), _dt_key(b)
    if ka is None or kb is None:
        return None
    if ka[0] == kb[0] == 4:
        x, y = ka[1], kb[1]
        if type(x) is not type(y):  # one with a time zone (a timedelta), one without (a datetime)
            return None
        return (x > y) - (x < y)
    # compare on the common precision as strings (YYYY-MM-DD prefixes sort correctly)
    n = min(len(a) if ka[0] < 4 else 10, len(b) if kb[0] < 4 else 10)
    x, y = a[:n], b[:n]
    if x != y:
        return -1 if x < y else 1
    return 0 if ka[0] == kb[0] else None


def _per_1(period: Any, rc: Any) -> bool:
    start, end = period.get("start"), period.get("end")
    if type(start) is not str or type(end) is not str:
        return True
    return compare_datetimes(start, end) != 1


def _que_7(enable_when: Any, rc: Any) -> bool:
    # operator = 'exists' implies (answer is Boolean); fhirpathpy does not type choice elements here
    return enable_when.get("operator") != "exists" or "answerBoolean" in enable_when


def _ras_2(prediction: Any, rc: Any) -> bool:
    # probability is decimal implies (probability as decimal) <= 100
    p = prediction.get("probabilityDecimal")
    return not isinstance(p, int | float | Decimal) or isinstance(p, bool) or p <= 100


def _app_4(appointment: Any, rc: Any) -> bool:
    return "cancelationReason" not in appointment or appointment.get("status") in ("no-show", "cancelled")


def _first_entry_type(bundle: Any) -> str | None:
    entries = bundle.get("entry")
    if type(entries) is list and entries and type(entries[0]) is dict:
        res = entries[0].get("resource")
        if type(res) is dict:
            return res.get("resourceType")
    return None


def _bdl_11(bundle: Any, rc: Any) -> bool:
    return bundle.get("type") != "document" or _first_entry_type(bundle) == "Composition"


def _bdl_12(bundle: Any, rc: Any) -> bool:
    return bundle.get("type") != "message" or _first_entry_type(bundle) == "MessageHeader"


def _cnt_3(count: Any, rc: Any) -> bool:
    value, code, system = count.get("value"), count.get("code"), count.get("system")
    return (
        (code is not None or value is None)
        and (system is None or system == "http://unitsofmeasure.org")
        and (code is None or code == "1")
        and (value is None or type(value) is int)
    )


def _eld_2(element: Any, rc: Any) -> bool | None:
    lo, hi = element.get("min"), element.get("max")
    if lo is None or hi is None or hi == "*":
        return True
    try:
        return lo <= int(hi)
    except (TypeError, ValueError):
        return None


def _que_2(questionnaire: Any, rc: Any) -> bool:
    ids: list[Any] = []
    stack: list[Any] = [questionnaire]
    while stack:
        v = stack.pop()
        if type(v) is dict:
            if "linkId" in v:
                ids.append(v["linkId"])
            stack.extend(x for k, x in v.items() if k != "contained")
        elif type(v) is list:
            stack.extend(v)
    return len(set(map(str, ids))) == len(ids)


NATIVE: dict[str, Callable[[Any, Any], bool | None]] = {
    "per-1": _per_1,
    "que-7": _que_7,
    "ras-2": _ras_2,
    "app-4": _app_4,
    "bdl-11": _bdl_11,
    "bdl-12": _bdl_12,
    "cnt-3": _cnt_3,
    "eld-2": _eld_2,
    "que-2": _que_2,
}


class Invariant:
    __slots__ = ("base", "expression", "fallback", "fn", "human", "key", "mode")

    def __init__(self, key: str, human: str, expression: str, base: str) -> None:
        self.key = key
        self.human = human
        self.expression = expression
        self.base = base
        self.fn: Callable[[Any, Any], bool | None] | None = None  # native or compiled FHIRPath
        self.fallback: Callable[[Any, Any], bool | None] | None = None
        self.mode = "native"

    def fails(self, value: Any, rc: Any) -> bool:
        fn = self.fn
        if fn is not None:
            try:
                return fn(value, rc) is False
            except Exception:  # the compiled FHIRPath met data it does not model: ask fhirpathpy
                pass
        return self.fails_fhirpathpy(value, rc)

    def fails_fhirpathpy(self, value: Any, rc: Any) -> bool:
        if self.fallback is None:
            try:
                self.fallback = _compile_fhirpathpy(self)
            except ImportError:  # fhirpathpy is a dev dependency: without it these few are skipped
                self.fallback = _undecided
        try:
            return self.fallback(value, rc) is False
        except Exception:  # an expression fhirpathpy cannot evaluate: undecided, not a failure
            return False


def compile_invariant(key: str, human: str, expression: str, base: str) -> Invariant | None:
    if key in ENGINE or key in SKIPPED or any(f in expression for f in _UNSUPPORTED_FUNCTIONS):
        return None
    inv = Invariant(key, human, expression, base)
    native = NATIVE.get(key)
    if native is not None:
        inv.fn = native
        return inv
    compiled = _compile_fhirpath(expression)
    if compiled is not None:
        inv.fn = compiled
        inv.mode = "compiled"
        return inv
    inv.mode = "fhirpathpy"
    return inv


_NO_ENV: dict[str, Any] = {}  # shared, never written


@cache  # built on first use: fhirlake.fhir.fhirpath imports this module (compare_datetimes)
def _dialect() -> Dialect:
    from fhirlake.fhir.fhirpath import Dialect

    return Dialect(choices=CHOICES, full_match=True, infer_types=False)


def _compile_fhirpath(expression: str) -> Callable[[Any, Any], bool | None] | None:
    """``expression`` compiled by :mod:`fhirlake.fhir.fhirpath`; maps (focus JSON value, resource context)
    to True/False/None (empty), or None when the expression needs what only fhirpathpy has."""
    from fhirlake.fhir.fhirpath import FhirPathError, compile_path

    try:
        fn = compile_path(expression, dialect=_dialect())
    except FhirPathError:
        return None
    uses_env = "%" in expression  # most invariants name no variable: no environment to build

    def run(value: Any, rc: Any) -> bool | None:
        if uses_env and rc is not None:
            env = {"resource": rc.resource, "rootResource": rc.root, "context": value}
        else:
            env = _NO_ENV
        result = fn([value], env)
        if not result:
            return None
        if len(result) == 1 and type(result[0]) is bool:
            return result[0]
        return True

    return run


_FP: dict[str, Any] = {}


def _undecided(value: Any, rc: Any) -> None:
    return None


def _no_trace(*_args: Any) -> None:
    return None


def _compile_fhirpathpy(inv: Invariant) -> Callable[[Any, Any], bool | None]:
    if not _FP:
        from fhirpathpy import compile as fp_compile
        from fhirpathpy.engine.nodes import ResourceNode
        from fhirpathpy.models import models

        _FP.update(compile=fp_compile, node=ResourceNode.create_node, model=models["r4"])
    options = {"returnRawData": True, "traceFn": _no_trace}
    compiled = _FP["compile"](inv.expression, _FP["model"], options)
    make_node, base = _FP["node"], inv.base

    def run(value: Any, rc: Any) -> bool | None:
        env = {"resource": rc.resource, "rootResource": rc.root} if rc is not None else {}
        result = compiled(make_node(value, base), env)
        if not result:
            return None
        if len(result) == 1 and isinstance(result[0], bool):
            return result[0]
        return True

    return run

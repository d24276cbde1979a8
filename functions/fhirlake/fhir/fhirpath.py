"""FHIRPath over plain FHIR JSON, compiled once: SQL on FHIR v2 view paths and the R4 invariants.

An expression is parsed once into nested closures ``fn(focus, env) -> list``; evaluating it walks plain
JSON (dicts, lists, str, int, float, bool, and ``Decimal`` where :mod:`fhirlake.fhir.json` kept a
decimal's precision) with no parsing or lookups by name at run time. View constants are folded into
the closures at compile time, so an unknown ``%name`` is a compile error, as the spec requires.

Covered: member navigation with choice elements (``value`` finds ``valueQuantity``; ``value.ofType(
Quantity)`` reads ``valueQuantity`` directly), indexers, literals (string, integer, decimal, boolean,
``@`` date/dateTime/time, ``{}``), ``%resource``/``%rootResource``/``%context``/``%rowIndex`` and view
constants, ``$this``/``$index``, every operator (``implies or xor and in contains = != ~ !~ < > <= >= |
is as + - & * / div mod``, unary minus) with FHIRPath's empty propagation and three-valued logic, and
the functions in :data:`FUNCTIONS` - including the SQL on FHIR ones: ``getResourceKey()``,
``getReferenceKey([Type])``, ``lowBoundary()``/``highBoundary()``, ``extension(url)``, ``join()``.

Two users read FHIRPath a little differently; a :class:`Dialect` says how (the default is SQL on FHIR's):

- SQL on FHIR v2 views (:mod:`fhirlake.views`) and FHIRPath Patch criteria: current FHIRPath, where
  ``matches()`` finds the regex anywhere; a choice element is any ``name`` + type suffix; type operators
  (``is``, ``as``, ``ofType()``, a leading type name) are read from the JSON's shape.
- The validator's R4 invariants (:mod:`fhirlake.validation.invariants`): written for FHIRPath 2.0, where
  ``matches()`` must match the whole string; choice elements come from the validator's element tables;
  and a type operator is a compile error, because plain JSON cannot tell a ``code`` from a ``string`` -
  those invariants are left to an engine with the FHIR model (fhirpathpy).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from fhirlake.fhir import fhirpath_boundaries as boundaries
from fhirlake.fhir.types import resource_types
from fhirlake.validation.invariants import compare_datetimes

Env = dict[str, Any]
Fn = Callable[[list[Any], Env], list[Any]]
# how a member step finds a missing choice element: (the object, the element name) -> value or None
ChoiceLookup = Callable[[dict[str, Any], str], Any]


class ChoiceNames(set[str]):
    """The JSON names of one choice element (``valueQuantity``, ``valueString``...), filled in place as the
    validator loads type tables; calling it finds whichever is present. Empty, it is false: a step skips
    it without a call (most names navigated by invariants are not choice elements)."""

    __slots__ = ()

    def __call__(self, item: dict[str, Any], name: str) -> Any:
        for key in self:
            value = item.get(key)
            if value is not None:
                return value
        return None


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between the FHIRPath of SQL on FHIR views and that of the R4 invariants."""

    # choice element name -> its JSON names (value -> valueQuantity, valueString...); compiling binds each
    # navigated name's entry (adding an empty one), which the validator fills as it loads type tables.
    # None: any name + a FHIR type suffix
    choices: dict[str, ChoiceNames] | None = None
    # matches(): the whole string (FHIRPath 2.0, R4) rather than anywhere in it (FHIRPath 3.0)
    full_match: bool = False
    # is/as/ofType()/type names: guessed from the JSON's shape, or a compile error (no type model)
    infer_types: bool = True


SQL_ON_FHIR = Dialect()


class FhirPathError(ValueError):
    """The expression is not valid FHIRPath, or uses something this subset does not support."""


class FhirPathRuntimeError(ValueError):
    """Evaluation broke a rule FHIRPath makes an error (e.g. a singleton operator on a collection)."""


# FHIR R4 data types that may appear as a choice suffix (value[x] -> valueQuantity) or in ofType().
PRIMITIVE_TYPES = frozenset(
    [
        "base64Binary",
        "boolean",
        "canonical",
        "code",
        "date",
        "dateTime",
        "decimal",
        "id",
        "instant",
        "integer",
        "markdown",
        "oid",
        "positiveInt",
        "string",
        "time",
        "unsignedInt",
        "uri",
        "url",
        "uuid",
        "xhtml",
    ]
)
COMPLEX_TYPES = frozenset(
    [
        "Address",
        "Age",
        "Annotation",
        "Attachment",
        "CodeableConcept",
        "Coding",
        "ContactDetail",
        "ContactPoint",
        "Contributor",
        "Count",
        "DataRequirement",
        "Distance",
        "Dosage",
        "Duration",
        "Element",
        "Expression",
        "Extension",
        "HumanName",
        "Identifier",
        "Meta",
        "Money",
        "Narrative",
        "ParameterDefinition",
        "Period",
        "Quantity",
        "Range",
        "Ratio",
        "Reference",
        "RelatedArtifact",
        "SampledData",
        "Signature",
        "Timing",
        "TriggerDefinition",
        "UsageContext",
        "BackboneElement",
        "MoneyQuantity",
        "SimpleQuantity",
    ]
)
# FHIRPath System types (System.String ...) and the FHIR primitive each one is read as in JSON.
SYSTEM_TYPES: dict[str, str] = {
    "Boolean": "boolean", "String": "string", "Integer": "integer", "Decimal": "decimal", "Date": "date",
    "DateTime": "dateTime", "Time": "time", "Quantity": "Quantity",
}  # fmt: skip
# Element names that are a choice ([x]) somewhere in R4 (resources and data types): only for these does a
# missing key send navigation looking for name + type suffix (value -> valueQuantity).
CHOICE_ELEMENTS = frozenset(
    [
        "abatement",
        "additive",
        "age",
        "allowed",
        "amount",
        "answer",
        "asNeeded",
        "born",
        "characteristic",
        "chargeItem",
        "code",
        "collected",
        "content",
        "created",
        "date",
        "deceased",
        "defaultValue",
        "definingSubstance",
        "definition",
        "detail",
        "diagnosis",
        "doseNumber",
        "due",
        "effective",
        "entity",
        "event",
        "example",
        "fastingStatus",
        "identified",
        "indication",
        "item",
        "legallyBinding",
        "location",
        "manufacturer",
        "medication",
        "minimumVolume",
        "module",
        "multipleBirth",
        "name",
        "occurred",
        "occurrence",
        "offset",
        "onset",
        "participantEffective",
        "performed",
        "probability",
        "procedure",
        "product",
        "quantity",
        "rate",
        "reported",
        "scheduled",
        "seriesDoses",
        "serviced",
        "source",
        "start",
        "statusReason",
        "studyEffective",
        "subject",
        "substance",
        "target",
        "time",
        "timing",
        "topic",
        "used",
        "value",
        "when",
    ]
)
_UPPER_PRIMITIVES = {t[0].upper() + t[1:]: t for t in PRIMITIVE_TYPES}
_CHOICE_SUFFIXES = frozenset(_UPPER_PRIMITIVES) | COMPLEX_TYPES
_NUMBER = (int, float, Decimal)

_TOKEN_RE = re.compile(
    r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')"
    r"|(?P<dt>@T\d{2}(?::\d{2}(?::\d{2}(?:\.\d+)?)?)?"
    r"|@\d{4}(?:-\d{2}(?:-\d{2})?)?(?:T(?:\d{2}(?::\d{2}(?::\d{2}(?:\.\d+)?)?)?)?(?:Z|[+-]\d{2}:\d{2})?)?)"
    r"|(?P<num>\d+(?:\.\d+)?)"
    r"|(?P<op><=|>=|!=|!~|[=~<>|+\-&*/(),.\[\]{}])"
    r"|(?P<var>%(?:[A-Za-z_][A-Za-z0-9_]*|`[^`]+`|'[^']+'))"
    r"|(?P<special>\$(?:this|index|total))"
    r"|(?P<id>[A-Za-z_][A-Za-z0-9_]*|`[^`]+`))"
)
# binding power of each binary operator (higher binds tighter), FHIRPath spec section 6.8
_BINARY = {
    "implies": 1, "or": 2, "xor": 2, "and": 3, "in": 4, "contains": 4,
    "=": 5, "~": 5, "!=": 5, "!~": 5, "<": 6, ">": 6, "<=": 6, ">=": 6, "|": 7,
    "is": 8, "as": 8, "+": 9, "-": 9, "&": 9, "*": 10, "/": 10, "div": 10, "mod": 10,
}  # fmt: skip
_KEYWORD_OPERATORS = frozenset(k for k in _BINARY if k.isalpha())


def _tokenize(src: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos, end = 0, len(src.rstrip())
    while pos < end:
        m = _TOKEN_RE.match(src, pos)
        if not m or m.end() == pos:
            raise FhirPathError(f"unexpected character at {pos}: {src[pos : pos + 10]!r}")
        pos = m.end()
        kind = m.lastgroup
        assert kind is not None
        tokens.append((kind, m.group(kind)))
    return tokens


# -- runtime helpers ----------------------------------------------------------------------------------
def _walk(items: list[Any], steps: tuple[tuple[str, ChoiceLookup | None], ...]) -> list[Any]:
    """Navigate ``items`` through member names (name, how to find it as a choice element, if it may be one),
    lists flattened at every step: ``code.coding.system`` is one call. The hottest loop of a view."""
    for name, choice in steps:
        out: list[Any] = []
        for item in items:
            if type(item) is not dict:
                continue
            value = item.get(name)
            if value is None:
                if not choice:  # None, or choice names still empty
                    continue
                value = choice(item, name)
                if value is None:
                    continue
            if type(value) is list:
                # nulls only hold places for primitive extensions ("given": [null, "B"], "_given": [...])
                out.extend(value if None not in value else (v for v in value if v is not None))
            else:
                out.append(value)
        if not out:
            return out
        items = out
    return items


def _children(items: list[Any], name: str) -> list[Any]:
    return _walk(items, ((name, None),))


def _choice_value(item: dict[str, Any], name: str) -> Any:
    """``value`` -> the value of whichever ``value[x]`` key is present (valueQuantity, valueString...)."""
    n = len(name)
    for key, value in item.items():
        if len(key) > n and key.startswith(name) and key[n:] in _CHOICE_SUFFIXES:
            return value
    return None


def _choice_lookup(name: str, dialect: Dialect) -> ChoiceLookup | None:
    """How a step to ``name`` finds a choice element when the key itself is missing (None: it does not)."""
    table = dialect.choices
    if table is None:
        return _choice_value if name in CHOICE_ELEMENTS else None
    return table.setdefault(name, ChoiceNames())  # the same set the table's later loads fill


def _is_true(items: list[Any]) -> bool | None:
    """Singleton evaluation as a Boolean: None for empty, a non-Boolean single item counts as true."""
    if not items:
        return None
    if len(items) > 1:
        raise FhirPathRuntimeError("a Boolean operator was given a collection of several items")
    value = items[0]
    return value if type(value) is bool else True


def _singleton(items: list[Any], what: str) -> Any:
    if len(items) > 1:
        raise FhirPathRuntimeError(f"{what} expects a single item, got {len(items)}")
    return items[0] if items else None


def _numbers(x: Any, y: Any) -> tuple[Any, Any]:
    """Make a pair of JSON numbers comparable: Decimal and float do not mix in Python arithmetic."""
    if type(x) is float and isinstance(y, Decimal):
        return Decimal(repr(x)), y
    if type(y) is float and isinstance(x, Decimal):
        return x, Decimal(repr(y))
    return x, y


def _is_number(v: Any) -> bool:
    return isinstance(v, _NUMBER) and type(v) is not bool


def _equal(x: Any, y: Any) -> bool:
    kind = type(x)
    if kind is type(y) and (kind is str or kind is int):  # most comparisons of invariants and views
        return x == y
    if _is_number(x) and _is_number(y):
        a, b = _numbers(x, y)
        return bool(a == b)
    if type(x) is bool or type(y) is bool:
        return type(x) is type(y) and x == y
    if type(x) is dict and type(y) is dict:
        return x.keys() == y.keys() and all(_equal_items(x[k], y[k]) for k in x)
    return type(x) is type(y) and x == y


def _equal_items(x: Any, y: Any) -> bool:
    if type(x) is list and type(y) is list:
        return len(x) == len(y) and all(_equal(a, b) for a, b in zip(x, y, strict=True))
    return _equal(x, y)


def _equivalent(x: Any, y: Any) -> bool:
    if type(x) is str and type(y) is str:
        return " ".join(x.lower().split()) == " ".join(y.lower().split())
    return _equal(x, y)


def _compare(x: Any, y: Any) -> int | None:
    kind = type(x)
    if kind is type(y) and (kind is int or kind is float):
        return (x > y) - (x < y)
    if _is_number(x) and _is_number(y):
        a, b = _numbers(x, y)
        return (a > b) - (a < b)
    if type(x) is str and type(y) is str:
        if x[:4].isdigit() and y[:4].isdigit() and x[4:5] in ("", "-") and y[4:5] in ("", "-"):
            return compare_datetimes(x, y)
        return (x > y) - (x < y)
    if type(x) is dict and type(y) is dict and "value" in x and "value" in y:  # Quantity, same unit only
        same_unit = (x.get("code") or x.get("unit")) == (y.get("code") or y.get("unit"))
        if not same_unit or x.get("system") != y.get("system"):
            return None
        return _compare(x["value"], y["value"])
    raise FhirPathRuntimeError(f"cannot compare {type(x).__name__} with {type(y).__name__}")


def _key(value: Any) -> Any:
    """A hashable stand-in for a JSON value (for distinct/union), keeping true distinct from 1."""
    if type(value) is dict:
        return ("d", tuple(sorted((k, _key(v)) for k, v in value.items())))
    if type(value) is list:
        return ("l", tuple(_key(v) for v in value))
    if type(value) is bool:
        return ("b", value)
    if _is_number(value):
        return ("n", Decimal(repr(value)) if type(value) is float else value)
    return ("s", value)


def _distinct(items: list[Any]) -> list[Any]:
    seen: set[Any] = set()
    out = []
    for value in items:
        k = _key(value)
        if k not in seen:
            seen.add(k)
            out.append(value)
    return out


def _fhir_type(type_name: str) -> str:
    """``FHIR.Quantity`` -> ``Quantity``, ``System.String`` / ``String`` -> ``string``."""
    namespace, _, name = type_name.rpartition(".")
    if namespace == "FHIR":
        return name
    return SYSTEM_TYPES.get(name, name)


def _type_test(type_name: str) -> Callable[[Any], bool]:
    """A predicate telling whether a JSON value (no type information of its own) can be of a type."""
    name = _fhir_type(type_name)
    if name == "boolean":
        return lambda v: type(v) is bool
    if name in ("integer", "positiveInt", "unsignedInt"):
        return lambda v: type(v) is int
    if name == "decimal":
        return _is_number
    if name in PRIMITIVE_TYPES:
        return lambda v: type(v) is str
    if name in resource_types():
        return lambda v: type(v) is dict and v.get("resourceType") == name
    return lambda v: type(v) is dict


def _check_type_name(type_name: str) -> str:
    namespace, _, name = type_name.rpartition(".")
    if namespace not in ("", "FHIR", "System"):
        raise FhirPathError(f"unknown type namespace in {type_name}")
    known = name in PRIMITIVE_TYPES or name in COMPLEX_TYPES or name in SYSTEM_TYPES
    if not known and name not in resource_types() and name not in ("Resource", "DomainResource"):
        raise FhirPathError(f"unknown type {type_name}")
    return type_name


def _choice_suffix(type_name: str) -> str:
    """The JSON key suffix of a choice element of that type: valueQuantity, valueDateTime..."""
    name = _fhir_type(type_name)
    return name[0].upper() + name[1:]


# -- parser -------------------------------------------------------------------------------------------
class _Parser:
    def __init__(
        self, tokens: list[tuple[str, str]], constants: dict[str, list[Any]], dialect: Dialect
    ) -> None:
        self.tokens = tokens
        self.i = 0
        self.constants = constants
        self.dialect = dialect
        self.uses_index = ("special", "$index") in tokens

    def peek(self, ahead: int = 0) -> tuple[str, str] | None:
        j = self.i + ahead
        return self.tokens[j] if j < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (value is not None and tok[1] != value):
            found = tok[1] if tok else "end of expression"
            raise FhirPathError(f"expected {value or 'more'} but found {found}")
        self.i += 1
        return tok

    def binding_power(self) -> int:
        tok = self.peek()
        if tok is None:
            return 0
        kind, val = tok
        if (kind == "op" and val in _BINARY) or (kind == "id" and val in _KEYWORD_OPERATORS):
            return _BINARY[val]
        return 0

    def expression(self, min_power: int = 1) -> Fn:
        left = self.unary()
        while True:
            power = self.binding_power()
            if power == 0 or power < min_power:
                return left
            op = self.take()[1]
            if op in ("is", "as"):
                left = _type_function(op, left, self.type_specifier(typed_data=True))
                continue
            right = self.expression(power + 1)
            left = _binary(op, left, right)

    def type_specifier(self, typed_data: bool = False) -> str:
        """A type name; ``typed_data``: the data will be tested against it, which a dialect may refuse."""
        if typed_data:
            self.check_infers_types()
        kind, name = self.take()
        if kind != "id":
            raise FhirPathError(f"expected a type name, found {name}")
        parts = [name.strip("`")]
        while self.peek() == ("op", ".") and (nxt := self.peek(1)) is not None and nxt[0] == "id":
            self.take()
            parts.append(self.take()[1].strip("`"))
        return _check_type_name(".".join(parts))

    def check_infers_types(self) -> None:
        if not self.dialect.infer_types:
            raise FhirPathError("type operators need the FHIR type model, which plain JSON does not carry")

    def unary(self) -> Fn:
        tok = self.peek()
        if tok in (("op", "-"), ("op", "+")):
            self.take()
            operand = self.unary()
            if tok[1] == "+":
                return operand

            def negate(focus: list[Any], env: Env) -> list[Any]:
                return [-v for v in operand(focus, env)]

            return negate
        return self.postfix(self.term(), at_root=True)

    def term(self) -> Fn:
        kind, val = self.take()
        if kind == "str":
            text = _unescape(val[1:-1])
            return lambda focus, env: [text]
        if kind == "num":
            number: Any = Decimal(val) if "." in val else int(val)
            return lambda focus, env: [number]
        if kind == "dt":
            literal = (
                val[2:] if val.startswith("@T") else val[1:]
            )  # as FHIR JSON writes it: "12:30", "2020-01"
            return lambda focus, env: [literal]
        if kind == "var":
            return self.variable(val[1:].strip("`'"))
        if kind == "special":
            if val == "$this":
                return lambda focus, env: focus
            key = val  # $index / $total, set by the iterating function
            return lambda focus, env: [env[key]] if key in env else []
        if kind == "op" and val == "(":
            inner = self.expression()
            self.take(")")
            return inner
        if kind == "op" and val == "{":
            self.take("}")
            return lambda focus, env: []
        if kind == "id":
            if val in ("true", "false"):
                flag = val == "true"
                return lambda focus, env: [flag]
            return self.invocation(val.strip("`"), _FOCUS, at_root=True)
        raise FhirPathError(f"unexpected {val}")

    def variable(self, name: str) -> Fn:
        if name in self.constants:
            value = self.constants[name]
            return lambda focus, env: value
        if name in ("resource", "rootResource", "context", "rowIndex"):
            return lambda focus, env: [env[name]] if env.get(name) is not None else []
        if name == "ucum":
            return lambda focus, env: ["http://unitsofmeasure.org"]
        raise FhirPathError(f"undefined environment variable: {name}")

    def postfix(self, fn: Fn, at_root: bool = False) -> Fn:
        while True:
            tok = self.peek()
            if tok == ("op", "."):
                self.take()
                kind, name = self.take()
                if kind != "id":
                    raise FhirPathError(f"expected a name after '.', found {name}")
                fn = self.invocation(name.strip("`"), fn)
            elif tok == ("op", "["):
                self.take()
                index = self.expression()
                self.take("]")
                fn = _indexer(fn, index)
            else:
                return fn

    def invocation(self, name: str, base: Fn, at_root: bool = False) -> Fn:
        if self.peek() == ("op", "("):
            self.take()
            if name in ("ofType", "is", "as"):
                type_name = self.type_specifier(typed_data=True)
                self.take(")")
                return _type_function(name, base, type_name)
            if name == "getReferenceKey" and self.peek() != ("op", ")"):
                type_name = self.type_specifier()
                self.take(")")
                return _function(name, base, [], type_name, self.dialect)
            args: list[Fn] = []
            while self.peek() != ("op", ")"):
                args.append(self.expression())
                if self.peek() == ("op", ","):
                    self.take()
                elif self.peek() != ("op", ")"):
                    raise FhirPathError(f"expected ',' or ')' in the arguments of {name}()")
            self.take(")")
            return _function(name, base, args, None, self.dialect, self.uses_index)
        if self.peek() == ("op", ".") and self.peek(1) == ("id", "ofType") and self.peek(2) == ("op", "("):
            # value.ofType(Quantity): read valueQuantity directly rather than guessing the choice type
            self.i += 3
            type_name = self.type_specifier(typed_data=True)
            self.take(")")
            return _member_of_type(base, name, type_name)
        if at_root and name[:1].isupper():
            self.check_infers_types()
            return _type_or_member(base, name)
        return _member(base, name, _choice_lookup(name, self.dialect))


def _unescape(text: str) -> str:
    simple = {"'": "'", '"': '"', "`": "`", "\\": "\\", "/": "/", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "u" and i + 5 < len(text):
                out.append(chr(int(text[i + 2 : i + 6], 16)))
                i += 6
                continue
            out.append(simple.get(nxt, nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _member(base: Fn, name: str, choice: ChoiceLookup | None) -> Fn:
    """``base.name``; consecutive names fuse into one walk (``code.coding.system``: one closure, not 3)."""
    root, steps = getattr(base, "chain", (base, ()))
    steps = (*steps, (name, choice))
    if root is _FOCUS:

        def walk(focus: list[Any], env: Env) -> list[Any]:
            return _walk(focus, steps)

    else:

        def walk(focus: list[Any], env: Env) -> list[Any]:
            return _walk(root(focus, env), steps)

    walk.chain = (root, steps)  # type: ignore[attr-defined]
    return walk


def _FOCUS(focus: list[Any], env: Env) -> list[Any]:
    return focus


def _type_or_member(base: Fn, name: str) -> Fn:
    """``Patient.name``: a leading type name selects the focus resource when it is of that type."""

    def select(focus: list[Any], env: Env) -> list[Any]:
        items = base(focus, env)
        matching = [v for v in items if type(v) is dict and v.get("resourceType") == name]
        return matching if matching else _children(items, name)

    return select


def _member_of_type(base: Fn, name: str, type_name: str) -> Fn:
    key = name + _choice_suffix(type_name)
    test = _type_test(type_name)

    def member(focus: list[Any], env: Env) -> list[Any]:
        items = base(focus, env)
        out = _children(items, key)
        if not out:  # not a choice element (e.g. Bundle.entry.resource.ofType(Patient))
            out = [v for v in _children(items, name) if test(v)]
        return out

    member.fhir_type = _fhir_type(type_name)  # type: ignore[attr-defined]  # read by lowBoundary()
    return member


def _indexer(base: Fn, index: Fn) -> Fn:
    def at(focus: list[Any], env: Env) -> list[Any]:
        n = _singleton(index(focus, env), "an indexer")
        if n is None:
            return []
        items = base(focus, env)
        return [items[n]] if 0 <= n < len(items) else []

    return at


def _type_function(name: str, base: Fn, type_name: str) -> Fn:
    test = _type_test(type_name)
    if name == "ofType":

        def of_type(focus: list[Any], env: Env) -> list[Any]:
            return [v for v in base(focus, env) if test(v)]

        of_type.fhir_type = _fhir_type(type_name)  # type: ignore[attr-defined]  # read by lowBoundary()
        return of_type

    def typed(focus: list[Any], env: Env) -> list[Any]:
        value = _singleton(base(focus, env), name)
        if value is None:
            return []
        return [test(value)] if name == "is" else ([value] if test(value) else [])

    return typed


def _logic(op: str, left: Fn, right: Fn) -> Fn:
    """and/or/xor/implies with three-valued logic; the operator is chosen here, not per evaluation
    (invariants are mostly these, evaluated on every element)."""
    if op == "xor":

        def xor(focus: list[Any], env: Env) -> list[Any]:
            a, b = _is_true(left(focus, env)), _is_true(right(focus, env))
            return [] if a is None or b is None else [a != b]

        return xor
    # or: a true side decides; and: a false side decides; implies: (not left) or right
    decisive = op != "and"
    negate_left = op == "implies"

    def short_circuit(focus: list[Any], env: Env) -> list[Any]:
        a = _is_true(left(focus, env))
        if negate_left and a is not None:
            a = not a
        if a is decisive:
            return [decisive]
        b = _is_true(right(focus, env))
        if b is decisive:
            return [decisive]
        return [] if a is None or b is None else [not decisive]

    return short_circuit


def _binary(op: str, left: Fn, right: Fn) -> Fn:
    if op in ("and", "or", "xor", "implies"):
        return _logic(op, left, right)
    if op in ("=", "!=", "~", "!~"):
        same = _equivalent if op in ("~", "!~") else _equal
        negate = op.startswith("!")

        def equality(focus: list[Any], env: Env) -> list[Any]:
            a, b = left(focus, env), right(focus, env)
            if not a or not b:
                if op in ("=", "!="):
                    return []  # empty propagates through = and !=
                return [(not a and not b) != negate]  # ~: two empty collections are equivalent
            if len(a) == 1 == len(b):
                return [same(a[0], b[0]) != negate]
            if len(a) != len(b):
                return [negate]
            result = all(same(x, y) for x, y in zip(a, b, strict=True))
            return [result != negate]

        return equality
    if op in ("<", ">", "<=", ">="):
        test: Callable[[int], bool] = {
            "<": lambda c: c < 0, ">": lambda c: c > 0, "<=": lambda c: c <= 0, ">=": lambda c: c >= 0
        }[op]  # fmt: skip

        def comparison(focus: list[Any], env: Env) -> list[Any]:
            x, y = _singleton(left(focus, env), op), _singleton(right(focus, env), op)
            if x is None or y is None:
                return []
            c = _compare(x, y)
            return [] if c is None else [test(c)]

        return comparison
    if op == "|":
        return lambda focus, env: _distinct(left(focus, env) + right(focus, env))
    if op in ("in", "contains"):
        item_fn, collection_fn = (left, right) if op == "in" else (right, left)

        def membership(focus: list[Any], env: Env) -> list[Any]:
            item = _singleton(item_fn(focus, env), op)
            if item is None:
                return []
            return [any(_equal(item, c) for c in collection_fn(focus, env))]

        return membership
    if op == "&":

        def concatenate(focus: list[Any], env: Env) -> list[Any]:
            a, b = _singleton(left(focus, env), "&"), _singleton(right(focus, env), "&")
            return [(a or "") + (b or "")]

        return concatenate
    return _arithmetic(op, left, right)


def _arithmetic(op: str, left: Fn, right: Fn) -> Fn:
    def arithmetic(focus: list[Any], env: Env) -> list[Any]:
        x, y = _singleton(left(focus, env), op), _singleton(right(focus, env), op)
        if x is None or y is None:
            return []
        if op == "+" and type(x) is str and type(y) is str:
            return [x + y]
        if not (_is_number(x) and _is_number(y)):
            raise FhirPathRuntimeError(f"'{op}' needs numbers")
        x, y = _numbers(x, y)
        if op == "+":
            return [x + y]
        if op == "-":
            return [x - y]
        if op == "*":
            return [x * y]
        if y == 0:
            return []  # division by zero is empty in FHIRPath
        if op == "/":
            return [Decimal(x) / Decimal(y) if isinstance(x, Decimal) or isinstance(y, Decimal) else x / y]
        if op == "div":
            return [int(x // y)]
        return [x % y]  # mod

    return arithmetic


# -- functions ----------------------------------------------------------------------------------------
def _reference_key(reference: Any, wanted_type: str | None) -> str | None:
    """The id part of a literal reference (``Patient/1``, ``http://x/fhir/Patient/1/_history/2``), or
    None for contained (``#x``), logical, conditional (``Patient?identifier=``) or mistyped references."""
    if type(reference) is not dict:
        return None
    ref = reference.get("reference")
    if type(ref) is not str or not ref or ref.startswith("#") or "?" in ref:
        return None
    if ref.startswith("urn:uuid:") or ref.startswith("urn:oid:"):
        return ref.rsplit(":", 1)[-1] if wanted_type is None else None
    parts = ref.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) < 2:
        return None
    rtype, rid = parts[-2], parts[-1]
    if wanted_type is not None and rtype != wanted_type.split(".")[-1]:
        return None
    return rid or None


def _strings(items: list[Any], what: str) -> str | None:
    value = _singleton(items, what)
    if value is not None and type(value) is not str:
        raise FhirPathRuntimeError(f"{what}() needs a string")
    return value


def _string_function(name: str, base: Fn, args: list[Fn], full_match: bool) -> Fn:
    search = re.fullmatch if full_match else re.search

    def apply(focus: list[Any], env: Env) -> list[Any]:
        s = _strings(base(focus, env), name)
        if s is None:
            return []
        values = [_singleton(a(focus, env), name) for a in args]
        if any(v is None for v in values) and name not in ("substring",):
            return []
        if name == "startsWith":
            return [s.startswith(values[0])]
        if name == "endsWith":
            return [s.endswith(values[0])]
        if name == "contains":
            return [values[0] in s]
        if name == "matches":
            return [search(values[0], s, re.DOTALL) is not None]
        if name == "replaceMatches":
            return [re.sub(values[0], values[1], s)]
        if name == "replace":
            return [s.replace(values[0], values[1])]
        if name == "indexOf":
            return [s.find(values[0])]
        if name == "substring":
            start = values[0]
            if start is None or start < 0 or start >= len(s):
                return []
            length = values[1] if len(values) > 1 else None
            return [s[start:] if length is None else s[start : start + length]]
        if name == "length":
            return [len(s)]
        if name == "upper":
            return [s.upper()]
        if name == "lower":
            return [s.lower()]
        if name == "trim":
            return [s.strip()]
        if name == "split":
            return s.split(values[0])
        if name == "toChars":
            return list(s)
        raise AssertionError(name)

    return apply


_STRING_FUNCTIONS = {
    "startsWith": 1, "endsWith": 1, "contains": 1, "matches": 1, "replaceMatches": 2, "replace": 2,
    "indexOf": 1, "substring": (1, 2), "length": 0, "upper": 0, "lower": 0, "trim": 0, "split": 1,
    "toChars": 0,
}  # fmt: skip


def _iterating(name: str, base: Fn, crit: Fn, with_index: bool) -> Fn:
    def each(focus: list[Any], env: Env) -> list[Any]:
        items = base(focus, env)
        out: list[Any] = []
        for index, item in enumerate(items):
            # a new environment per item only when the criteria reads $index
            result = crit([item], {**env, "$index": index} if with_index else env)
            if name == "select":
                out.extend(result)
                continue
            flag = _is_true(result)
            if name == "where":
                if flag is True:
                    out.append(item)
            elif name == "all":
                if flag is not True:
                    return [False]
            elif flag is True:  # exists(criteria)
                return [True]
        if name == "all":
            return [True]
        if name == "exists":
            return [False]
        return out

    return each


def _repeat(base: Fn, projection: Fn) -> Fn:
    def repeat(focus: list[Any], env: Env) -> list[Any]:
        out: list[Any] = []
        seen: set[Any] = set()
        pending = list(base(focus, env))
        while pending:
            item = pending.pop(0)
            for child in projection([item], env):
                k = _key(child)
                if k not in seen:
                    seen.add(k)
                    out.append(child)
                    pending.append(child)
        return out

    return repeat


def _arity(name: str, args: list[Fn], allowed: int | tuple[int, ...]) -> None:
    counts = allowed if isinstance(allowed, tuple) else (allowed,)
    if len(args) not in counts:
        raise FhirPathError(f"{name}() takes {' or '.join(map(str, counts))} argument(s), got {len(args)}")


def _function(
    name: str, base: Fn, args: list[Fn], type_name: str | None, dialect: Dialect, with_index: bool = False
) -> Fn:
    if name in _STRING_FUNCTIONS:
        _arity(name, args, _STRING_FUNCTIONS[name])
        return _string_function(name, base, args, dialect.full_match)
    if name in ("where", "select", "all") or (name == "exists" and args):
        _arity(name, args, 1)
        return _iterating(name, base, args[0], with_index)
    if name == "empty" and not args:  # the commonest function of invariants: no _SIMPLE indirection
        return lambda focus, env: [not base(focus, env)]
    if name == "exists" and not args:
        return lambda focus, env: [bool(base(focus, env))]
    simple = _SIMPLE.get(name)
    if simple is not None:
        _arity(name, args, 0)
        return lambda focus, env: simple(base(focus, env))
    if name == "getResourceKey":
        _arity(name, args, 0)
        return lambda focus, env: [v["id"] for v in base(focus, env) if type(v) is dict and "id" in v]
    if name == "getReferenceKey":
        _arity(name, args, 0)

        def reference_keys(focus: list[Any], env: Env) -> list[Any]:
            keys = (_reference_key(v, type_name) for v in base(focus, env))
            return [k for k in keys if k is not None]

        return reference_keys
    if name == "join":
        _arity(name, args, (0, 1))
        separator = args[0] if args else (lambda focus, env: [""])

        def join(focus: list[Any], env: Env) -> list[Any]:
            sep = _singleton(separator(focus, env), "join") or ""
            return [sep.join(str(v) for v in base(focus, env))]

        return join
    if name == "extension":
        _arity(name, args, 1)
        url_fn = args[0]

        def extension(focus: list[Any], env: Env) -> list[Any]:
            url = _singleton(url_fn(focus, env), "extension")
            return [e for e in _children(base(focus, env), "extension") if e.get("url") == url]

        return extension
    if name in ("first", "last", "tail", "single"):
        _arity(name, args, 0)
        return _position(name, base)
    if name in ("skip", "take"):
        _arity(name, args, 1)
        count_fn = args[0]

        def slice_(focus: list[Any], env: Env) -> list[Any]:
            n = _singleton(count_fn(focus, env), name) or 0
            items = base(focus, env)
            return items[max(n, 0) :] if name == "skip" else items[: max(n, 0)]

        return slice_
    if name in ("union", "combine", "intersect", "exclude", "subsetOf", "supersetOf"):
        _arity(name, args, 1)
        return _set_function(name, base, args[0])
    if name == "iif":
        _arity(name, args, (2, 3))
        criterion, then = args[0], args[1]
        otherwise = args[2] if len(args) == 3 else (lambda focus, env: [])
        return lambda focus, env: (
            then(focus, env) if _is_true(criterion(focus, env)) is True else otherwise(focus, env)
        )
    if name == "repeat":
        _arity(name, args, 1)
        return _repeat(base, args[0])
    if name in ("lowBoundary", "highBoundary"):
        _arity(name, args, (0, 1))
        high = name == "highBoundary"
        fhir_type = getattr(base, "fhir_type", None)  # known after ofType(): a date-only dateTime

        def boundary(focus: list[Any], env: Env) -> list[Any]:
            value = _singleton(base(focus, env), name)
            result = None if value is None else boundaries.boundary(value, high, fhir_type)
            return [] if result is None else [result]

        return boundary
    if name == "trace":
        return base
    if name in ("now", "today", "timeOfDay", "resolve", "memberOf", "conformsTo", "htmlChecks"):
        raise FhirPathError(f"{name}() is not supported")
    raise FhirPathError(f"unknown function {name}()")


def _position(name: str, base: Fn) -> Fn:
    if name == "first":
        return lambda focus, env: base(focus, env)[:1]
    if name == "last":
        return lambda focus, env: base(focus, env)[-1:]
    if name == "tail":
        return lambda focus, env: base(focus, env)[1:]

    def single(focus: list[Any], env: Env) -> list[Any]:
        items = base(focus, env)
        if len(items) > 1:
            raise FhirPathRuntimeError("single() on a collection of several items")
        return items

    return single


def _set_function(name: str, base: Fn, other: Fn) -> Fn:
    def apply(focus: list[Any], env: Env) -> list[Any]:
        a, b = base(focus, env), other(focus, env)
        if name == "union":
            return _distinct(a + b)
        if name == "combine":
            return a + b
        keys_b = {_key(v) for v in b}
        if name == "intersect":
            return _distinct([v for v in a if _key(v) in keys_b])
        if name == "exclude":
            return [v for v in a if _key(v) not in keys_b]
        keys_a = {_key(v) for v in a}
        return [keys_a <= keys_b] if name == "subsetOf" else [keys_b <= keys_a]

    return apply


def _not(items: list[Any]) -> list[Any]:
    flag = _is_true(items)
    return [] if flag is None else [not flag]


def _to_string(items: list[Any]) -> list[Any]:
    value = _singleton(items, "toString")
    if value is None or type(value) is dict:
        return []
    if type(value) is bool:
        return ["true" if value else "false"]
    return [str(value)]


def _to_integer(items: list[Any]) -> list[Any]:
    value = _singleton(items, "toInteger")
    if type(value) is int and type(value) is not bool:
        return [value]
    if type(value) is bool:
        return [int(value)]
    if type(value) is str and re.fullmatch(r"[+-]?\d+", value):
        return [int(value)]
    return []


def _to_decimal(items: list[Any]) -> list[Any]:
    value = _singleton(items, "toDecimal")
    if _is_number(value):
        return [value]
    if type(value) is bool:
        return [Decimal(int(value))]
    if type(value) is str and re.fullmatch(r"[+-]?\d+(\.\d+)?", value):
        return [Decimal(value)]
    return []


def _all_flags(items: list[Any], wanted: bool, every: bool) -> list[Any]:
    flags = [v is wanted for v in items if type(v) is bool]
    return [all(flags)] if every else [any(flags)]


_SIMPLE: dict[str, Callable[[list[Any]], list[Any]]] = {
    "empty": lambda items: [not items],
    "exists": lambda items: [bool(items)],
    "not": _not,
    "count": lambda items: [len(items)],
    "distinct": _distinct,
    "isDistinct": lambda items: [len(_distinct(items)) == len(items)],
    "hasValue": lambda items: [len(items) == 1 and type(items[0]) is not dict],
    "allTrue": lambda items: _all_flags(items, True, every=True),
    "anyTrue": lambda items: _all_flags(items, True, every=False),
    "allFalse": lambda items: _all_flags(items, False, every=True),
    "anyFalse": lambda items: _all_flags(items, False, every=False),
    "toString": _to_string,
    "toInteger": _to_integer,
    "toDecimal": _to_decimal,
    "children": lambda items: [
        c
        for v in items
        if type(v) is dict
        for k, x in v.items()
        if k != "resourceType"
        for c in (x if type(x) is list else [x])
    ],
    "abs": lambda items: [abs(v) for v in items[:1] if _is_number(v)],
}


def compile_path(
    expression: str, constants: dict[str, list[Any]] | None = None, dialect: Dialect = SQL_ON_FHIR
) -> Fn:
    """Compile ``expression``; raises :class:`FhirPathError` if it is invalid or unsupported."""
    if not isinstance(expression, str) or not expression.strip():
        raise FhirPathError("a FHIRPath expression must be a non-empty string")
    parser = _Parser(_tokenize(expression), constants or {}, dialect)
    try:
        fn = parser.expression()
    except RecursionError as exc:
        raise FhirPathError("expression nested too deeply") from exc
    if parser.peek() is not None:
        raise FhirPathError(f"unexpected {parser.peek()[1]!r} after a complete expression")  # type: ignore[index]
    return fn

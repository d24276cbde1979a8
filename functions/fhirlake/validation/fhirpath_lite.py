"""A small FHIRPath compiler for the subset the R4 invariants use, evaluated on plain JSON.

Supported: paths (with choice elements: ``value`` finds ``valueQuantity``), literals (strings, numbers,
booleans), ``%resource``/``%rootResource``/``%context``/``%ucum``/``$this``, operators ``implies or xor
and in contains = != < > <= >= | + - &`` with FHIRPath's three-valued logic and empty propagation, and
the functions ``empty exists count not where all select first hasValue startsWith endsWith contains
matches length toInteger isDistinct distinct intersect trace``. :func:`try_compile` returns ``None`` for
anything else (type operators ``is``/``as``, ``resolve()``, ``iif``...), and the caller falls back to
fhirpathpy. Compiled expressions are closures: no parsing or model lookups at evaluation time.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fhirlake.fhir.json import JsonDecimal
from fhirlake.validation.invariants import compare_datetimes

Fn = Callable[[list[Any], dict[str, Any]], list[Any]]


class Unsupported(Exception):
    pass


_TOKEN_RE = re.compile(
    r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<num>\d+(?:\.\d+)?)|(?P<op><=|>=|!=|!~|[=~<>|+\-&*/(),.\[\]])"
    r"|(?P<var>%[A-Za-z_][A-Za-z0-9_]*)|(?P<this>\$this)|(?P<id>[A-Za-z_][A-Za-z0-9_]*|`[^`]+`))"
)
# JSON numbers: float/int from orjson, JsonDecimal (a Decimal) when precision had to be kept.
_NUMBER_TYPES = (int, float, JsonDecimal)
_KEYWORD_OPS = {"implies": 1, "or": 2, "xor": 2, "and": 3, "in": 4, "contains": 4}
_SYMBOL_OPS = {"=": 5, "!=": 5, "<": 6, ">": 6, "<=": 6, ">=": 6, "|": 7, "+": 9, "-": 9, "&": 9}
# choice element name -> its JSON names (value -> valueQuantity, ...), filled by the engine as it loads
# type tables, so ``value`` navigates to whichever ``value[x]`` is present
CHOICES: dict[str, set[str]] = {}


def _tokenize(src: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    src = src.rstrip()
    while pos < len(src):
        m = _TOKEN_RE.match(src, pos)
        if not m or m.end() == pos:
            raise Unsupported(src[pos:])
        pos = m.end()
        kind = m.lastgroup
        assert kind is not None
        tokens.append((kind, m.group(kind)))
    return tokens


# -- runtime helpers ----------------------------------------------------------------------------------
def _child(items: list[Any], name: str) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if type(item) is not dict:
            continue
        v = item.get(name)
        if v is None:
            for k in CHOICES.get(name, ()):
                v = item.get(k)
                if v is not None:
                    break
            else:
                continue
        if type(v) is list:
            out.extend(x for x in v if x is not None)
        else:
            out.append(v)
    return out


def _bool(items: list[Any]) -> bool | None:
    if not items:
        return None
    if len(items) > 1:
        raise Unsupported("boolean of a collection")
    v = items[0]
    return v if type(v) is bool else True


def _wrap(b: bool | None) -> list[Any]:
    return [] if b is None else [b]


def _eq(a: list[Any], b: list[Any]) -> bool | None:
    if not a or not b:
        return None
    if len(a) != len(b):
        return False
    return all((type(x) is bool) == (type(y) is bool) and x == y for x, y in zip(a, b, strict=True))


def _cmp(a: list[Any], b: list[Any]) -> int | None:
    if not a or not b:
        return None
    if len(a) > 1 or len(b) > 1:
        raise Unsupported("comparison of collections")
    x, y = a[0], b[0]
    tx, ty = type(x), type(y)
    if tx in _NUMBER_TYPES and ty in _NUMBER_TYPES:
        return (x > y) - (x < y)
    if tx is str and ty is str:
        if x[:4].isdigit() and y[:4].isdigit():
            return compare_datetimes(x, y)
        return (x > y) - (x < y)
    if tx is dict and ty is dict:  # Quantity: same unit only
        if x.get("code", x.get("unit")) != y.get("code", y.get("unit")) or x.get("system") != y.get("system"):
            return None
        return _cmp(_child([x], "value"), _child([y], "value"))
    return None


def _key(v: Any) -> Any:
    if type(v) is dict or type(v) is list:
        import orjson

        return orjson.dumps(v, option=orjson.OPT_SORT_KEYS)
    return (type(v) is bool, v)


def _distinct(items: list[Any]) -> list[Any]:
    seen: set[Any] = set()
    out = []
    for v in items:
        k = _key(v)
        if k not in seen:
            seen.add(k)
            out.append(v)
    return out


def _singleton_str(items: list[Any]) -> str | None:
    if not items:
        return None
    if len(items) > 1 or type(items[0]) is not str:
        raise Unsupported("string function on a non-string")
    return items[0]


# -- parser -------------------------------------------------------------------------------------------
class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.t = tokens
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.t[self.i] if self.i < len(self.t) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (value is not None and tok[1] != value):
            raise Unsupported(f"expected {value}")
        self.i += 1
        return tok

    def binop_prec(self) -> int:
        tok = self.peek()
        if tok is None:
            return 0
        kind, val = tok
        if kind == "id" and val in _KEYWORD_OPS:
            return _KEYWORD_OPS[val]
        if kind == "id" and val in ("is", "as", "div", "mod"):
            raise Unsupported(val)
        if kind == "op" and val in _SYMBOL_OPS:
            return _SYMBOL_OPS[val]
        return 0

    def expr(self, min_prec: int = 1) -> Fn:
        left = self.unary()
        while True:
            prec = self.binop_prec()
            if prec < min_prec or prec == 0:
                return left
            op = self.take()[1]
            right = self.expr(prec + 1)
            left = _binary(op, left, right)

    def unary(self) -> Fn:
        tok = self.peek()
        if tok and tok == ("op", "-"):
            self.take()
            operand = self.unary()
            return lambda f, e: [-v for v in operand(f, e)]
        return self.postfix(self.term())

    def term(self) -> Fn:
        kind, val = self.take()
        if kind == "str":
            s = val[1:-1].replace("\\'", "'").replace("\\\\", "\\")
            return lambda f, e: [s]
        if kind == "num":
            n: Any = float(val) if "." in val else int(val)
            return lambda f, e: [n]
        if kind == "var":
            name = val[1:]
            if name == "ucum":
                return lambda f, e: ["http://unitsofmeasure.org"]
            if name not in ("resource", "rootResource", "context"):
                raise Unsupported(val)
            return lambda f, e: [e[name]] if e.get(name) is not None else []
        if kind == "this":
            return lambda f, e: f
        if kind == "op" and val == "(":
            inner = self.expr()
            self.take(")")
            return inner
        if kind == "id":
            if val in ("true", "false"):
                b = val == "true"
                return lambda f, e: [b]
            if val[0].isupper():
                raise Unsupported("type name")
            return self.invocation(val, lambda f, e: f)
        raise Unsupported(val)

    def postfix(self, fn: Fn) -> Fn:
        while True:
            tok = self.peek()
            if tok == ("op", "."):
                self.take()
                kind, name = self.take()
                if kind != "id":
                    raise Unsupported(name)
                fn = self.invocation(name.strip("`"), fn)
            elif tok == ("op", "["):
                raise Unsupported("indexer")
            else:
                return fn

    def invocation(self, name: str, base: Fn) -> Fn:
        if self.peek() == ("op", "("):
            self.take()
            args: list[Fn] = []
            while self.peek() != ("op", ")"):
                args.append(self.expr())
                if self.peek() == ("op", ","):
                    self.take()
            self.take(")")
            return _function(name, base, args)
        return lambda f, e: _child(base(f, e), name)


def _binary(op: str, left: Fn, right: Fn) -> Fn:
    if op == "and":

        def f_and(f: list[Any], e: dict[str, Any]) -> list[Any]:
            a = _bool(left(f, e))
            if a is False:
                return [False]
            b = _bool(right(f, e))
            if b is False:
                return [False]
            return [True] if a and b else []

        return f_and
    if op == "or":

        def f_or(f: list[Any], e: dict[str, Any]) -> list[Any]:
            a = _bool(left(f, e))
            if a is True:
                return [True]
            b = _bool(right(f, e))
            if b is True:
                return [True]
            return [False] if a is False and b is False else []

        return f_or
    if op == "xor":

        def f_xor(f: list[Any], e: dict[str, Any]) -> list[Any]:
            a, b = _bool(left(f, e)), _bool(right(f, e))
            return [] if a is None or b is None else [a != b]

        return f_xor
    if op == "implies":

        def f_implies(f: list[Any], e: dict[str, Any]) -> list[Any]:
            a = _bool(left(f, e))
            if a is False:
                return [True]
            b = _bool(right(f, e))
            if b is True:
                return [True]
            return [False] if a is True and b is False else []

        return f_implies
    if op == "=":
        return lambda f, e: _wrap(_eq(left(f, e), right(f, e)))
    if op == "!=":

        def f_ne(f: list[Any], e: dict[str, Any]) -> list[Any]:
            r = _eq(left(f, e), right(f, e))
            return [] if r is None else [not r]

        return f_ne
    if op in ("<", ">", "<=", ">="):
        test = {"<": lambda c: c < 0, ">": lambda c: c > 0, "<=": lambda c: c <= 0, ">=": lambda c: c >= 0}[
            op
        ]

        def f_cmp(f: list[Any], e: dict[str, Any]) -> list[Any]:
            c = _cmp(left(f, e), right(f, e))
            return [] if c is None else [test(c)]

        return f_cmp
    if op == "|":
        return lambda f, e: _distinct(left(f, e) + right(f, e))
    if op in ("in", "contains"):
        item_fn, coll_fn = (left, right) if op == "in" else (right, left)

        def f_in(f: list[Any], e: dict[str, Any]) -> list[Any]:
            item = item_fn(f, e)
            if not item:
                return []
            if len(item) > 1:
                raise Unsupported("membership of a collection")
            coll = coll_fn(f, e)
            return [any(_eq(item, [c]) for c in coll)]

        return f_in
    if op in ("+", "-", "&"):

        def f_arith(f: list[Any], e: dict[str, Any]) -> list[Any]:
            a, b = left(f, e), right(f, e)
            if op == "&":
                return ["".join(str(x[0]) if x else "" for x in (a, b))]
            if not a or not b:
                return []
            if len(a) > 1 or len(b) > 1:
                raise Unsupported("arithmetic on collections")
            x, y = a[0], b[0]
            if op == "+":
                if type(x) is type(y) and type(x) in (str, *_NUMBER_TYPES):
                    return [x + y]
                raise Unsupported("+ on these types")
            if type(x) in _NUMBER_TYPES and type(y) in _NUMBER_TYPES:
                return [x - y]
            raise Unsupported("- on these types")

        return f_arith
    raise Unsupported(op)


def _function(name: str, base: Fn, args: list[Fn]) -> Fn:
    n = len(args)
    if name == "empty" and n == 0:
        return lambda f, e: [not base(f, e)]
    if name == "exists" and n == 0:
        return lambda f, e: [bool(base(f, e))]
    if name in ("exists", "where", "all", "select") and n == 1:
        crit = args[0]

        def each(f: list[Any], e: dict[str, Any]) -> list[Any]:
            items = base(f, e)
            if name == "select":
                out: list[Any] = []
                for item in items:
                    out.extend(crit([item], e))
                return out
            results = [(_bool(crit([item], e)), item) for item in items]
            if name == "where":
                return [item for r, item in results if r is True]
            if name == "exists":
                return [any(r is True for r, _ in results)]
            return [all(r is True for r, _ in results)]

        return each
    if name == "count" and n == 0:
        return lambda f, e: [len(base(f, e))]
    if name == "not" and n == 0:

        def f_not(f: list[Any], e: dict[str, Any]) -> list[Any]:
            b = _bool(base(f, e))
            return [] if b is None else [not b]

        return f_not
    if name == "first" and n == 0:
        return lambda f, e: base(f, e)[:1]
    if name == "hasValue" and n == 0:
        return lambda f, e: [any(type(v) is not dict for v in base(f, e))]
    if name == "trace":
        return base
    if name == "distinct" and n == 0:
        return lambda f, e: _distinct(base(f, e))
    if name == "isDistinct" and n == 0:

        def f_isdistinct(f: list[Any], e: dict[str, Any]) -> list[Any]:
            items = base(f, e)
            return [len(_distinct(items)) == len(items)]

        return f_isdistinct
    if name == "intersect" and n == 1:
        other = args[0]

        def f_intersect(f: list[Any], e: dict[str, Any]) -> list[Any]:
            keys = {_key(v) for v in other(f, e)}
            return _distinct([v for v in base(f, e) if _key(v) in keys])

        return f_intersect
    if name in ("startsWith", "endsWith", "contains", "matches") and n == 1:
        arg = args[0]

        def f_str(f: list[Any], e: dict[str, Any]) -> list[Any]:
            s = _singleton_str(base(f, e))
            a = _singleton_str(arg(f, e))
            if s is None or a is None:
                return []
            if name == "startsWith":
                return [s.startswith(a)]
            if name == "endsWith":
                return [s.endswith(a)]
            if name == "contains":
                return [a in s]
            return [re.fullmatch(a, s) is not None]

        return f_str
    if name == "length" and n == 0:

        def f_len(f: list[Any], e: dict[str, Any]) -> list[Any]:
            s = _singleton_str(base(f, e))
            return [] if s is None else [len(s)]

        return f_len
    if name == "toInteger" and n == 0:

        def f_toint(f: list[Any], e: dict[str, Any]) -> list[Any]:
            items = base(f, e)
            if not items:
                return []
            v = items[0]
            if type(v) is int:
                return [v]
            if type(v) is str and re.fullmatch(r"[+-]?\d+", v):
                return [int(v)]
            return []

        return f_toint
    raise Unsupported(name)


_NO_ENV: dict[str, Any] = {}  # shared, never written


def try_compile(expression: str) -> Callable[[Any, Any], bool | None] | None:
    """Compile ``expression``; the result maps (focus JSON value, resource context) to True/False/None."""
    try:
        parser = _Parser(_tokenize(expression))
        fn = parser.expr()
        if parser.peek() is not None:
            return None
    except (Unsupported, RecursionError):
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

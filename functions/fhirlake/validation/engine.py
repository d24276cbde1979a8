"""The R4 validator: a walk over parsed JSON driven by precomputed per-type element tables.

Tables (``fhirlake/data/r4/validation/*.json``, made by ``scripts/build_validation_tables.py`` from the
official R4 core package) are loaded lazily per resource type and compiled once into :class:`Node`
objects: a dict from JSON property name to :class:`Prop` (cardinality, type, primitive checker,
required binding, choice group, invariants). Validation is then dict lookups and precompiled regexes,
no model classes.

Levels: ``minimal`` (object, resourceType, id), ``structure-only`` (+ every element: unknown
elements, cardinality, types, primitive formats, primitive extensions, inline resources) and
``strict`` (+ required bindings that the spec enumerates, and error-severity invariants).

Expressions are FHIRPath locations with an index on every array item (``Observation.component[1]
.valueQuantity.value``); choice elements are named by their JSON name (``valueQuantity``). Missing
required elements are reported on the parent, like the HL7 validator. Diagnostics name the element
and the rule, never a value.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import orjson

from fhirlake.fhir.outcome import Issue, error
from fhirlake.fhir.types import is_valid_id, resource_types
from fhirlake.validation import ValidationLevel
from fhirlake.validation.primitives import CHECKERS, URI_LIKE, Checker

_TABLES = resources.files("fhirlake") / "data" / "r4" / "validation"

PRIM, COMPLEX, RESOURCE = 0, 1, 2


class Prop:
    """One JSON property of an object-shaped element."""

    __slots__ = (
        "check",
        "choice",
        "cons",
        "extra",
        "kind",
        "local_ref_only",
        "many",
        "max",
        "min",
        "name",
        "node",
        "single",
        "type",
        "uri",
        "vs",
    )

    def __init__(self, name: str, min_: int, max_: int, type_: str, vs: str | None, choice: str | None):
        self.name = name
        self.min = min_
        self.max = max_
        self.many = max_ != 1
        self.type = type_
        self.vs = vs
        self.choice = choice
        self.node: Node | None = None
        self.check: Checker | None = CHECKERS.get(type_)
        self.uri = type_ in URI_LIKE
        self.set_invariants([])
        if self.check is not None:
            self.kind = PRIM
        elif type_ == "Resource":
            self.kind = RESOURCE
        else:
            self.kind = COMPLEX
        # the walk's dispatch for a value that is not an array: kind, or -1 when an array is expected
        self.single = -1 if self.many else self.kind

    def set_invariants(self, cons: list[Any]) -> None:
        self.cons = cons
        # strict-only rules beyond the structure (binding, local reference for dom-3/ref-1, invariants)
        self.extra = self.vs is not None or self.uri or bool(cons)
        # a uri-like element with no binding or invariant has a strict rule only for '#local' values
        # (most Reference.reference and Coding.system values: the walk skips the call for the others)
        self.local_ref_only = self.uri and self.vs is None and not cons


class Node:
    """An object-shaped element (a type root or a backbone element)."""

    __slots__ = ("cons", "is_extension", "is_resource", "path", "props", "required")

    def __init__(self, path: str, is_resource: bool = False):
        self.path = path
        self.is_extension = path == "Extension"
        self.is_resource = is_resource
        self.props: dict[str, Prop] = {}
        self.required: list[tuple[str, tuple[str, ...]]] = []
        self.cons: list[Any] = []


class Registry:
    """Lazily loaded, compiled element tables (shared by every validator instance)."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self.loaded: set[str] = set()
        self._valuesets: dict[str, tuple[frozenset[str], dict[str, frozenset[str]]]] | None = None
        self._datatypes_loaded = False

    # -- tables -----------------------------------------------------------------------------------
    def _compile(self, table: dict[str, Any], is_resource: bool) -> None:
        from fhirlake.fhir.fhirpath import ChoiceNames
        from fhirlake.validation.invariants import CHOICES, compile_invariant

        root = table["type"]
        constraints = table.get("constraints", {})
        for path, props in table["nodes"].items():
            node = Node(path, is_resource=is_resource and path == root)
            required: dict[str, list[str]] = {}
            for name, min_, max_, type_, vs, choice in props:
                if path == "Reference" and name == "reference":
                    type_ = "reference"
                prop = Prop(name, min_, max_, type_, vs, choice)
                if choice:
                    CHOICES.setdefault(choice, ChoiceNames()).add(name)
                node.props[name] = prop
                if min_ > 0:
                    label = (choice + "[x]") if choice else name
                    keys = required.setdefault(label, [])
                    keys.append(name)
                    if prop.kind == PRIM:
                        keys.append("_" + name)
                leaf = constraints.get(f"{path}.{choice}[x]" if choice else f"{path}.{name}")
                if leaf and type_[0] != "#":  # backbone nodes carry their own invariants
                    prop.set_invariants(
                        _compiled(compile_invariant(k, h, x, f"{path}.{name}") for k, h, x in leaf)
                    )
            node.required = [(label, tuple(keys)) for label, keys in required.items()]
            node.cons = _compiled(compile_invariant(k, h, x, path) for k, h, x in constraints.get(path, []))
            self.nodes[path] = node

    def _load_datatypes(self) -> None:
        if self._datatypes_loaded:
            return
        with _LOAD_LOCK:  # the flag is set only once every datatype is compiled (racing threads wait)
            if self._datatypes_loaded:
                return
            data = orjson.loads((_TABLES / "datatypes.json").read_bytes())
            for table in data.values():
                self._compile(table, is_resource=False)
            self._datatypes_loaded = True

    def resource_node(self, rtype: str) -> Node:
        if rtype not in self.loaded:  # loaded once, completely, even when threads race (local runtime)
            with _LOAD_LOCK:
                if rtype not in self.loaded:
                    table = orjson.loads((_TABLES / f"{rtype}.json").read_bytes())
                    self._compile(table, is_resource=True)
                    self.loaded.add(rtype)
        return self.nodes[rtype]

    def node_for(self, prop: Prop) -> Node:
        node = prop.node
        if node is None:
            t = prop.type
            if t[0] == "#":
                t = t[1:]
                node = self.nodes.get(t)
                if node is None:  # contentReference into another file cannot happen in R4 core
                    self.resource_node(t.split(".", 1)[0])
                    node = self.nodes[t]
            else:
                node = self.nodes.get(t)
                if node is None:
                    self._load_datatypes()
                    node = self.nodes[t]
            prop.node = node
        return node

    def valueset(self, url: str) -> tuple[frozenset[str], dict[str, frozenset[str]]]:
        if self._valuesets is None:
            raw = orjson.loads((_TABLES / "valuesets.json").read_bytes())
            vs: dict[str, tuple[frozenset[str], dict[str, frozenset[str]]]] = {}
            for u, systems in raw.items():
                by_system = {s: frozenset(c) for s, c in systems.items()}
                vs[u] = (frozenset(c for codes in systems.values() for c in codes), by_system)
            self._valuesets = vs
        return self._valuesets[url]


_LOAD_LOCK = threading.RLock()
REGISTRY = Registry()
_RESOURCE_TYPES = resource_types()


def _compiled(invariants: Any) -> list[Any]:
    return [i for i in invariants if i is not None]


@dataclass
class ResourceContext:
    """Per-resource state for rules spanning the resource (dom-3, ref-1, %resource)."""

    resource: dict[str, Any]
    root: dict[str, Any]
    # ('#id', expression, from Reference.reference): local references, for dom-3 and ref-1
    local_refs: list[tuple[str, str, bool]] = field(default_factory=list)


# A location is the FHIRPath expression of an element, built only when an issue is reported: the root
# expression (a string, e.g. ``Patient``), ``(parent, name)`` for a single element or ``(parent, name, i)``
# for an array item. The walk passes these tuples down instead of formatting a string per element.
Loc = Any


def expression(loc: Loc) -> str:
    """The FHIRPath expression of a location (``Observation.component[1].valueQuantity``)."""
    parts: list[str] = []
    while type(loc) is tuple:
        parts.append(f".{loc[1]}[{loc[2]}]" if len(loc) == 3 else f".{loc[1]}")
        loc = loc[0]
    parts.append(loc)
    parts.reverse()
    return "".join(parts)


class Run:
    """One validation call: issues plus the walk."""

    __slots__ = ("issues", "rc", "reg", "strict")

    def __init__(self, strict: bool) -> None:
        self.issues: list[Issue] = []
        self.strict = strict
        self.reg = REGISTRY
        self.rc: ResourceContext | None = None

    def err(self, code: str, diagnostics: str, loc: Loc) -> None:
        self.issues.append(error(code, diagnostics, expression(loc)))

    # -- resources ----------------------------------------------------------------------------------
    def resource(self, res: Any, loc: Loc, contained: bool) -> None:
        if type(res) is not dict:
            self.err("structure", "A resource must be a JSON object", loc)
            return
        rtype = res.get("resourceType")
        if type(rtype) is not str or rtype not in _RESOURCE_TYPES:
            self.err("structure", "resourceType is missing or not an R4 resource type", loc)
            return
        rid = res.get("id")
        if rid is not None and not is_valid_id(rid):
            self.err("value", "Invalid resource id (1-64 of A-Z a-z 0-9 - .)", (loc, "id"))
        node = self.reg.nodes.get(rtype) or self.reg.resource_node(rtype)
        parent = self.rc
        rc = ResourceContext(res, parent.root if (contained and parent) else res)
        self.rc = rc
        try:
            self.obj(res, node, loc)
        finally:
            self.rc = parent
        if contained and parent is not None:
            parent.local_refs.extend(rc.local_refs)
            if self.strict:
                self.contained_rules(res, loc)
        elif self.strict:
            self.resource_rules(res, rc, loc)

    def contained_rules(self, res: dict[str, Any], loc: Loc) -> None:
        """dom-2, dom-4, dom-5 (evaluated natively, on the contained resource)."""
        if "contained" in res:
            self.err(
                "invariant",
                "Constraint failed: dom-2: If the resource is contained in another resource, "
                "it SHALL NOT contain nested Resources",
                loc,
            )
        meta = res.get("meta")
        if type(meta) is dict:
            if "versionId" in meta or "lastUpdated" in meta:
                self.err(
                    "invariant",
                    "Constraint failed: dom-4: If a resource is contained in another resource, "
                    "it SHALL NOT have a meta.versionId or a meta.lastUpdated",
                    loc,
                )
            if "security" in meta:
                self.err(
                    "invariant",
                    "Constraint failed: dom-5: If a resource is contained in another resource, "
                    "it SHALL NOT have a security label",
                    loc,
                )

    def resource_rules(self, res: dict[str, Any], rc: ResourceContext, loc: Loc) -> None:
        """dom-3 and ref-1 for a root resource (top level, or a Bundle/Parameters entry)."""
        contained = res.get("contained")
        if not rc.local_refs and not contained:
            return
        ids: set[str] = set()
        if type(contained) is list:
            for c in contained:
                if type(c) is dict and type(c.get("id")) is str:
                    ids.add(c["id"])
        for ref, where, is_reference in rc.local_refs:
            if is_reference and ref != "#" and ref[1:] not in ids:
                self.err(
                    "invariant",
                    "Constraint failed: ref-1: SHALL have a contained resource if a local "
                    "reference is provided",
                    where,
                )
        if type(contained) is list and contained:
            refs = {r for r, _, _ in rc.local_refs}
            for i, c in enumerate(contained):
                if type(c) is not dict:
                    continue
                cid = c.get("id")
                if type(cid) is str and "#" + cid in refs:
                    continue
                if _refers_to_container(c):
                    continue
                self.err(
                    "invariant",
                    "Constraint failed: dom-3: If the resource is contained in another resource, "
                    "it SHALL be referred to from elsewhere in the resource or SHALL refer to the containing "
                    "resource",
                    (loc, "contained", i),
                )

    # -- objects ---------------------------------------------------------------------------------------
    def obj(self, obj: dict[str, Any], node: Node, loc: Loc) -> None:
        if not obj:
            self.err("invalid", "Object must have content (ele-1)", loc)
            return
        props = node.props
        strict = self.strict
        choices: dict[str, str] | None = None
        for key, val in obj.items():
            p = props.get(key)
            if p is None:
                if key[:1] == "_":
                    self.prim_ext(obj, key, val, node, loc)
                elif key != "resourceType" or not node.is_resource:
                    self.err("structure", f"Unknown element '{key[:64]}'", (loc, key[:64]))
                continue
            if p.choice is not None:
                if choices is None:
                    choices = {p.choice: key}
                elif p.choice in choices:
                    self.err("structure", f"Only one of {p.choice}[x] may be present", (loc, key))
                else:
                    choices[p.choice] = key
            if type(val) is not list:
                mode = p.single
                if mode == PRIM:
                    if val is not None:
                        msg = p.check(val)  # type: ignore[misc]
                        if msg is None:
                            if strict and p.extra and (not p.local_ref_only or val[:1] == "#"):
                                self.prim_rules(val, p, (loc, key))
                            continue
                    else:
                        msg = "null is not a valid value"
                    self.err("value", msg, (loc, key))
                elif mode == COMPLEX and type(val) is dict:
                    self.obj(val, p.node or self.reg.node_for(p), (loc, key))
                    if strict and p.extra:
                        self.complex_rules(val, p, (loc, key))
                else:
                    self.single(val, p, (loc, key))
                continue
            if (not p.many or not val or (p.max > 1 and len(val) > p.max)) and not self.bad_array(
                val, p, (loc, key)
            ):
                continue
            kind = p.kind
            if kind == PRIM:
                self.prim_array(obj, key, val, p, loc)
            elif kind == COMPLEX:
                child = p.node or self.reg.node_for(p)
                rules = strict and p.extra
                for i, v in enumerate(val):
                    if type(v) is dict:
                        self.obj(v, child, (loc, key, i))
                        if rules:
                            self.complex_rules(v, p, (loc, key, i))
                    else:
                        self.err("structure", "Must be a JSON object", (loc, key, i))
            else:
                contained = key == "contained"
                for i, v in enumerate(val):
                    self.resource(v, (loc, key, i), contained)
        for label, keys in node.required:
            for k in keys:
                if k in obj:
                    break
            else:
                self.err("required", f"Missing required element {label} (minimum cardinality 1)", loc)
        if strict:
            if node.cons:
                self.invariants(obj, node.cons, loc)
            if node.is_extension and ("extension" in obj) == (choices is not None and "value" in choices):
                self.err(
                    "invariant",
                    "Constraint failed: ext-1: Must have either extensions or value[x], not both",
                    loc,
                )

    def single(self, val: Any, p: Prop, loc: Loc) -> None:
        """A non-array value the fast path of :meth:`obj` does not take: inline resources and errors."""
        if p.many and val is not None:
            self.err("structure", "Must be an array", loc)
        elif p.kind == PRIM:
            self.err("value", "null is not a valid value", loc)
        elif p.kind == COMPLEX:
            self.err("structure", "Must be a JSON object", loc)
        else:
            self.resource(val, loc, False)

    def bad_array(self, val: list[Any], p: Prop, loc: Loc) -> bool:
        """Array-level problems; returns whether the items are still walked."""
        if not p.many:
            self.err("structure", "Must be a single value, not an array", loc)
            return False
        if not val:
            self.err(
                "invalid",
                "Array cannot be empty - the property should not be present if it has no values",
                loc,
            )
            return False
        self.err("structure", f"Too many items (max {p.max})", loc)
        return True

    def prim_array(self, obj: dict[str, Any], key: str, val: list[Any], p: Prop, loc: Loc) -> None:
        check = p.check
        rules = self.strict and p.extra
        for i, v in enumerate(val):
            if v is None:
                ext = obj.get("_" + key)
                if not (type(ext) is list and i < len(ext) and ext[i] is not None):
                    self.err(
                        "invalid", "null is only allowed in an array aligned with an extension", (loc, key, i)
                    )
            else:
                msg = check(v)  # type: ignore[misc]
                if msg is not None:
                    self.err("value", msg, (loc, key, i))
                    if rules and p.uri and type(v) is str and v[:1] == "#" and self.rc is not None:
                        self.rc.local_refs.append((v, (loc, key, i), p.type == "reference"))
                    if rules and p.cons:
                        self.invariants(v, p.cons, (loc, key, i))
                elif rules and (not p.local_ref_only or v[:1] == "#"):
                    self.prim_rules(v, p, (loc, key, i))

    def prim_rules(self, value: Any, p: Prop, loc: Loc) -> None:
        """Strict-only rules of a valid primitive: required binding, local reference, invariants."""
        if p.vs is not None:
            self.code_binding(value, p, loc)
        if p.uri and value[:1] == "#" and self.rc is not None:
            self.rc.local_refs.append((value, loc, p.type == "reference"))
        if p.cons:
            self.invariants(value, p.cons, loc)

    def complex_rules(self, value: dict[str, Any], p: Prop, loc: Loc) -> None:
        if p.vs is not None:
            self.coding_binding(value, p, loc)
        if p.cons:
            self.invariants(value, p.cons, loc)

    def prim_ext(self, obj: dict[str, Any], key: str, val: Any, node: Node, loc: Loc) -> None:
        """``_name``: id/extension of a primitive, an object or an array aligned with the values."""
        name = key[1:]
        p = node.props.get(name)
        if p is None or p.kind != PRIM:
            self.err("structure", f"Unknown element '{key[:64]}'", (loc, key[:64]))
            return
        where = (loc, name)
        if p.many:
            if type(val) is not list:
                self.err("structure", "Must be an array (aligned with the primitive values)", where)
                return
            base = obj.get(name)
            if base is not None and (type(base) is not list or len(base) != len(val)):
                self.err(
                    "structure", "The extension array must have the same length as the value array", where
                )
            if not val:
                self.err("invalid", "Array cannot be empty", where)
            for i, v in enumerate(val):
                if v is not None:
                    self.element_ext(v, (loc, name, i))
        else:
            if type(val) is list:
                self.err("structure", "Must be a single value, not an array", where)
                return
            self.element_ext(val, where)

    def element_ext(self, val: Any, where: Loc) -> None:
        if type(val) is not dict:
            self.err("structure", "Primitive extension must be a JSON object", where)
            return
        if not val:
            self.err("invalid", "Object must have content (ele-1)", where)
            return
        for k in val:
            if k not in ("id", "extension"):
                self.err(
                    "invalid", f"The property '{k[:64]}' is invalid in a primitive's extension object", where
                )
        if "id" in val:
            msg = CHECKERS["string"](val["id"])
            if msg:
                self.err("value", msg, (where, "id"))
        if "extension" in val:
            ext_node = self.reg.node_for(_EXTENSION_PROP)
            exts = val["extension"]
            if type(exts) is not list:
                self.err("structure", "Must be an array", (where, "extension"))
            elif not exts:
                self.err("invalid", "Array cannot be empty", (where, "extension"))
            else:
                for i, e in enumerate(exts):
                    if type(e) is dict:
                        self.obj(e, ext_node, (where, "extension", i))
                    else:
                        self.err("structure", "Must be a JSON object", (where, "extension", i))

    # -- terminology ----------------------------------------------------------------------------------
    def code_binding(self, value: str, p: Prop, loc: Loc) -> None:
        codes, _ = self.reg.valueset(p.vs)  # type: ignore[arg-type]
        if value not in codes:
            self.err("code-invalid", f"Code is not in the required value set {p.vs}", loc)

    def coding_binding(self, value: dict[str, Any], p: Prop, loc: Loc) -> None:
        codes, systems = self.reg.valueset(p.vs)  # type: ignore[arg-type]
        codings = value.get("coding") if p.type == "CodeableConcept" else [value]
        if type(codings) is not list:
            return
        seen = False
        for c in codings:
            if type(c) is not dict:
                continue
            code = c.get("code")
            if type(code) is not str:
                continue
            seen = True
            system = c.get("system")
            if type(system) is not str:  # absent (or malformed, reported by the structure walk)
                if code in codes:
                    return
            elif code in systems.get(system, ()):
                return
        if seen:
            self.err("code-invalid", f"Code is not in the required value set {p.vs}", loc)

    # -- invariants -----------------------------------------------------------------------------------
    def invariants(self, value: Any, cons: list[Any], loc: Loc) -> None:
        for inv in cons:
            if inv.fails(value, self.rc):
                self.err("invariant", f"Constraint failed: {inv.key}: {inv.human}", loc)


_EXTENSION_PROP = Prop("extension", 0, -1, "Extension", None, None)


def _refers_to_container(res: dict[str, Any]) -> bool:
    """dom-3's second branch: the contained resource has a reference to '#' (its container)."""
    stack: list[Any] = [res]
    while stack:
        v = stack.pop()
        if type(v) is dict:
            if v.get("reference") == "#":
                return True
            stack.extend(v.values())
        elif type(v) is list:
            stack.extend(v)
        elif v == "#":
            return True
    return False


@dataclass
class R4Validator:
    level: ValidationLevel

    def validate(self, resource: Any, expected_type: str | None = None) -> list[Issue]:
        if not isinstance(resource, dict):
            return [error("structure", "A resource must be a JSON object")]
        rtype = resource.get("resourceType")
        if not isinstance(rtype, str) or rtype not in resource_types():
            return [error("structure", "resourceType is missing or not an R4 resource type", "resourceType")]
        issues: list[Issue] = []
        if expected_type and rtype != expected_type:
            issues.append(
                error("invalid", f"Expected a {expected_type} resource, got {rtype}", "resourceType")
            )
        if self.level is ValidationLevel.MINIMAL:
            if "id" in resource and not is_valid_id(resource["id"]):
                issues.append(error("value", "Invalid resource id (1-64 of A-Z a-z 0-9 - .)", f"{rtype}.id"))
            return issues
        run = Run(strict=self.level is ValidationLevel.STRICT)
        try:
            run.resource(resource, rtype, False)
        except RecursionError:
            run.err("structure", "Resource is nested too deeply", rtype)
        except Exception:  # a validator bug must not become a 500; tests assert this never happens
            run.err("exception", "Internal validator error while checking this resource", rtype)
        issues.extend(run.issues)
        return issues


def build_validator(level: ValidationLevel) -> R4Validator:
    return R4Validator(ValidationLevel(level))

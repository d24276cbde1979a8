"""FHIRPath Patch paths resolved to places that can be changed, and the five operations on them.

A FHIRPath engine returns values; a patch needs to know *where* each value lives: the object that holds
it, the member name, and the array index. :class:`Locator` evaluates the subset of FHIRPath that patch
clients send (``Patient.identifier.where(system = 'x').value``, ``Patient.name[0].given``,
``Observation.value.ofType(Quantity)``, ``first()``/``last()``) to :class:`Location` objects. ``where``
criteria are full FHIRPath, compiled and evaluated by :mod:`fhirlake.fhir.fhirpath`.

Element definitions (cardinality, choice types, data types) come from the validator's R4 tables, so an
``add`` of ``identifier`` appends to an array and ``name=value`` with a ``valueQuantity`` becomes
``valueQuantity``. Primitive extensions (``_given`` beside ``given``) are kept aligned on every change.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fhirlake.fhir.fhirpath import FhirPathError, FhirPathRuntimeError, Fn, compile_path
from fhirlake.fhir.outcome import FhirError

if TYPE_CHECKING:
    from fhirlake.fhir.patch import FhirPathOperation
    from fhirlake.validation.engine import Node, Prop

_NAME = re.compile(r"\s*(`[^`]+`|[A-Za-z_][A-Za-z0-9_]*)")
_INDEX = re.compile(r"\[\s*([0-9]+)\s*\]")
_NO_ARGUMENTS = {"first", "last"}


@dataclass(frozen=True, slots=True)
class Step:
    kind: str  # member | index | where | first | last | ofType
    name: str = ""  # member name, type name of ofType
    number: int = 0  # index
    criteria: Fn | None = None  # where


@dataclass(slots=True)
class Location:
    """A value inside the resource: ``owner.value[member]`` or ``owner.value[member][index]``."""

    value: Any
    owner: Location | None
    member: str | None
    index: int | None
    prop: Prop | None  # the member's definition (None when unknown)
    node: Node | None  # the value's element table when it is an object


def parse_path(path: str, where: str) -> tuple[str | None, list[Step]]:
    """``Type.a[0].where(x = 'y').b`` -> ('Type', steps); a path may also start at a member."""
    match = _NAME.match(path)
    if match is None:
        raise _unsupported(where, "The path must start with the resource type or an element name")
    first = match.group(1).strip("`")
    root, steps = (first, []) if first[:1].isupper() else (None, [Step("member", first)])
    pos = match.end()
    while pos < len(path.rstrip()):
        index = _INDEX.match(path, pos)
        if index:
            steps.append(Step("index", number=int(index.group(1))))
            pos = index.end()
            continue
        if path[pos] != ".":
            raise _unsupported(where, f"Unexpected {path[pos]!r} at position {pos} of the path")
        name_match = _NAME.match(path, pos + 1)
        if name_match is None:
            raise _unsupported(where, f"Expected an element name at position {pos + 1} of the path")
        name, pos = name_match.group(1).strip("`"), name_match.end()
        if pos < len(path) and path[pos] == "(":
            arguments, pos = _arguments(path, pos, where)
            steps.append(_function_step(name, arguments.strip(), where))
        else:
            steps.append(Step("member", name))
    return root, steps


def _arguments(path: str, start: int, where: str) -> tuple[str, int]:
    """The text between the '(' at ``start`` and its matching ')', skipping quoted strings."""
    depth, pos, quote = 0, start, ""
    while pos < len(path):
        char = path[pos]
        if quote:
            if char == "\\":
                pos += 1
            elif char == quote:
                quote = ""
        elif char in "'`":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return path[start + 1 : pos], pos + 1
        pos += 1
    raise _unsupported(where, "Unbalanced parentheses in the path")


def _function_step(name: str, arguments: str, where: str) -> Step:
    if name in _NO_ARGUMENTS:
        if arguments:
            raise _unsupported(where, f"{name}() takes no arguments")
        return Step(name)
    if name == "ofType" and re.fullmatch(r"[A-Za-z]+", arguments):
        return Step("ofType", name=arguments)
    if name == "where" and arguments:
        try:
            return Step("where", criteria=compile_path(arguments))
        except FhirPathError as exc:
            raise _unsupported(where, f"The where() criteria are not supported FHIRPath: {exc}") from None
    if name == "resolve":
        raise _unsupported(where, "resolve() is not allowed: a patch changes only the resource it targets")
    raise _unsupported(
        where, f"{name}() is not supported in a FHIRPath Patch path (supported: where, first, last, ofType)"
    )


def _unsupported(where: str, message: str) -> FhirError:
    return FhirError.of(400, "not-supported", message, where)


def _cannot_apply(where: str, message: str) -> FhirError:
    return FhirError.of(422, "processing", message, where)


# -- element definitions (the validator's tables) --------------------------------------------------------
def _resource_node(resource_type: Any) -> Node | None:
    from fhirlake.fhir.types import is_resource_type
    from fhirlake.validation.engine import REGISTRY

    return REGISTRY.resource_node(resource_type) if is_resource_type(resource_type) else None


def _value_node(prop: Prop | None, value: Any) -> Node | None:
    """The element table of ``value`` (an object held by ``prop``)."""
    from fhirlake.validation.engine import COMPLEX, REGISTRY, RESOURCE

    if prop is None or not isinstance(value, dict):
        return None
    if prop.kind == RESOURCE:
        return _resource_node(value.get("resourceType"))
    return REGISTRY.node_for(prop) if prop.kind == COMPLEX else None


def _choice_keys(node: Node | None, name: str) -> set[str]:
    """``value`` -> {valueQuantity, valueString, ...} for a choice element of ``node``."""
    if node is None:
        return set()
    return {key for key, prop in node.props.items() if prop.choice == name}


def _type_suffix(prop: Prop) -> str:
    return prop.type[:1].upper() + prop.type[1:]


class Locator:
    """Resolves paths in one resource (changed in place: the caller passes a copy) and applies
    operations."""

    def __init__(self, resource: dict[str, Any], where: str) -> None:
        self._resource = resource
        self._where = where
        self._root = Location(resource, None, None, None, None, _resource_node(resource.get("resourceType")))

    # -- evaluation ---------------------------------------------------------------------------------
    def evaluate(self, path: str) -> list[Location]:
        root, steps = parse_path(path, self._where)
        return self._walk(root, steps)

    def _walk(self, root: str | None, steps: list[Step]) -> list[Location]:
        if root is not None and root != self._resource.get("resourceType"):
            raise _cannot_apply(self._where, f"The path starts at {root}, not at the patched resource's type")
        current = [self._root]
        for step in steps:
            if step.kind == "member":
                current = [child for location in current for child in self._children(location, step.name)]
            elif step.kind == "index":
                current = current[step.number : step.number + 1]
            elif step.kind == "first":
                current = current[:1]
            elif step.kind == "last":
                current = current[-1:]
            elif step.kind == "ofType":
                current = [loc for loc in current if _has_type(loc, step.name)]
            else:
                current = [loc for loc in current if self._matches(loc, step.criteria)]
        return current

    def _matches(self, location: Location, criteria: Fn | None) -> bool:
        assert criteria is not None
        env = {"resource": self._resource, "rootResource": self._resource, "context": location.value}
        try:
            return criteria([location.value], env) == [True]
        except FhirPathRuntimeError as exc:
            raise _cannot_apply(self._where, f"The where() criteria cannot be evaluated: {exc}") from None

    @staticmethod
    def _children(location: Location, name: str) -> list[Location]:
        value = location.value
        if not isinstance(value, dict):
            return []
        keys = [name] if name in value else sorted(_choice_keys(location.node, name) & value.keys())
        if not keys and location.node is None:  # unknown element table: match value[x] by its JSON shape
            keys = [k for k in value if k.startswith(name) and k[len(name) : len(name) + 1].isupper()]
        children = []
        for key in keys:
            prop = location.node.props.get(key) if location.node is not None else None
            child = value[key]
            if isinstance(child, list):
                children.extend(
                    Location(item, location, key, i, prop, _value_node(prop, item))
                    for i, item in enumerate(child)
                    if item is not None  # null only holds the place of a primitive extension
                )
            else:
                children.append(Location(child, location, key, None, prop, _value_node(prop, child)))
        return children

    def _single(self, path: str, what: str) -> Location:
        found = self.evaluate(path)
        if len(found) != 1:
            raise _cannot_apply(
                self._where, f"The path of {what} must select one element, it selects {len(found)}"
            )
        return found[0]

    def _collection(self, path: str, what: str) -> tuple[Location, str]:
        """insert/move name a list: the object that owns it and the member name."""
        root, steps = parse_path(path, self._where)
        if not steps or steps[-1].kind != "member":
            raise _unsupported(
                self._where, f"The path of {what} must end with the name of a repeating element"
            )
        owners = self._walk(root, steps[:-1])
        if len(owners) != 1 or not isinstance(owners[0].value, dict):
            raise _cannot_apply(
                self._where, f"The path of {what} must select one list, it selects {len(owners)}"
            )
        owner, member = owners[0], steps[-1].name
        prop = owner.node.props.get(member) if owner.node is not None else None
        existing = owner.value.get(member)
        if (prop is not None and not prop.many) or (existing is not None and not isinstance(existing, list)):
            raise _cannot_apply(self._where, f"{member} is not a repeating element")
        return owner, member

    # -- operations ---------------------------------------------------------------------------------
    def apply(self, operation: FhirPathOperation) -> None:
        getattr(self, f"_{operation.type}")(operation)

    def _add(self, operation: FhirPathOperation) -> None:
        target = self._single(operation.path, "add")
        if not isinstance(target.value, dict):
            raise _cannot_apply(self._where, "add needs a path to an element that has children")
        assert operation.name is not None
        key, value = self._member_value(target.node, operation.name, operation.value, operation.value_at)
        prop = target.node.props.get(key) if target.node is not None else None
        existing = target.value.get(key)
        if prop.many if prop is not None else isinstance(existing, list):
            target.value.setdefault(key, []).append(value)
            extensions = target.value.get("_" + key)
            if isinstance(extensions, list):
                extensions.append(None)
            return
        taken = {key} | (
            _choice_keys(target.node, prop.choice) if prop is not None and prop.choice else set()
        )
        if taken & target.value.keys():
            raise _cannot_apply(self._where, f"{key} already has a value: use replace")
        target.value[key] = value

    def _insert(self, operation: FhirPathOperation) -> None:
        owner, member = self._collection(operation.path, "insert")
        items = owner.value.get(member) or []
        assert operation.index is not None
        if operation.index > len(items):
            raise _cannot_apply(self._where, f"index {operation.index} is beyond the {len(items)} element(s)")
        prop = owner.node.props.get(member) if owner.node is not None else None
        value = self._built_value(prop, operation.value, operation.value_at)
        owner.value[member] = [*items[: operation.index], value, *items[operation.index :]]
        extensions = owner.value.get("_" + member)
        if isinstance(extensions, list):
            extensions.insert(operation.index, None)

    def _delete(self, operation: FhirPathOperation) -> None:
        found = self.evaluate(operation.path)
        if len(found) > 1:
            raise _cannot_apply(
                self._where, f"The path of delete must select one element, it selects {len(found)}"
            )
        if found:  # deleting what is not there is not an error (fhirpatch.html: "if found")
            self._remove(found[0])

    def _replace(self, operation: FhirPathOperation) -> None:
        target = self._single(operation.path, "replace")
        owner = target.owner
        if owner is None or target.member is None:
            raise _cannot_apply(self._where, "replace cannot replace the whole resource")
        if target.index is not None:
            owner.value[target.member][target.index] = self._built_value(
                target.prop, operation.value, operation.value_at
            )
            return
        choice = target.prop.choice if target.prop is not None else None
        if choice:  # a choice element may change its type: valueQuantity -> valueString
            key, value = self._member_value(owner.node, choice, operation.value, operation.value_at)
            if key != target.member:
                owner.value.pop(target.member)
                owner.value.pop("_" + target.member, None)
            owner.value[key] = value
            return
        owner.value[target.member] = self._built_value(target.prop, operation.value, operation.value_at)

    def _move(self, operation: FhirPathOperation) -> None:
        owner, member = self._collection(operation.path, "move")
        items = owner.value.get(member) or []
        assert operation.source is not None and operation.destination is not None
        if max(operation.source, operation.destination) >= len(items):
            raise _cannot_apply(self._where, f"source and destination must be below {len(items)}")
        for key in (member, "_" + member):
            values = owner.value.get(key)
            if isinstance(values, list):
                values.insert(operation.destination, values.pop(operation.source))

    def _remove(self, location: Location) -> None:
        """Delete a value; arrays and objects left empty go too (FHIR JSON allows neither)."""
        owner, member = location.owner, location.member
        if owner is None or member is None:
            raise _cannot_apply(self._where, "delete cannot delete the whole resource")
        if location.index is None:
            owner.value.pop(member, None)
            owner.value.pop("_" + member, None)
        else:
            for key in (member, "_" + member):
                values = owner.value.get(key)
                if isinstance(values, list) and location.index < len(values):
                    values.pop(location.index)
                    if not any(v is not None for v in values):
                        owner.value.pop(key)
        if not owner.value and owner.owner is not None:
            self._remove(owner)

    # -- values -------------------------------------------------------------------------------------
    def _member_value(self, node: Node | None, name: str, part: Any, where: str) -> tuple[str, Any]:
        """The JSON member name and value for ``name`` in an object of ``node``: a choice element's name
        gets the value's type (``value`` + valueQuantity -> valueQuantity)."""
        suffix = _value_suffix(part)
        key = name
        if node is not None and name not in node.props:
            choices = _choice_keys(node, name)
            if not choices:
                raise _cannot_apply(where, f"{name} is not an element of {node.path}")
            key = name + (suffix or "")
            if key not in choices:
                raise _cannot_apply(where, f"The value's type is not allowed for {name}[x]")
        prop = node.props.get(key) if node is not None else None
        return key, self._built_value(prop, part, where)

    def _built_value(self, prop: Prop | None, part: Any, where: str) -> Any:
        """The JSON value of a patch ``value`` part: value[x], a resource, or nested parts (an object
        whose members are the parts, e.g. a Patient.contact)."""
        from fhirlake.validation.engine import PRIM

        if not isinstance(part, dict):
            raise FhirError.of(400, "structure", "A value part must be an object", where)
        if "part" in part:
            node = None
            if prop is not None and prop.kind != PRIM:
                from fhirlake.validation.engine import REGISTRY

                node = REGISTRY.node_for(prop) if prop.type != "Resource" else None
            value: Any = self._object_from_parts(node, part["part"], where)
        elif "resource" in part:
            value = copy.deepcopy(part["resource"])
        else:
            keys = [k for k in part if k.startswith("value") and k != "value"]
            if len(keys) != 1:
                raise FhirError.of(400, "structure", "A value part needs exactly one value[x]", where)
            value = copy.deepcopy(part[keys[0]])
            suffix = keys[0][5:]
            if _complex_type_differs(prop, suffix):
                raise _cannot_apply(
                    where,
                    f"The value's type {suffix} does not fit {prop.name} ({prop.type})",  # type: ignore[union-attr]
                )
        if prop is not None and (prop.kind == PRIM) == isinstance(value, dict | list):
            raise _cannot_apply(where, f"The value's shape does not fit {prop.name} ({_type_suffix(prop)})")
        return value

    def _object_from_parts(self, node: Node | None, parts: Any, where: str) -> dict[str, Any]:
        if not isinstance(parts, list) or not parts:
            raise FhirError.of(400, "structure", "A value's part must be a non-empty list", where)
        out: dict[str, Any] = {}
        for i, part in enumerate(parts):
            name = part.get("name") if isinstance(part, dict) else None
            if not isinstance(name, str) or not name:
                raise FhirError.of(400, "required", "Each part of a value needs a name", f"{where}.part[{i}]")
            key, value = self._member_value(node, name, part, f"{where}.part[{i}]")
            prop = node.props.get(key) if node is not None else None
            if prop.many if prop is not None else key in out:
                existing = out.get(key)
                out[key] = [
                    *(existing if isinstance(existing, list) else [existing] if key in out else []),
                    value,
                ]
            elif key in out:
                raise FhirError.of(400, "structure", f"{key} is given twice", f"{where}.part[{i}]")
            else:
                out[key] = value
        return out


def _value_suffix(part: Any) -> str | None:
    if isinstance(part, dict):
        for key in part:
            if key.startswith("value") and key != "value":
                return key[5:]
    return None


def _complex_type_differs(prop: Prop | None, suffix: str) -> bool:
    """A data type value (valueHumanName) for an element of another data type; primitives are checked
    by the validator, backbone elements and resources take parts."""
    from fhirlake.validation.engine import COMPLEX

    return prop is not None and prop.kind == COMPLEX and prop.type[:1] != "#" and suffix != prop.type


def _has_type(location: Location, type_name: str) -> bool:
    prop = location.prop
    if prop is not None and prop.choice:
        return location.member == prop.choice + type_name[:1].upper() + type_name[1:]
    if prop is not None:
        return prop.type in (type_name, type_name[:1].lower() + type_name[1:])
    return isinstance(location.value, dict) and location.value.get("resourceType") == type_name

"""The patch interaction's documents (R4 http.html#patch), applied to a resource as plain JSON.

Two formats, both all-or-nothing (the input is never modified; a failing operation raises):

- **JSON Patch** (RFC 6902, ``application/json-patch+json``): add, remove, replace, move, copy, test,
  with RFC 6901 JSON Pointers (``~0``/``~1`` escapes, ``-`` to append to an array).
- **FHIRPath Patch** (fhirpatch.html, a ``Parameters`` resource): add, insert, delete, replace, move.
  Paths are the subset real clients send, resolved to *locations* (the owning object and the member
  name or array index) so they can be changed: ``Type.member``, ``[n]``, ``where(criteria)`` (criteria
  evaluated by :mod:`fhirlake.fhir.fhirpath`), ``first()``, ``last()``, ``ofType(Type)``. Element
  cardinality and choice types come from the validator's R4 element tables, so ``add`` knows whether
  ``identifier`` is a list and ``value`` + ``valueQuantity`` is ``valueQuantity``.

Statuses: a malformed document is a 400 whose expression locates the operation (``/2/path`` in a JSON
Patch, ``Parameters.parameter[1].part[0]`` in a FHIRPath Patch); an operation that cannot apply (no
target, a failed ``test``) is a 422. Diagnostics name elements and operations, never resource values.
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from fhirlake.fhir import json as fhir_json
from fhirlake.fhir.outcome import FhirError

JSON_PATCH_MEDIA_TYPE = "application/json-patch+json"
PatchFormat = Literal["json-patch", "fhirpath-patch"]


@dataclass(frozen=True, slots=True)
class PatchDocument:
    """A parsed, not yet applied, patch; ``apply`` returns the patched copy of a resource."""

    format: PatchFormat
    document: Any

    def apply(self, resource: dict[str, Any]) -> dict[str, Any]:
        if self.format == "json-patch":
            patched = apply_json_patch(resource, self.document)
        else:
            patched = apply_fhirpath_patch(resource, self.document)
        check_identity_kept(resource, patched)
        return patched

    def map_document(self, rewrite: Callable[[Any], Any]) -> PatchDocument:
        """The same patch with ``rewrite`` applied to its document (transactions resolve references)."""
        return PatchDocument(self.format, rewrite(self.document))


def patch_document(document: Any, *, json_patch: bool) -> PatchDocument:
    """A body as a patch: a JSON array is a JSON Patch, a ``Parameters`` resource a FHIRPath Patch."""
    if json_patch or isinstance(document, list):
        if not isinstance(document, list):
            raise FhirError.of(400, "structure", "A JSON Patch document must be a JSON array", "/")
        return PatchDocument("json-patch", document)
    if not isinstance(document, dict) or document.get("resourceType") != "Parameters":
        raise FhirError.of(
            400,
            "structure",
            "A FHIR JSON patch body must be a Parameters resource (FHIRPath Patch); "
            f"send a JSON Patch as {JSON_PATCH_MEDIA_TYPE}",
        )
    return PatchDocument("fhirpath-patch", document)


def patch_from_bundle_resource(resource: Any, where: str) -> PatchDocument:
    """A Bundle entry's patch (http.html#transaction): a ``Binary`` holding a JSON Patch, or
    ``Parameters``."""
    if isinstance(resource, dict) and resource.get("resourceType") == "Binary":
        media = str(resource.get("contentType") or "").split(";", 1)[0].strip().lower()
        if media != JSON_PATCH_MEDIA_TYPE:
            raise FhirError.of(
                415, "not-supported", f"A Binary patch must have contentType {JSON_PATCH_MEDIA_TYPE}", where
            )
        try:
            raw = base64.b64decode(str(resource.get("data") or ""), validate=True)
        except (binascii.Error, ValueError):
            raise FhirError.of(400, "value", "Binary.data is not valid base64", f"{where}.data") from None
        return patch_document(fhir_json.loads(raw), json_patch=True)
    if isinstance(resource, dict) and resource.get("resourceType") == "Parameters":
        return patch_document(resource, json_patch=False)
    raise FhirError.of(
        400, "required", "A PATCH entry needs a Binary (JSON Patch) or Parameters (FHIRPath Patch)", where
    )


def check_identity_kept(before: dict[str, Any], after: Any) -> None:
    if not isinstance(after, dict):
        raise FhirError.of(422, "processing", "The patch must leave a resource (a JSON object)")
    for key in ("resourceType", "id"):
        if after.get(key) != before.get(key):
            raise FhirError.of(
                422, "processing", f"A patch cannot change or remove {key}", f"{before.get('resourceType')}"
            )


# == JSON Patch (RFC 6902) =============================================================================
_JSON_PATCH_MEMBERS = {
    "add": ("value",),
    "remove": (),
    "replace": ("value",),
    "move": ("from",),
    "copy": ("from",),
    "test": ("value",),
}
_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]*")


def apply_json_patch(document: Any, operations: Any) -> Any:
    """The patched copy of ``document``; ``document`` itself is left as it was."""
    if not isinstance(operations, list):
        raise FhirError.of(400, "structure", "A JSON Patch document must be a JSON array", "/")
    for index, operation in enumerate(operations):
        _check_json_operation(index, operation)
    result = copy.deepcopy(document)
    for index, operation in enumerate(operations):
        result = _apply_json_operation(result, index, operation)
    return result


def _check_json_operation(index: int, operation: Any) -> None:
    if not isinstance(operation, dict):
        raise FhirError.of(400, "structure", "Each JSON Patch operation must be a JSON object", f"/{index}")
    op = operation.get("op")
    if op not in _JSON_PATCH_MEMBERS:
        raise FhirError.of(
            400, "value", "op must be add, remove, replace, move, copy or test", f"/{index}/op"
        )
    for member in ("path", *_JSON_PATCH_MEMBERS[op]):
        if member not in operation:
            raise FhirError.of(400, "required", f"A JSON Patch {op} needs '{member}'", f"/{index}/{member}")
    for member in ("path", "from"):
        if member in operation:
            _pointer_tokens(operation[member], f"/{index}/{member}")


def _pointer_tokens(pointer: Any, where: str) -> list[str]:
    """RFC 6901: '' is the whole document; otherwise '/'-separated tokens with ~1 -> '/', ~0 -> '~'."""
    if not isinstance(pointer, str):
        raise FhirError.of(400, "structure", "A JSON Pointer must be a string", where)
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise FhirError.of(400, "value", "A JSON Pointer must be empty or start with '/'", where)
    tokens = pointer[1:].split("/")
    if any(re.search(r"~(?![01])", token) for token in tokens):
        raise FhirError.of(400, "value", "'~' in a JSON Pointer must be followed by 0 or 1", where)
    return [token.replace("~1", "/").replace("~0", "~") for token in tokens]


def _apply_json_operation(document: Any, index: int, operation: dict[str, Any]) -> Any:
    op = operation["op"]
    path = _pointer_tokens(operation["path"], f"/{index}/path")
    where = f"/{index}/path"
    if op == "add":
        return _json_add(document, path, copy.deepcopy(operation["value"]), where)
    if op == "remove":
        _json_remove(document, path, where)
        return document
    if op == "replace":
        _json_resolve(document, path, where)  # the target must exist
        if not path:
            return copy.deepcopy(operation["value"])
        parent, key = _json_parent(document, path, where, appending=False)
        parent[key] = copy.deepcopy(operation["value"])
        return document
    if op == "test":
        if not json_equal(_json_resolve(document, path, where), operation["value"]):
            raise FhirError.of(422, "processing", "JSON Patch test failed: the value differs", f"/{index}")
        return document
    source = _pointer_tokens(operation["from"], f"/{index}/from")
    value = _json_resolve(document, source, f"/{index}/from")
    if op == "copy":
        return _json_add(document, path, copy.deepcopy(value), where)
    if path[: len(source)] == source and len(path) > len(source):
        raise FhirError.of(
            400, "value", "A JSON Patch move cannot move a value into itself", f"/{index}/from"
        )
    if path == source:
        return document
    _json_remove(document, source, f"/{index}/from")
    return _json_add(document, path, value, where)


def _json_resolve(document: Any, tokens: list[str], where: str) -> Any:
    value = document
    for token in tokens:
        if isinstance(value, dict) and token in value:
            value = value[token]
        elif isinstance(value, list) and _ARRAY_INDEX.fullmatch(token) and int(token) < len(value):
            value = value[int(token)]
        else:
            raise FhirError.of(422, "processing", "The JSON Pointer does not name an existing value", where)
    return value


def _json_parent(
    document: Any, tokens: list[str], where: str, *, appending: bool
) -> tuple[dict[str, Any] | list[Any], Any]:
    """The container of the pointer's last token and the key/index in it (index may be len for add)."""
    parent = _json_resolve(document, tokens[:-1], where)
    last = tokens[-1]
    if isinstance(parent, dict):
        return parent, last
    if isinstance(parent, list):
        if appending and last == "-":
            return parent, len(parent)
        limit = len(parent) if appending else len(parent) - 1
        if _ARRAY_INDEX.fullmatch(last) and int(last) <= limit:
            return parent, int(last)
        raise FhirError.of(422, "processing", "The array index is out of bounds or not a number", where)
    raise FhirError.of(
        422, "processing", "The JSON Pointer goes through a value that is not a container", where
    )


def _json_add(document: Any, tokens: list[str], value: Any, where: str) -> Any:
    if not tokens:
        return value  # add at the root replaces the whole document
    parent, key = _json_parent(document, tokens, where, appending=True)
    if isinstance(parent, list):
        parent.insert(key, value)
    else:
        parent[key] = value
    return document


def _json_remove(document: Any, tokens: list[str], where: str) -> None:
    if not tokens:
        raise FhirError.of(422, "processing", "A JSON Patch cannot remove the whole resource", where)
    _json_resolve(document, tokens, where)
    parent, key = _json_parent(document, tokens, where, appending=False)
    del parent[key]


def json_equal(left: Any, right: Any) -> bool:
    """RFC 6902 section 4.6 equality: numbers by value (1 == 1.0), never a boolean equal to a number."""
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    if _is_number(left) and _is_number(right):
        return _as_decimal(left) == _as_decimal(right)
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(json_equal(left[k], right[k]) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(json_equal(a, b) for a, b in zip(left, right, strict=True))
    return type(left) is type(right) and left == right


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _as_decimal(value: int | float | Decimal) -> Decimal:
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


# == FHIRPath Patch (fhirpatch.html) ==================================================================
_PATCH_PARTS = {"type", "path", "name", "value", "index", "source", "destination"}
_REQUIRED_PARTS = {
    "add": ("path", "name", "value"),
    "insert": ("path", "value", "index"),
    "delete": ("path",),
    "replace": ("path", "value"),
    "move": ("path", "source", "destination"),
}


@dataclass(frozen=True, slots=True)
class FhirPathOperation:
    type: str
    path: str
    where: str  # Parameters.parameter[i]: where the operation sits in the patch document
    value_at: str  # where its value part sits (errors in the value point there)
    name: str | None = None
    value: Any = None  # the 'value' part itself (value[x], part or resource inside)
    index: int | None = None
    source: int | None = None
    destination: int | None = None


def apply_fhirpath_patch(resource: dict[str, Any], parameters: Any) -> dict[str, Any]:
    """The patched copy of ``resource`` (a FHIR resource as JSON)."""
    # The FHIRPath engine loads with the first FHIRPath Patch, not at every API cold start (~30 ms of init).
    from fhirlake.fhir.patch_paths import Locator

    operations = _fhirpath_operations(parameters)
    result = copy.deepcopy(resource)
    for operation in operations:
        Locator(result, operation.where).apply(operation)
    return result


def _fhirpath_operations(parameters: Any) -> list[FhirPathOperation]:
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise FhirError.of(400, "structure", "A FHIRPath Patch is a Parameters resource", "Parameters")
    entries = parameters.get("parameter")
    if not isinstance(entries, list) or not entries:
        raise FhirError.of(400, "required", "A FHIRPath Patch needs operation parameters", "Parameters")
    return [_fhirpath_operation(entry, f"Parameters.parameter[{i}]") for i, entry in enumerate(entries)]


def _fhirpath_operation(entry: Any, where: str) -> FhirPathOperation:
    if not isinstance(entry, dict) or entry.get("name") != "operation":
        raise FhirError.of(
            400, "value", "Each parameter of a FHIRPath Patch must be named 'operation'", where
        )
    parts: dict[str, Any] = {}
    for j, part in enumerate(entry.get("part") or []):
        name = part.get("name") if isinstance(part, dict) else None
        if name not in _PATCH_PARTS:
            raise FhirError.of(
                400,
                "value",
                f"Unknown FHIRPath Patch part; expected one of {sorted(_PATCH_PARTS)}",
                f"{where}.part[{j}]",
            )
        if name in parts:
            raise FhirError.of(400, "structure", f"The part '{name}' is repeated", f"{where}.part[{j}]")
        parts[name] = (j, part)
    if "type" not in parts:
        raise FhirError.of(400, "required", "A FHIRPath Patch operation needs a 'type' part", where)
    kind = _scalar_part(parts, "type", "valueCode", str, where)
    if kind not in _REQUIRED_PARTS:
        raise FhirError.of(
            400,
            "value",
            "type must be add, insert, delete, replace or move",
            f"{where}.part[{parts['type'][0]}]",
        )
    for name in _REQUIRED_PARTS[kind]:
        if name not in parts:
            raise FhirError.of(400, "required", f"A FHIRPath Patch {kind} needs a '{name}' part", where)
    value = parts["value"][1] if "value" in parts else None
    if value is not None and not any(k.startswith("value") or k in ("part", "resource") for k in value):
        raise FhirError.of(
            400, "required", "The value part has no value", f"{where}.part[{parts['value'][0]}]"
        )
    return FhirPathOperation(
        kind,
        _scalar_part(parts, "path", "valueString", str, where),
        where,
        f"{where}.part[{parts['value'][0]}]" if value is not None else where,
        name=_scalar_part(parts, "name", "valueString", str, where),
        value=value,
        index=_scalar_part(parts, "index", "valueInteger", int, where),
        source=_scalar_part(parts, "source", "valueInteger", int, where),
        destination=_scalar_part(parts, "destination", "valueInteger", int, where),
    )


def _scalar_part(parts: dict[str, Any], name: str, key: str, kind: type, where: str) -> Any:
    if name not in parts:
        return None
    j, part = parts[name]
    value = part.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) or value in ("", None):
        raise FhirError.of(400, "value", f"The '{name}' part needs {key}", f"{where}.part[{j}].{key}")
    if kind is int and value < 0:
        raise FhirError.of(
            400, "value", f"The '{name}' part must not be negative", f"{where}.part[{j}].{key}"
        )
    return value

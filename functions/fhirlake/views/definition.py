"""SQL on FHIR v2 ViewDefinitions: validated and compiled once, then run on each resource.

https://build.fhir.org/ig/FHIR/sql-on-fhir-v2/StructureDefinition-ViewDefinition.html - a view turns one
resource into zero or more flat rows:

* each ``select`` contributes its ``column`` values, the rows of its nested ``select`` entries and of
  its ``unionAll`` branches; these parts are combined as a cross product (a part with no rows removes
  the row);
* ``forEach`` / ``forEachOrNull`` / ``repeat`` run the select once per element of a collection (with
  ``%rowIndex`` its position); ``forEachOrNull`` yields one all-null row for an empty collection;
* ``where`` keeps the resources for which every path is ``true``;
* ``constant`` values are folded into the compiled paths as ``%name``.

Every mistake in a view raises :class:`ViewDefinitionError` naming the element, e.g.
``select[0].column[2].path: unknown function foo()``, at compile time where possible; a value that
breaks a rule only data can show (a non-collection column with several values, a ``where`` that is not
Boolean) raises it while rows are built.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from fhirlake.fhir.fhirpath import Env, FhirPathError, FhirPathRuntimeError, Fn, compile_path
from fhirlake.fhir.types import is_resource_type

Row = tuple[Any, ...]
SelectFn = Callable[[Any, Env], list[Row]]

NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
STATUSES = frozenset({"draft", "active", "retired", "unknown"})
# value[x] types a ViewDefinition.constant may use (R5 / SQL on FHIR v2)
CONSTANT_TYPES = frozenset(
    [
        "Base64Binary",
        "Boolean",
        "Canonical",
        "Code",
        "Date",
        "DateTime",
        "Decimal",
        "Id",
        "Instant",
        "Integer",
        "Integer64",
        "Oid",
        "String",
        "PositiveInt",
        "Time",
        "UnsignedInt",
        "Uri",
        "Url",
        "Uuid",
    ]
)
_ITERATORS = ("forEach", "forEachOrNull", "repeat")


class ViewDefinitionError(ValueError):
    """The ViewDefinition is invalid (or the data broke one of its rules); the message names the path."""


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    path: str
    type: str | None  # FHIR type code (string, dateTime, decimal...), None if the view gives none
    collection: bool
    description: str | None = None


@dataclass(frozen=True, slots=True)
class _Select:
    columns: tuple[Column, ...]  # every column this select produces, in row order
    run: SelectFn


class CompiledView:
    """A validated, compiled ViewDefinition: ``rows(resource)`` is a pure function of one resource."""

    def __init__(self, view: Any) -> None:
        if not isinstance(view, dict):
            raise ViewDefinitionError("ViewDefinition: must be a JSON object")
        self.definition = view
        self.name: str | None = _optional_name(view, "name")
        self.resource: str = _resource_type(view)
        status = view.get("status")
        if status is not None and status not in STATUSES:
            raise ViewDefinitionError(f"status: must be one of {', '.join(sorted(STATUSES))}")
        self._constants = _constants(view.get("constant"))
        selects = view.get("select")
        if not isinstance(selects, list) or not selects:
            raise ViewDefinitionError("select: a view needs at least one select")
        self._uses_row_index = "%rowIndex" in repr(selects)
        compiled = [self._select(s, f"select[{i}]") for i, s in enumerate(selects)]
        self.columns: list[Column] = [c for s in compiled for c in s.columns]
        _unique_names(self.columns)
        self.column_names: tuple[str, ...] = tuple(c.name for c in self.columns)
        self._root = _product_select(compiled)
        self._where = [self._where_path(w, f"where[{i}]") for i, w in enumerate(_list(view, "where"))]

    # -- compile -----------------------------------------------------------------------------------
    def _path(self, expression: Any, where: str) -> Fn:
        if not isinstance(expression, str):
            raise ViewDefinitionError(f"{where}: must be a FHIRPath string")
        try:
            return compile_path(expression, self._constants)
        except FhirPathError as exc:
            raise ViewDefinitionError(f"{where}: {exc}") from None

    def _located_path(self, expression: Any, where: str) -> Fn:
        return _located(self._path(expression, where), where)

    def _where_path(self, clause: Any, where: str) -> tuple[str, Fn]:
        if not isinstance(clause, dict) or "path" not in clause:
            raise ViewDefinitionError(f"{where}.path: required")
        return f"{where}.path", self._located_path(clause["path"], f"{where}.path")

    def _column(self, spec: Any, where: str) -> tuple[Column, Fn]:
        if not isinstance(spec, dict):
            raise ViewDefinitionError(f"{where}: must be an object")
        name = spec.get("name")
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise ViewDefinitionError(
                f"{where}.name: required, a letter then letters, digits or '_' (got {name!r})"
            )
        collection = spec.get("collection", False)
        if not isinstance(collection, bool):
            raise ViewDefinitionError(f"{where}.collection: must be true or false")
        type_code = spec.get("type")
        if type_code is not None and not isinstance(type_code, str):
            raise ViewDefinitionError(f"{where}.type: must be a FHIR type code")
        fn = self._path(spec.get("path"), f"{where}.path")
        return Column(name, spec["path"], type_code, collection, spec.get("description")), fn

    def _select(self, spec: Any, where: str) -> _Select:
        if not isinstance(spec, dict):
            raise ViewDefinitionError(f"{where}: must be an object")
        iterators = [k for k in _ITERATORS if k in spec]
        if len(iterators) > 1:
            raise ViewDefinitionError(f"{where}: use only one of {', '.join(iterators)}")
        parts: list[_Select] = []
        own = [self._column(c, f"{where}.column[{i}]") for i, c in enumerate(_list(spec, "column", where))]
        if own:
            parts.append(_columns_select(own, where))
        parts.extend(
            self._select(s, f"{where}.select[{i}]") for i, s in enumerate(_list(spec, "select", where))
        )
        branches = [
            self._select(u, f"{where}.unionAll[{i}]") for i, u in enumerate(_list(spec, "unionAll", where))
        ]
        if branches:
            parts.append(_union(branches, where))
        if not parts:
            raise ViewDefinitionError(f"{where}: needs a column, select or unionAll")
        body = _product_select(parts)
        if not iterators:
            return body
        kind = iterators[0]
        if kind == "repeat":
            paths = spec["repeat"]
            if not isinstance(paths, list) or not paths:
                raise ViewDefinitionError(f"{where}.repeat: must be a non-empty list of FHIRPath strings")
            fns = [self._located_path(p, f"{where}.repeat[{i}]") for i, p in enumerate(paths)]
            return _iterate(body, _repeat_collection(fns), or_null=False, row_index=self._uses_row_index)
        collection = self._located_path(spec[kind], f"{where}.{kind}")
        return _iterate(body, collection, or_null=kind == "forEachOrNull", row_index=self._uses_row_index)

    # -- run ---------------------------------------------------------------------------------------
    def rows(self, resource: dict[str, Any]) -> list[dict[str, Any]]:
        """The view's rows for one resource ([] for a resource of another type or one ``where`` drops)."""
        if resource.get("resourceType") != self.resource:
            return []
        env: Env = {"resource": resource, "rootResource": resource, "context": resource, "rowIndex": 0}
        focus = [resource]
        for where, fn in self._where:
            result = fn(focus, env)
            if len(result) > 1 or (result and type(result[0]) is not bool):
                raise ViewDefinitionError(f"{where}: must evaluate to a single boolean")
            if not result or result[0] is not True:
                return []
        names = self.column_names
        return [dict(zip(names, row, strict=True)) for row in self._root.run(resource, env)]


def _columns_select(columns: list[tuple[Column, Fn]], where: str) -> _Select:
    getters = []
    for i, (column, fn) in enumerate(columns):
        getters.append(_column_value(fn, column.collection, f"{where}.column[{i}]"))

    def run(item: Any, env: Env) -> list[Row]:
        focus = [item]
        return [tuple(get(focus, env) for get in getters)]

    return _Select(tuple(c for c, _ in columns), run)


def _located(fn: Fn, where: str) -> Fn:
    """``fn`` with its evaluation errors reported at ``where`` (the element's path in the view)."""

    def evaluate(focus: list[Any], env: Env) -> list[Any]:
        try:
            return fn(focus, env)
        except FhirPathRuntimeError as exc:
            raise ViewDefinitionError(f"{where}: {exc}") from None

    return evaluate


def _column_value(fn: Fn, collection: bool, where: str) -> Callable[[list[Any], Env], Any]:
    if collection:
        return _located(fn, f"{where}.path")

    def single(focus: list[Any], env: Env) -> Any:
        try:  # not _located(): one call less per cell
            values = fn(focus, env)
        except FhirPathRuntimeError as exc:
            raise ViewDefinitionError(f"{where}.path: {exc}") from None
        if not values:
            return None
        if len(values) > 1:
            raise ViewDefinitionError(
                f"{where}.path: Collection value: {len(values)} values for a column without collection: true"
            )
        return values[0]

    return single


def _product_select(parts: list[_Select]) -> _Select:
    columns = tuple(c for p in parts for c in p.columns)
    if len(parts) == 1:
        return _Select(columns, parts[0].run)
    runs = [p.run for p in parts]

    def run(item: Any, env: Env) -> list[Row]:
        results = []
        for part in runs:
            rows = part(item, env)
            if not rows:
                return []
            results.append(rows)
        if all(len(r) == 1 for r in results):  # the common case: one row per part
            return [tuple(v for r in results for v in r[0])]
        return [tuple(itertools.chain.from_iterable(combo)) for combo in itertools.product(*results)]

    return _Select(columns, run)


def _union(branches: list[_Select], where: str) -> _Select:
    names = [c.name for c in branches[0].columns]
    for i, branch in enumerate(branches[1:], start=1):
        if [c.name for c in branch.columns] != names:
            raise ViewDefinitionError(
                f"{where}.unionAll[{i}]: columns {[c.name for c in branch.columns]} differ from "
                f"unionAll[0] {names} (every branch must have the same columns, in the same order)"
            )
    runs = [b.run for b in branches]

    def run(item: Any, env: Env) -> list[Row]:
        return [row for branch in runs for row in branch(item, env)]

    return _Select(branches[0].columns, run)


def _iterate(body: _Select, collection: Fn, or_null: bool, row_index: bool) -> _Select:
    # forEachOrNull's row for an empty collection: all null, but %rowIndex is still 0 (row_index.json)
    null_row = tuple(0 if c.path.strip() == "%rowIndex" else None for c in body.columns)
    inner = body.run

    def run(item: Any, env: Env) -> list[Row]:
        elements = collection([item], env)
        if not elements:
            return [null_row] if or_null else []
        rows: list[Row] = []
        for index, element in enumerate(elements):
            rows.extend(inner(element, {**env, "rowIndex": index} if row_index else env))
        return rows

    return _Select(body.columns, run)


def _repeat_collection(paths: list[Fn]) -> Fn:
    """``repeat``: the elements the paths reach from the focus, recursively, depth first in order."""

    def collect(focus: list[Any], env: Env) -> list[Any]:
        out: list[Any] = []

        def visit(node: Any) -> None:
            for fn in paths:
                for child in fn([node], env):
                    out.append(child)
                    visit(child)

        for node in focus:
            visit(node)
        return out

    return collect


def _list(spec: dict[str, Any], key: str, where: str = "") -> list[Any]:
    value = spec.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ViewDefinitionError(f"{where + '.' if where else ''}{key}: must be a list")
    return value


def _optional_name(view: dict[str, Any], key: str) -> str | None:
    name = view.get(key)
    if name is not None and (not isinstance(name, str) or not NAME_RE.fullmatch(name)):
        raise ViewDefinitionError(f"{key}: must be a letter then letters, digits or '_' (got {name!r})")
    return name


def _resource_type(view: dict[str, Any]) -> str:
    resource = view.get("resource")
    if not isinstance(resource, str) or not resource:
        raise ViewDefinitionError("resource: required (the FHIR resource type the view is over)")
    if not is_resource_type(resource):
        raise ViewDefinitionError(f"resource: {resource!r} is not an R4 resource type")
    return resource


def _constants(specs: Any) -> dict[str, list[Any]]:
    constants: dict[str, list[Any]] = {}
    if specs is None:
        return constants
    if not isinstance(specs, list):
        raise ViewDefinitionError("constant: must be a list")
    for i, spec in enumerate(specs):
        where = f"constant[{i}]"
        if not isinstance(spec, dict):
            raise ViewDefinitionError(f"{where}: must be an object")
        name = spec.get("name")
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise ViewDefinitionError(f"{where}.name: required, a letter then letters, digits or '_'")
        values = [k for k in spec if k.startswith("value")]
        if len(values) != 1 or values[0][5:] not in CONSTANT_TYPES:
            raise ViewDefinitionError(f"{where}: needs exactly one value[x] of a primitive type")
        if name in constants:
            raise ViewDefinitionError(f"{where}.name: constant {name!r} is defined twice")
        constants[name] = [spec[values[0]]]
    return constants


def _unique_names(columns: Iterable[Column]) -> None:
    seen: set[str] = set()
    for column in columns:
        if column.name in seen:
            raise ViewDefinitionError(f"column name {column.name!r} is used more than once in the view")
        seen.add(column.name)


def compile_view(view: Any) -> CompiledView:
    """Validate and compile ``view`` (a ViewDefinition as JSON); raises :class:`ViewDefinitionError`."""
    return CompiledView(view)


def evaluate(view: Any, resources: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of ``view`` over ``resources`` (resources of other types are ignored)."""
    compiled = compile_view(view)
    return [row for resource in resources for row in compiled.rows(resource)]

"""Precompute the search-parameter tables from the official R4 SearchParameter bundle.

Source: ``search-parameters.json`` of HL7 FHIR R4 4.0.1 (CC0-1.0, see ../shared/data/SOURCES.md), plus the
element tables already derived from the same core package in ``functions/fhirlake/data/r4/validation/``
(JSON names, types, choice groups, required bindings) to type every search path.
Output: ``functions/fhirlake/data/r4/search/<ResourceType>.json`` (committed; the product never reads
../shared), one per concrete resource type, loaded lazily by ``fhirlake.search.parameters``:

``{"parameters": {code: {...}}, "unsupported": {code: reason}}`` where each parameter holds ``type``,
``url``, ``expression`` (the official expression restricted to this base type), ``targets``,
``multipleOr``, ``comparators``, ``parts`` and, for composites, ``components``.

Each part is one top-level ``|`` branch of the expression:
``{"expr": fhirpath, "alts": [[json_keys, element_type, implicit_system], ...] | null,
"resolve": type | null, "hint": element_type | null}``. ``alts`` is the natively walkable form (a
plain path with ``as`` casts expanded over choice elements: ``Observation.value.as(Quantity)`` is
``[["valueQuantity"], "Quantity", null]``); ``resolve`` is the type of a trailing
``.where(resolve() is T)`` filter; parts with ``alts: null`` are evaluated with fhirpathpy and ``hint``
is the element type inferred with their ``where(...)`` filters removed. ``implicit_system`` is the code
system of a ``code`` element bound (required) to a value set drawing on exactly one code system.
Composite parameters carry, per part alternative, the components' relative alternatives:
``components: [[code, type, relative_expression], ...]`` and ``alts: [[keys, type, null, [[alts of
component 1], ...]], ...]``.

Re-run after changing what is extracted:

    .venv/bin/python scripts/build_search_tables.py ../shared/data/spec/r4/search-parameters.json
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "functions" / "fhirlake" / "data" / "r4"
OUT = DATA / "search"
VALIDATION = DATA / "validation"

QUANTITY_FAMILY = {"Quantity", "SimpleQuantity", "MoneyQuantity", "Age", "Count", "Distance", "Duration"}
RESOURCE_ONLY = {"Bundle", "Binary", "Parameters"}  # not DomainResources
NO_EXPRESSION = {
    "_text": "no FHIRPath expression in R4 (narrative full-text search is not indexed)",
    "_content": "no FHIRPath expression in R4 (full-text search is not indexed)",
    "_query": "named queries are not supported",
}
UNSUPPORTED_EXPR = {
    "special": "special parameters (e.g. Location near) need dedicated matching logic",
}
IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")


def split_top(expr: str) -> list[str]:
    """Split on top-level ``|`` (outside parentheses and quotes)."""
    parts, depth, quote, cur = [], 0, False, []
    for ch in expr:
        if ch == "'":
            quote = not quote
        elif not quote and ch == "(":
            depth += 1
        elif not quote and ch == ")":
            depth -= 1
        if ch == "|" and depth == 0 and not quote:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur).strip())
    return [p for p in parts if p]


def split_dots(expr: str) -> list[str] | None:
    tokens, depth, cur = [], 0, []
    for ch in expr:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "." and depth == 0:
            tokens.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    tokens.append("".join(cur))
    return tokens if depth == 0 else None


def parse_path(expr: str) -> list[tuple[str, str]] | None:
    """A part as [("step", name) | ("as", Type) | ("resolve", Type)], or None when not a plain path."""
    expr = expr.strip()
    m = re.fullmatch(r"\((.+) as (\w+)\)(.*)", expr)
    if m:
        expr = f"{m.group(1)}.as({m.group(2)}){m.group(3)}"
    m = re.fullmatch(r"([^()]+) as (\w+)", expr)
    if m:
        expr = f"{m.group(1)}.as({m.group(2)})"
    tokens = split_dots(expr)
    if tokens is None:
        return None
    ops: list[tuple[str, str]] = []
    for i, tok in enumerate(tokens):
        tok = tok.strip()
        if IDENT.match(tok):
            ops.append(("step", tok))
            continue
        m = re.fullmatch(r"as\((\w+)\)", tok)
        if m:
            ops.append(("as", m.group(1)))
            continue
        m = re.fullmatch(r"where\(resolve\(\) is (\w+)\)", tok)
        if m and i == len(tokens) - 1:
            ops.append(("resolve", m.group(1)))
            continue
        return None
    return ops


class Types:
    """Element lookups over the validation tables (resource types, datatypes, backbone nodes)."""

    def __init__(self) -> None:
        self.files: dict[str, dict[str, Any]] = {}
        self.datatypes = json.loads((VALIDATION / "datatypes.json").read_text())
        self.valuesets = json.loads((VALIDATION / "valuesets.json").read_text())

    def resource(self, name: str) -> dict[str, Any]:
        if name not in self.files:
            self.files[name] = json.loads((VALIDATION / f"{name}.json").read_text())
        return self.files[name]

    def props(self, ctx: tuple[str, str]) -> list[list[Any]] | None:
        """ctx = (file, node path): file is a resource type or "datatypes"."""
        file, path = ctx
        if file == "datatypes":
            dt = self.datatypes.get(path.split(".")[0])
            return None if dt is None else dt["nodes"].get(path)
        return self.resource(file)["nodes"].get(path)

    def child_ctx(self, ctx: tuple[str, str], type_code: str) -> tuple[str, str] | None:
        if type_code.startswith("#"):
            return (ctx[0], type_code[1:])
        if type_code in self.datatypes:
            return ("datatypes", type_code)
        return None  # primitive or inline Resource

    def implicit_system(self, valueset: str | None) -> str | None:
        if not valueset:
            return None
        systems = self.valuesets.get(valueset.split("|")[0])
        if isinstance(systems, dict) and len(systems) == 1:
            return next(iter(systems))
        return None


def element_type(type_code: str) -> str:
    return "BackboneElement" if type_code.startswith("#") else type_code


def resolve_ops(
    types: Types, ops: list[tuple[str, str]], start: tuple[str, str], start_type: str
) -> tuple[list[list[Any]], str | None]:
    """Expand ops from a context into [[keys, element_type, implicit_system, ctx]] alternatives."""
    alts: list[list[Any]] = [[[], start_type, None, start]]
    resolve = None
    for op, arg in ops:
        if op == "resolve":
            resolve = arg
            continue
        if op == "as":
            # R4's Observation-code-value-date writes value.as(DateTime): the System type name, which
            # FHIR-typed data only matches as the FHIR primitive dateTime (technical correction in R5).
            want = QUANTITY_FAMILY if arg == "Quantity" else {arg, arg[0].lower() + arg[1:]}
            alts = [a for a in alts if a[1] in want]
            continue
        nxt = []
        for keys, _t, _s, ctx in alts:
            props = types.props(ctx) if ctx else None
            if props is None:
                raise LookupError(f"cannot step into {_t} for {arg}")
            found = False
            for key, _min, _max, tcode, vs, group in props:
                if key == arg or group == arg:
                    found = True
                    nxt.append(
                        [
                            [*keys, key],
                            element_type(tcode),
                            types.implicit_system(vs),
                            types.child_ctx(ctx, tcode),
                        ]
                    )
            if not found:
                raise LookupError(f"no element {arg} in {ctx[1]}")
        alts = nxt
    return alts, resolve


def part_for_base(part: str, base: str, single_base: bool) -> str | None:
    """The part re-rooted at ``base`` if it applies to it, else None."""
    m = re.match(r"\(?(\w+)\.", part)
    root = m.group(1) if m else None
    if root == base or root in ("Resource", "DomainResource"):
        if root != base:
            part = part.replace(f"{root}.", f"{base}.", 1)
        return part
    if part == base:  # the resource itself (composites such as Observation-code-value-quantity)
        return part
    if single_base and root is None:  # e.g. InsurancePlan-name: "name | alias"
        return f"{base}.{part}" if not part.startswith("(") else f"({base}.{part[1:]}"
    if single_base and re.fullmatch(r"\w+", part) and part[0].islower():
        return f"{base}.{part}"
    return None


def hint_for(types: Types, expr: str, start: tuple[str, str], start_type: str) -> str | None:
    if " and " in expr or "exists()" in expr:
        return "boolean"
    stripped = re.sub(r"\.where\([^()]*\)", "", expr)
    stripped = re.sub(r"\[\d+\]", "", stripped)
    ops = parse_path(stripped)
    if ops is None:
        return None
    try:
        alts, _ = resolve_ops(types, ops[1:], start, start_type)
    except LookupError:
        return None
    found = {a[1] for a in alts}
    return found.pop() if len(found) == 1 else None


def build_parts(
    types: Types, parts: list[str], start: tuple[str, str], start_type: str, rooted: bool, problems: list[str]
) -> list[dict[str, Any]]:
    out = []
    for expr in parts:
        ops = parse_path(expr)
        entry: dict[str, Any] = {"expr": expr, "alts": None, "resolve": None, "hint": None}
        if ops is not None:
            try:
                alts, resolve = resolve_ops(types, ops[1:] if rooted else ops, start, start_type)
                entry["alts"] = [[a[0], a[1], a[2]] for a in alts]
                entry["resolve"] = resolve
                entry["_ctx"] = [a[3] for a in alts]
                if not alts:
                    problems.append(f"{expr}: matches no element")
            except LookupError as exc:
                problems.append(f"{expr}: {exc}; evaluated with fhirpathpy")
                entry["alts"] = None
        if entry["alts"] is None:
            entry["hint"] = hint_for(types, expr, start, start_type) if rooted else None
        out.append(entry)
    return out


def main(bundle_path: str) -> None:
    bundle = json.loads(Path(bundle_path).read_text())
    resource_types = json.loads((DATA / "resource-types.json").read_text())
    params = [e["resource"] for e in bundle["entry"]]
    by_url = {p["url"]: p for p in params}
    types = Types()
    OUT.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    for rtype in resource_types:
        table: dict[str, Any] = {}
        unsupported: dict[str, str] = {}
        for sp in params:
            bases = sp["base"]
            applies = (
                rtype in bases
                or "Resource" in bases
                or ("DomainResource" in bases and rtype not in RESOURCE_ONLY)
            )
            if not applies:
                continue
            code = sp["code"]
            if "expression" not in sp:
                unsupported[code] = NO_EXPRESSION.get(code, "no FHIRPath expression")
                continue
            if sp["type"] in UNSUPPORTED_EXPR:
                unsupported[code] = UNSUPPORTED_EXPR[sp["type"]]
                continue
            mine = [
                p
                for p in (part_for_base(x, rtype, len(bases) == 1) for x in split_top(sp["expression"]))
                if p
            ]
            if not mine:
                problems.append(f"{rtype}.{code}: no expression part for this base")
                continue
            local: list[str] = []
            parts = build_parts(types, mine, (rtype, rtype), rtype, True, local)
            problems.extend(f"{rtype}.{code}: {p}" for p in local)
            if any(p["alts"] is None and p["hint"] == "Resource" for p in parts):
                unsupported[code] = "its expression yields an inline resource (Bundle entry), not a reference"
                continue
            entry: dict[str, Any] = {
                "type": sp["type"],
                "url": sp["url"],
                "expression": " | ".join(mine),
                "targets": sp.get("target", []),
                "multipleOr": sp.get("multipleOr", True),
                "comparators": sp.get("comparator", []),
                "parts": parts,
            }
            if sp["type"] == "composite":
                comps = []
                for c in sp["component"]:
                    cdef = by_url.get(c["definition"])
                    if cdef is None:
                        problems.append(f"{rtype}.{code}: unknown component {c['definition']}")
                        break
                    comps.append([cdef["code"], cdef["type"], c["expression"]])
                else:
                    entry["components"] = comps
                if "components" not in entry:
                    unsupported[code] = "a component definition is missing from the R4 bundle"
                    continue
                ok = True
                for part in parts:
                    if part["alts"] is None:
                        ok = False
                        break
                    for alt, ctx in zip(part["alts"], part["_ctx"], strict=True):
                        comp_alts = []
                        for ccode, _ctype, cexpr in comps:
                            if cexpr.startswith("%resource."):  # relative to the resource, not the element
                                sub = build_parts(
                                    types, [f"{rtype}.{cexpr[10:]}"], (rtype, rtype), rtype, True, local
                                )
                                for s in sub:
                                    for a in s["alts"] or []:
                                        a[0] = ["%resource", *a[0]]
                            else:
                                sub = build_parts(types, split_top(cexpr), ctx, alt[1], False, local)
                            if any(s["alts"] is None for s in sub):
                                ok = False
                            comp_alts.append([a for s in sub for a in (s["alts"] or [])])
                            if not comp_alts[-1]:
                                problems.append(f"{rtype}.{code}: component {ccode} matches nothing")
                        alt.append(comp_alts)
                if not ok:
                    unsupported[code] = "a composite component is not a plain path"
                    continue
            for part in parts:
                part.pop("_ctx", None)
            table[code] = entry
        doc = {
            "type": rtype,
            "parameters": dict(sorted(table.items())),
            "unsupported": dict(sorted(unsupported.items())),
        }
        (OUT / f"{rtype}.json").write_text(json.dumps(doc, separators=(",", ":"), sort_keys=False) + "\n")
    for p in problems:
        print("note:", p, file=sys.stderr)
    print(f"wrote {len(resource_types)} tables to {OUT}")


if __name__ == "__main__":
    main(
        sys.argv[1] if len(sys.argv) > 1 else str(ROOT.parent / "shared/data/spec/r4/search-parameters.json")
    )

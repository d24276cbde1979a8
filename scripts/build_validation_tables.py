"""Precompute the validator's tables from the official R4 core package.

Source: hl7.fhir.r4.core-4.0.1.tgz (HL7 FHIR R4 4.0.1, CC0-1.0), see ../shared/data/SOURCES.md.
Output: functions/fhirlake/data/r4/validation/ (committed; the product never reads ../shared):

- ``<ResourceType>.json`` - one per concrete resource type (146),
- ``datatypes.json`` - every complex datatype (plus the core Quantity profiles SimpleQuantity/MoneyQuantity),
- ``valuesets.json`` - expansions of the value sets bound with strength ``required`` that can be enumerated
  from the package itself (whole code systems with complete content, concept lists, nested value sets).

Each type file holds ``nodes``: for every object-shaped element path (the type root and each backbone
element) the list of its JSON properties as
``[json_key, min, max, type, valueset_or_null, choice_group_or_null]`` where ``max`` is -1 for ``*`` and
``type`` is a primitive type code, a complex type name, ``Resource`` (any inline resource) or
``#<path>`` (a backbone node in the same file, also used for ``contentReference``), and ``constraints``:
per node path, the error-severity invariants as ``[key, human, fhirpath]``.

Re-run after changing what is extracted:

    .venv/bin/python scripts/build_validation_tables.py ../shared/data/spec/r4/hl7.fhir.r4.core-4.0.1.tgz
"""

from __future__ import annotations

import json
import sys
import tarfile
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent.parent / "functions" / "fhirlake" / "data" / "r4" / "validation"
SD_BASE = "http://hl7.org/fhir/StructureDefinition/"
FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
SYSTEM_TYPES = {
    "http://hl7.org/fhirpath/System.String": "string",
    "http://hl7.org/fhirpath/System.Boolean": "boolean",
    "http://hl7.org/fhirpath/System.Date": "date",
    "http://hl7.org/fhirpath/System.DateTime": "dateTime",
    "http://hl7.org/fhirpath/System.Decimal": "decimal",
    "http://hl7.org/fhirpath/System.Integer": "integer",
    "http://hl7.org/fhirpath/System.Time": "time",
}
# Quantity profiles used by core elements through type.profile.
QUANTITY_PROFILES = {SD_BASE + "SimpleQuantity": "SimpleQuantity", SD_BASE + "MoneyQuantity": "MoneyQuantity"}


def load_package(tgz_path: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {"StructureDefinition": [], "ValueSet": [], "CodeSystem": []}
    with tarfile.open(tgz_path) as tgz:
        for member in tgz.getmembers():
            name = member.name.removeprefix("package/")
            kind = name.split("-", 1)[0]
            if kind in out and name.endswith(".json"):
                out[kind].append(json.load(tgz.extractfile(member)))
    return out


def upper_first(code: str) -> str:
    return code[0].upper() + code[1:]


def type_code(t: dict[str, Any]) -> str:
    code = t["code"]
    if code in SYSTEM_TYPES:
        for ext in t.get("extension", []):
            if ext["url"] == FHIR_TYPE_EXT:
                return ext["valueUrl"]
        return SYSTEM_TYPES[code]
    if code == "Quantity":
        for profile in t.get("profile", []):
            if profile in QUANTITY_PROFILES:
                return QUANTITY_PROFILES[profile]
    return code


class Expander:
    """Enumerates value sets from the package's ValueSets and CodeSystems (None if not enumerable)."""

    def __init__(self, valuesets: list[dict[str, Any]], codesystems: list[dict[str, Any]]) -> None:
        self.vs = {v["url"]: v for v in valuesets}
        self.cs = {c["url"]: c for c in codesystems}
        self.cache: dict[str, dict[str, list[str]] | None] = {}
        self.skipped: dict[str, str] = {}

    def codes_of_system(self, system: str) -> list[str] | None:
        cs = self.cs.get(system)
        if cs is None or cs.get("content") != "complete":
            return None
        codes: list[str] = []
        stack = list(cs.get("concept", []))
        while stack:
            concept = stack.pop()
            codes.append(concept["code"])
            stack.extend(concept.get("concept", []))
        return codes

    def expand(self, url: str) -> dict[str, list[str]] | None:
        url = url.split("|", 1)[0]
        if url in self.cache:
            return self.cache[url]
        self.cache[url] = None  # cycle guard
        result = self._expand(url)
        self.cache[url] = result
        return result

    def _expand(self, url: str) -> dict[str, list[str]] | None:
        vs = self.vs.get(url)
        if vs is None:
            self.skipped[url] = "value set not in the core package"
            return None
        compose = vs.get("compose")
        if not compose:
            self.skipped[url] = "no compose"
            return None
        systems: dict[str, set[str]] = {}
        for inc in compose.get("include", []):
            if inc.get("filter"):
                self.skipped[url] = "include uses a filter"
                return None
            part: dict[str, set[str]] = {}
            if "system" in inc:
                if "concept" in inc:
                    part[inc["system"]] = {c["code"] for c in inc["concept"]}
                else:
                    codes = self.codes_of_system(inc["system"])
                    if codes is None:
                        self.skipped[url] = f"code system {inc['system']} not enumerable from the package"
                        return None
                    part[inc["system"]] = set(codes)
            for ref in inc.get("valueSet", []):
                sub = self.expand(ref)
                if sub is None:
                    self.skipped.setdefault(url, f"includes non-enumerable value set {ref}")
                    return None
                if "system" in inc:  # intersection of the system part and the value set
                    part = {s: c & set(sub.get(s, [])) for s, c in part.items()}
                else:
                    for s, c in sub.items():
                        part.setdefault(s, set()).update(c)
            for s, c in part.items():
                systems.setdefault(s, set()).update(c)
        for exc in compose.get("exclude", []):
            if exc.get("filter") or exc.get("valueSet") or "concept" not in exc:
                self.skipped[url] = "exclude is not a concept list"
                return None
            systems.get(exc["system"], set()).difference_update(c["code"] for c in exc["concept"])
        return {s: sorted(c) for s, c in sorted(systems.items())}


def compile_sd(sd: dict[str, Any], expander: Expander, used_vs: set[str]) -> dict[str, Any]:
    elements = sd["snapshot"]["element"]
    root = elements[0]["path"]
    url = sd["url"]
    nodes: dict[str, list[list[Any]]] = {}
    constraints: dict[str, list[list[str]]] = {}
    node_paths = {root}
    for e in elements[1:]:
        parent = e["path"].rsplit(".", 1)[0]
        node_paths.add(parent)
    for e in elements:
        path = e["path"]
        if path != root and path.rsplit(".", 1)[0] not in node_paths:
            continue
        cons = []
        for c in e.get("constraint", []):
            if c["severity"] != "error" or c["key"] in ("ele-1", "ext-1") or not c.get("expression"):
                continue
            source = c.get("source", url)
            # Constraints copied from a datatype onto the element are checked on the datatype itself.
            if path == root or source == url:
                cons.append([c["key"], c.get("human", ""), c["expression"]])
        if cons and (path in node_paths or path == root):
            constraints[path] = cons
        elif cons:
            # constraint on a leaf element (e.g. ElementDefinition.max, Narrative.div): attach to the parent
            # node with the element name so the engine can evaluate it in the element's context
            constraints.setdefault(path, []).extend(cons)
        if path == root:
            continue
        parent, name = path.rsplit(".", 1)
        if parent not in node_paths:
            continue
        props = nodes.setdefault(parent, [])
        max_ = -1 if e["max"] == "*" else int(e["max"])
        if max_ == 0:
            continue
        vs = None
        binding = e.get("binding")
        if binding and binding.get("strength") == "required" and binding.get("valueSet"):
            vs_url = binding["valueSet"].split("|", 1)[0]
            if expander.expand(vs_url) is not None:
                vs = vs_url
                used_vs.add(vs_url)
        if "contentReference" in e:
            target = e["contentReference"].lstrip("#")
            props.append([name, e["min"], max_, "#" + target, None, None])
            continue
        types = [type_code(t) for t in e.get("type", [])]
        if name.endswith("[x]"):
            base = name[:-3]
            for t, raw in zip(types, e["type"], strict=True):
                json_name = base + upper_first(t if raw["code"] in SYSTEM_TYPES else raw["code"])
                props.append([json_name, e["min"], max_, t, vs, base])
            continue
        (t,) = types
        if path in node_paths:  # backbone element / Element with children
            t = "#" + path
        props.append([name, e["min"], max_, t, vs, None])
    return {
        "type": sd["type"] if sd["id"] == sd["type"] else sd["id"],
        "url": url,
        "nodes": nodes,
        "constraints": constraints,
    }


def main(tgz_path: str) -> None:
    pkg = load_package(tgz_path)
    expander = Expander(pkg["ValueSet"], pkg["CodeSystem"])
    OUT.mkdir(parents=True, exist_ok=True)
    datatypes: dict[str, Any] = {}
    resources: dict[str, Any] = {}
    used_vs: set[str] = set()
    for sd in pkg["StructureDefinition"]:
        if "snapshot" not in sd or sd["kind"] == "logical":
            continue
        if sd["kind"] == "resource" and sd.get("derivation") == "specialization" and not sd.get("abstract"):
            resources[sd["type"]] = compile_sd(sd, expander, used_vs)
        elif sd["kind"] == "complex-type" and (
            (sd.get("derivation") == "specialization" and sd["id"] == sd["type"])
            or sd["url"] in QUANTITY_PROFILES
        ):
            if sd["id"] in ("example-composition", "example-section-library"):
                continue
            compiled = compile_sd(sd, expander, used_vs)
            if sd["url"] in QUANTITY_PROFILES:  # rename the profile's nodes after the profile
                name = QUANTITY_PROFILES[sd["url"]]
                compiled["nodes"] = {name + k[len("Quantity") :]: v for k, v in compiled["nodes"].items()}
                compiled["constraints"] = {
                    name + k[len("Quantity") :]: v for k, v in compiled["constraints"].items()
                }
            datatypes[compiled["type"]] = compiled
    for old in OUT.glob("*.json"):
        old.unlink()
    dump = {"separators": (",", ":"), "sort_keys": True}
    for name, compiled in sorted(resources.items()):
        (OUT / f"{name}.json").write_text(json.dumps(compiled, **dump) + "\n")
    (OUT / "datatypes.json").write_text(json.dumps(datatypes, **dump) + "\n")
    valuesets = {url: expander.expand(url) for url in sorted(used_vs)}
    (OUT / "valuesets.json").write_text(json.dumps(valuesets, **dump) + "\n")
    required_skipped = sorted(u for u, v in expander.cache.items() if v is None)
    (OUT / "skipped-valuesets.json").write_text(
        json.dumps({u: expander.skipped.get(u, "not enumerable") for u in required_skipped}, indent=1) + "\n"
    )
    print(
        f"{len(resources)} resource types, {len(datatypes)} datatypes, {len(valuesets)} required value sets "
        f"expanded, {len(required_skipped)} skipped -> {OUT}"
    )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/spec/r4/hl7.fhir.r4.core-4.0.1.tgz")

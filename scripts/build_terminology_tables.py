"""Precompute the terminology tables token search needs (``:in``/``:not-in``, ``:above``/``:below``).

Source: hl7.fhir.r4.core-4.0.1.tgz (HL7 FHIR R4 4.0.1, CC0-1.0), see ../shared/data/SOURCES.md.
Output: functions/fhirlake/data/r4/terminology/ (committed; the product never reads ../shared):

- ``valuesets.json`` - expansions (system -> codes) of every value set of the package that the package
  itself enumerates and that ``validation/valuesets.json`` does not already hold (the search reads both;
  the expansion rules are the validator builder's ``Expander``, so the two cannot differ);
- ``valueset-gaps.json`` - the package's value sets that cannot be enumerated, with the reason
  (filters, SNOMED CT / LOINC / other external code systems);
- ``codesystems.json`` - ``{"parents": {system: {code: [parent codes]}}, "flat": [systems]}``: the
  subsumption hierarchy of every complete code system whose concepts nest (or name a ``subsumedBy``/
  ``parent``/``child`` property) and whose ``hierarchyMeaning`` is ``is-a`` or unstated, and the URLs of the
  other complete code systems (where a code subsumes only itself).

Re-run after changing what is extracted:

    .venv/bin/python scripts/build_terminology_tables.py ../shared/data/spec/r4/hl7.fhir.r4.core-4.0.1.tgz
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from build_validation_tables import Expander, load_package

DATA = Path(__file__).resolve().parent.parent / "functions" / "fhirlake" / "data" / "r4"
OUT = DATA / "terminology"
# Nesting means subsumption only for these (codesystem-hierarchy-meaning); R4 core leaves it unstated for a
# few status systems whose nesting is plainly a specialisation (condition-clinical active > recurrence).
SUBSUMING = (None, "is-a")
PARENT_PROPERTIES = ("subsumedBy", "parent")


def hierarchy(cs: dict[str, Any]) -> dict[str, list[str]]:
    """code -> parent codes, from concept nesting and the parent/child concept properties."""
    parents: dict[str, set[str]] = {}
    stack: list[tuple[dict[str, Any], str | None]] = [(c, None) for c in cs.get("concept", [])]
    while stack:
        concept, parent = stack.pop()
        code = concept["code"]
        mine = parents.setdefault(code, set())
        if parent is not None:
            mine.add(parent)
        for prop in concept.get("property", []):
            if prop.get("code") in PARENT_PROPERTIES and "valueCode" in prop:
                mine.add(prop["valueCode"])
            elif prop.get("code") == "child" and "valueCode" in prop:
                parents.setdefault(prop["valueCode"], set()).add(code)
        stack.extend((child, code) for child in concept.get("concept", []))
    return {code: sorted(p) for code, p in sorted(parents.items())}


def main(tgz_path: str) -> None:
    pkg = load_package(tgz_path)
    expander = Expander(pkg["ValueSet"], pkg["CodeSystem"])
    known = json.loads((DATA / "validation" / "valuesets.json").read_text())
    expansions: dict[str, Any] = {}
    for vs in pkg["ValueSet"]:
        expansion = expander.expand(vs["url"])
        if expansion is not None and vs["url"] not in known:
            expansions[vs["url"]] = expansion
    gaps = {u: r for u, r in expander.skipped.items() if expander.cache.get(u) is None}
    parents: dict[str, dict[str, list[str]]] = {}
    flat: list[str] = []
    for cs in pkg["CodeSystem"]:
        if cs.get("content") != "complete":
            continue
        tree = hierarchy(cs)
        if cs.get("hierarchyMeaning") in SUBSUMING and any(tree.values()):
            parents[cs["url"]] = {code: p for code, p in tree.items() if p}
        else:
            flat.append(cs["url"])
    OUT.mkdir(parents=True, exist_ok=True)
    dump = {"separators": (",", ":"), "sort_keys": True}
    (OUT / "valuesets.json").write_text(json.dumps(expansions, **dump) + "\n")
    (OUT / "valueset-gaps.json").write_text(json.dumps(gaps, indent=1, sort_keys=True) + "\n")
    (OUT / "codesystems.json").write_text(
        json.dumps({"parents": parents, "flat": sorted(flat)}, **dump) + "\n"
    )
    print(
        f"{len(expansions)} value sets, {len(gaps)} not enumerable, "
        f"{len(parents)} hierarchies, {len(flat)} flat"
    )


if __name__ == "__main__":
    main(sys.argv[1])

"""Extract what fhirlake needs at run time from the official R4 core package.

Source: hl7.fhir.r4.core-4.0.1.tgz (HL7 FHIR R4 4.0.1, CC0-1.0), see ../shared/data/SOURCES.md.
Output goes to functions/fhirlake/data/r4/ and is committed, so the product never reads
../shared at run time. Re-run after changing what is extracted:

    .venv/bin/python scripts/extract_spec_data.py ../shared/data/spec/r4/hl7.fhir.r4.core-4.0.1.tgz
"""

from __future__ import annotations

import json
import sys
import tarfile
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "functions" / "fhirlake" / "data" / "r4"


def main(tgz_path: str) -> None:
    with tarfile.open(tgz_path) as tgz:
        types = []
        summaries: dict[str, dict[str, list[str]]] = {}
        compartments: dict[str, dict[str, list[str]]] = {}
        for member in tgz.getmembers():
            name = member.name
            if name.startswith("package/CompartmentDefinition-") and name.endswith(".json"):
                definition = json.load(tgz.extractfile(member))
                compartments[definition["code"]] = {
                    r["code"]: r["param"] for r in definition.get("resource", []) if r.get("param")
                }
            if not (name.startswith("package/StructureDefinition-") and name.endswith(".json")):
                continue
            sd = json.load(tgz.extractfile(member))
            concrete = sd.get("kind") == "resource" and sd.get("derivation") == "specialization"
            if concrete and not sd.get("abstract"):
                types.append(sd["type"])
                summaries[sd["type"]] = _summary_elements(sd)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "resource-types.json").write_text(json.dumps(sorted(types), indent=0) + "\n")
    (OUT / "summary-elements.json").write_text(json.dumps(summaries, sort_keys=True) + "\n")
    (OUT / "compartments.json").write_text(json.dumps(compartments, sort_keys=True) + "\n")
    print(f"{len(types)} resource types, {len(compartments)} compartments -> {OUT}")


def _summary_elements(sd: dict) -> dict[str, list[str]]:
    """Top-level element names (choice elements by their prefix, e.g. "value") that ``_summary=true``
    keeps (isSummary) and that ``_summary=text`` keeps (mandatory: min >= 1)."""
    summary, mandatory = set(), set()
    for element in sd["snapshot"]["element"]:
        parts = element["path"].split(".")
        if len(parts) != 2:
            continue
        name = parts[1].removesuffix("[x]")
        if element.get("isSummary"):
            summary.add(name)
        if element.get("min", 0) >= 1:
            mandatory.add(name)
    return {"summary": sorted(summary), "mandatory": sorted(mandatory)}


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/spec/r4/hl7.fhir.r4.core-4.0.1.tgz")

"""Bundle entries with ``urn:uuid:`` / ``urn:oid:`` fullUrls turned into stored resources whose
references point at each other (http://hl7.org/fhir/R4/bundle.html#references).

Kept as the id when the UUID is a valid FHIR id (it always is: 36 chars of hex and '-'), so the
same bundle loaded twice updates rather than duplicates.
"""

from __future__ import annotations

import uuid
from typing import Any

from fhirlake.fhir.types import is_valid_id


def _rewrite(value: Any, mapping: dict[str, str]) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == "reference" and isinstance(item, str) and item in mapping:
                out[key] = mapping[item]
            else:
                out[key] = _rewrite(item, mapping)
        return out
    if isinstance(value, list):
        return [_rewrite(item, mapping) for item in value]
    return value


def bundle_resources(bundle: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(type, id, resource) for every entry resource, with internal references resolved."""
    entries = [
        e for e in bundle.get("entry", []) if isinstance(e, dict) and isinstance(e.get("resource"), dict)
    ]
    mapping: dict[str, str] = {}
    planned: list[tuple[str, str, dict[str, Any]]] = []
    for entry in entries:
        resource = entry["resource"]
        rtype = resource.get("resourceType", "")
        full_url = entry.get("fullUrl") or ""
        if full_url.startswith("urn:uuid:") and is_valid_id(full_url[9:]):
            rid = full_url[9:]
        elif is_valid_id(resource.get("id")):
            rid = resource["id"]
        else:
            rid = str(uuid.uuid4())
        if full_url:
            mapping[full_url] = f"{rtype}/{rid}"
        planned.append((rtype, rid, resource))
    return [(rtype, rid, {**_rewrite(res, mapping), "id": rid}) for rtype, rid, res in planned]

"""History bundles (http://hl7.org/fhir/R4/http.html#history)."""

from __future__ import annotations

import uuid
from typing import Any

from fhirlake.fhir.instant import now_instant
from fhirlake.persistence import StoredVersion

_STATUS = {"POST": "201 Created", "PUT": "200 OK", "PATCH": "200 OK", "DELETE": "204 No Content"}


def history_entry(base_url: str, version: StoredVersion) -> dict[str, Any]:
    rtype, rid = version.resource_type, version.id
    entry: dict[str, Any] = {"fullUrl": f"{base_url}/{rtype}/{rid}"}
    if version.resource is not None:
        entry["resource"] = version.resource
    entry["request"] = {
        "method": version.method,
        "url": rtype if version.method == "POST" else f"{rtype}/{rid}",
    }
    status = _STATUS[version.method]
    if version.method == "PUT" and version.version_id == 1:
        status = "201 Created"  # update-as-create
    entry["response"] = {
        "status": status,
        "etag": f'W/"{version.version_id}"',
        "lastModified": version.last_updated,
    }
    return entry


def new_bundle(kind: str, links: dict[str, str] | None = None, total: int | None = None) -> dict[str, Any]:
    """A server-made Bundle: fresh id, lastUpdated now, then total and links when given."""
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": now_instant()},
        "type": kind,
    }
    if total is not None:
        bundle["total"] = total
    if links is not None:
        bundle["link"] = [{"relation": rel, "url": url} for rel, url in links.items()]
    return bundle


def history_bundle(
    base_url: str, versions: list[StoredVersion], links: dict[str, str], total: int | None = None
) -> dict[str, Any]:
    bundle = new_bundle("history", links, total)
    bundle["entry"] = [history_entry(base_url, v) for v in versions]
    return bundle


def searchset_bundle(
    base_url: str,
    matches: list[dict[str, Any]],
    links: dict[str, str],
    total: int | None,
    outcome: dict[str, Any] | None = None,
    included: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    bundle = new_bundle("searchset", links, total)
    entries = [
        {
            "fullUrl": f"{base_url}/{resource['resourceType']}/{resource['id']}",
            "resource": resource,
            "search": {"mode": mode},
        }
        for mode, group in (("match", matches), ("include", included or []))
        for resource in group
    ]
    if outcome is not None:
        entries.append({"resource": outcome, "search": {"mode": "outcome"}})
    if entries:
        bundle["entry"] = entries
    return bundle

"""A tiny FHIR HTTP helper for tests: requests with FHIR JSON defaults."""

from __future__ import annotations

from typing import Any

import requests

FHIR_JSON = "application/fhir+json"


class FhirHttp:
    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")
        self.http = requests.Session()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
        **params: str,
    ) -> requests.Response:
        sent = {"Accept": FHIR_JSON, **(headers or {})}
        data = raw
        if body is not None:
            import json

            data = json.dumps(body).encode()
        if data is not None:
            sent.setdefault("Content-Type", FHIR_JSON)
        url = path if path.startswith("http") else f"{self.base}/{path.lstrip('/')}"
        return self.http.request(method, url, data=data, headers=sent, params=params or None, timeout=60)

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> requests.Response:
        return self.request("POST", path, body, **kw)

    def put(self, path: str, body: Any = None, **kw: Any) -> requests.Response:
        return self.request("PUT", path, body, **kw)

    def delete(self, path: str, **kw: Any) -> requests.Response:
        return self.request("DELETE", path, **kw)


def strip_server_meta(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource minus what the server owns (meta.versionId, meta.lastUpdated)."""
    out = dict(resource)
    meta = {k: v for k, v in (out.pop("meta", None) or {}).items() if k not in ("versionId", "lastUpdated")}
    if meta:
        out["meta"] = meta
    return out

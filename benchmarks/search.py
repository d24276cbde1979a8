"""Search cost per request on the Synthea data: DynamoDB requests, read units and handler CPU.

    .venv/bin/python benchmarks/search.py [--bundles 40] [--rounds 5]

Loads the first ``--bundles`` SMART Synthea patient bundles (``../shared/data/synthea/
smart-generated-sample-data-r4``) plus the Patient resource of every other bundle (40 bundles: 10,355
resources, 140 patients, 4,927 Observations) into DynamoDB on moto, in-process, through the store's own write
path (index entries included, default index configuration). Then every representative search runs
``--rounds`` times through the API core (``FhirApi.handle``: parse, plan, DynamoDB, match, Bundle JSON).

Every DynamoDB call goes through a counting proxy (one call at a time): requests per operation, items,
and the read/write units DynamoDB would bill, estimated from the item sizes (strongly consistent reads:
4 KB units, per Query total or per BatchGetItem item; writes: 1 KB units per item, x2 in a transaction,
+1 per history-index write). The proxy also takes the CPU time spent inside each call (moto runs
in-process), so **handler CPU = process CPU of the request minus the CPU inside storage calls**.

Baselines measured in the same run:
- ``read x N``: a plain ``GET /{type}/{id}`` of each resource the search page returned (one GetItem
  each): the cheapest way to fetch the same resources, per resource and per page;
- ``scan``: the same range query with the range driver disabled (date/number prefixes walk the whole
  parameter partition, as before the range driver);
- write units of the resource itself (version + current item) against those the index adds.
"""

from __future__ import annotations

import argparse
import gzip
import math
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "functions"))

DATA = REPO.parent / "shared" / "data" / "synthea" / "smart-generated-sample-data-r4"
BASE = "http://bench.example/fhir"


def attribute_bytes(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB counts it: attribute names plus values."""
    size = 0
    for name, value in item.items():
        ((kind, raw),) = value.items()
        if kind == "M":
            raw_size = attribute_bytes(raw)
        elif kind in ("S", "B"):
            raw_size = len(raw.encode() if isinstance(raw, str) else raw)
        else:
            raw_size = len(str(raw))
        size += len(name) + raw_size
    return size


class CountingDynamo:
    """Proxy of a DynamoDB client: counts requests, items and estimated capacity units, and the CPU time
    spent inside the calls (serialized, so that time is not mixed up between threads)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.requests: Counter[str] = Counter()
        self.rcu = 0.0
        self.wcu = 0.0
        self.index_wcu = 0.0
        self.storage_cpu = 0.0

    def _call(self, operation: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            start = time.process_time()
            try:
                resp = getattr(self._client, operation)(**kwargs)
            finally:
                self.storage_cpu += time.process_time() - start
        self.requests[operation] += 1
        return resp

    def query(self, **kwargs: Any) -> dict[str, Any]:
        resp = self._call("query", kwargs)
        pk = kwargs["ExpressionAttributeValues"][":pk"]["S"]
        # Index entries are read in full (pk, sk, vid) whatever the projection.
        size = sum(
            attribute_bytes(item) + (0 if "pk" in item else len("pk") + len(pk) + len("vid") + 2)
            for item in resp.get("Items", [])
        )
        self.rcu += max(1, math.ceil(size / 4096))
        return resp

    def batch_get_item(self, **kwargs: Any) -> dict[str, Any]:
        resp = self._call("batch_get_item", kwargs)
        for items in resp.get("Responses", {}).values():
            self.rcu += sum(math.ceil(attribute_bytes(item) / 4096) for item in items)
        return resp

    def get_item(self, **kwargs: Any) -> dict[str, Any]:
        resp = self._call("get_item", kwargs)
        self.rcu += max(1, math.ceil(attribute_bytes(resp.get("Item", {})) / 4096))
        return resp

    def transact_write_items(self, **kwargs: Any) -> dict[str, Any]:
        resp = self._call("transact_write_items", kwargs)
        for op in kwargs["TransactItems"]:
            item = op["Put"]["Item"]
            self.wcu += 2 * math.ceil(attribute_bytes(item) / 1024)
            self.wcu += sum(1 for g in ("gsi1pk", "gsi2pk") if g in item)
        return resp

    def batch_write_item(self, **kwargs: Any) -> dict[str, Any]:
        resp = self._call("batch_write_item", kwargs)
        for requests in kwargs["RequestItems"].values():
            units = sum(math.ceil(attribute_bytes(r["PutRequest"]["Item"]) / 1024) for r in requests)
            self.index_wcu += units
        return resp

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def load_resources(bundles: int) -> list[dict[str, Any]]:
    from fhirlake.fhir.json import loads

    paths = sorted(DATA.glob("*.json.gz"))
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for number, path in enumerate(paths):
        entries = loads(gzip.decompress(path.read_bytes()))["entry"]
        urls = {e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in entries}
        for entry in entries:
            resource = entry["resource"]
            if number >= bundles and resource["resourceType"] != "Patient":
                continue
            out.setdefault((resource["resourceType"], resource["id"]), _local_references(resource, urls))
    return list(out.values())


def _local_references(value: Any, urls: dict[str, str]) -> Any:
    """The bundle's ``urn:uuid`` references rewritten to the ``Type/id`` the stored resources have."""
    if isinstance(value, dict):
        return {
            k: urls.get(v, v) if k == "reference" and isinstance(v, str) else _local_references(v, urls)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_local_references(v, urls) for v in value]
    return value


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bundles", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import os

    for name, value in {
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        os.environ[name] = value
    os.environ.pop("AWS_ENDPOINT_URL", None)
    import boto3
    from moto import mock_aws

    with mock_aws():
        run(args, boto3.Session(region_name="us-east-1"))


def run(args: argparse.Namespace, session: Any) -> None:
    from fhirlake.api.app import FhirApi
    from fhirlake.api.http import Request
    from fhirlake.bootstrap import build_service
    from fhirlake.config import Settings
    from fhirlake.local import moto_server
    from fhirlake.local.provision import provision
    from fhirlake.persistence import search_index
    from fhirlake.search.parameters import parameters
    from fhirlake.validation import get_validator

    # The local runtime's moto fixes: no whole-table copy per transaction, Queries read their partition
    # (DynamoDB's own cost model; the proxy applies calls one at a time, as these fixes require).
    moto_server.patch_transactions()
    moto_server._index_partition_queries()
    settings = Settings.from_env(provision(session, None).environment())
    service = build_service(settings, session)
    counter = CountingDynamo(service.store.dynamodb)
    service.store._ddb = counter  # every storage call of the core goes through the proxy
    api = FhirApi(service, get_validator("minimal"), settings.max_body_bytes)

    resources = load_resources(args.bundles)
    started = time.monotonic()
    plans = [service.plan_write(r["resourceType"], r["id"], r, None, "PUT") for r in resources]
    counter.reset()
    for start in range(0, len(plans), 50):
        service.commit(plans[start : start + 50])
    by_type = Counter(r["resourceType"] for r in resources)
    print(
        f"loaded {len(resources):,} resources ({by_type['Patient']} patients, {by_type['Observation']:,} "
        f"observations) in {time.monotonic() - started:.0f} s"
    )
    n = len(resources)
    print(
        f"write units per resource (default configuration): resource {counter.wcu / n:.1f} WCU (version + "
        f"current item, transactional, + history index); index entries {counter.index_wcu / n:.1f} WCU "
        f"= {counter.index_wcu / counter.wcu:.2f}x the resource's own"
    )
    entries_per_type = {
        rtype: statistics.mean(
            len(service.store.search_entries(version))
            for version, _ in plans
            if version.resource_type == rtype
        )
        for rtype in ("Patient", "Observation", "Encounter", "Claim")
    }
    print("index entries per resource: " + ", ".join(f"{t} {m:.1f}" for t, m in entries_per_type.items()))
    hot = {t: [c for c, p in parameters(t).items() if p.shards > 1] for t in ("Patient", "Observation")}
    print(f"write-sharded (8 ways): {hot}")

    patient = next(r["id"] for r in resources if r["resourceType"] == "Patient")
    top_code = Counter(
        (c["system"], c["code"])
        for r in resources
        if r["resourceType"] == "Observation"
        for c in r.get("code", {}).get("coding", [])[:1]
    ).most_common(1)[0][0]
    queries = [
        ("Patient", [("gender", "female")]),
        ("Patient", [("gender", "female"), ("_count", "10")]),
        ("Patient", [("name", "ma")]),
        ("Patient", [("birthdate", "ge1990")]),
        ("Patient", [("birthdate", "lt1950")]),
        ("Observation", [("code", f"{top_code[0]}|{top_code[1]}")]),
        ("Observation", [("status", "final")]),
        ("Observation", [("subject", f"Patient/{patient}")]),
        ("Observation", [("value-quantity", "lt5")]),
        ("Observation", [("date", "lt2000")]),
        ("Encounter", [("date", "lt2000")]),
        ("Observation", [("date", "ge2019"), ("code", f"{top_code[0]}|{top_code[1]}")]),
        ("Observation", [("_lastUpdated", "lt2000")]),
    ]

    def measure(rtype: str, query: list[tuple[str, str]]) -> tuple[dict[str, Any], list[str]]:
        rows, ids = [], []
        for _ in range(args.rounds):
            counter.reset()
            start = time.process_time()
            response = api.handle(
                Request("GET", f"/{rtype}", query, {"accept": "application/fhir+json"}, b"", BASE)
            )
            cpu = time.process_time() - start - counter.storage_cpu
            assert response.status == 200, response.body[:300]
            bundle = __import__("orjson").loads(response.body)
            ids = [e["resource"]["id"] for e in bundle.get("entry", [])]
            rows.append((sum(counter.requests.values()), counter.rcu, cpu, dict(counter.requests)))
        best = min(rows, key=lambda row: row[2])
        return {
            "requests": rows[0][0],
            "ops": rows[0][3],
            "rcu": rows[0][1],
            "cpu_ms": statistics.median(r[2] for r in rows) * 1000,
            "best_cpu_ms": best[2] * 1000,
        }, ids

    def plain_reads(rtype: str, ids: list[str]) -> dict[str, Any]:
        counter.reset()
        start = time.process_time()
        for rid in ids:
            api.handle(Request("GET", f"/{rtype}/{rid}", [], {"accept": "application/fhir+json"}, b"", BASE))
        cpu = time.process_time() - start - counter.storage_cpu
        return {"requests": sum(counter.requests.values()), "rcu": counter.rcu, "cpu_ms": cpu * 1000}

    print(
        f"\n{'search (page of up to 50)':58} {'hits':>4} {'DDB req':>7} {'RCU':>5} {'CPU ms':>7}  "
        f"{'read x N: req':>13} {'RCU':>5} {'CPU ms':>7}  {'RCU ratio':>9} {'CPU ratio':>9}"
    )
    for rtype, query in queries:
        figures, ids = measure(rtype, query)
        base = plain_reads(rtype, ids) if ids else {"requests": 0, "rcu": 0, "cpu_ms": 0}
        label = f"{rtype}?" + "&".join(f"{k}={v}" for k, v in query)
        ratio_rcu = f"{figures['rcu'] / base['rcu']:.2f}x" if base["rcu"] else "-"
        ratio_cpu = f"{figures['cpu_ms'] / base['cpu_ms']:.2f}x" if base["cpu_ms"] else "-"
        print(
            f"{label[:58]:58} {len(ids):>4} {figures['requests']:>7} {figures['rcu']:>5.0f} "
            f"{figures['cpu_ms']:>7.1f}  {base['requests']:>13} {base['rcu']:>5.0f} {base['cpu_ms']:>7.1f}  "
            f"{ratio_rcu:>9} {ratio_cpu:>9}"
        )

    print("\nrange driver against the whole-partition walk it replaces (same query, same data):")
    original = search_index.driver_ranges

    def prefixes_only(criterion: Any) -> Any:
        prefixes = search_index.driver_prefixes(criterion)
        return (
            None
            if prefixes is None
            else [search_index.KeyRange(p, p + search_index.HIGHEST) for p in prefixes]
        )

    for rtype, query in [
        q for q in queries if q[1][0][0] in ("birthdate", "value-quantity", "date", "_lastUpdated")
    ]:
        ranged, _ = measure(rtype, query)
        search_index.driver_ranges = prefixes_only
        try:
            walked, _ = measure(rtype, query)
        finally:
            search_index.driver_ranges = original
        label = f"{rtype}?" + "&".join(f"{k}={v}" for k, v in query)
        print(
            f"  {label[:56]:56} range: {ranged['requests']:>3} req {ranged['rcu']:>4.0f} RCU "
            f"{ranged['cpu_ms']:>6.1f} ms | walk: {walked['requests']:>3} req {walked['rcu']:>4.0f} RCU "
            f"{walked['cpu_ms']:>6.1f} ms | {walked['rcu'] / max(ranged['rcu'], 1):.1f}x fewer RCU"
        )


if __name__ == "__main__":
    main()

"""Bulk import CPU cost per resource, with DynamoDB stubbed out and counted.

    .venv/bin/python benchmarks/import.py [--level strict] [--rounds 3]

Runs the import pipeline (``fhirlake.ingest.pipeline.LineImporter``: parse + conditional references +
validate + stamp + DynamoDB items incl. search index entries) over every line of the Synthea Bulk NDJSON
set (``../shared/data/synthea/bulk-ndjson-10-patients``, 7,160 resources) with a stub DynamoDB client
that answers "nothing stored yet" and counts requests, items and estimated write units. Conditional
references resolve through a stub search (one match each, cached as in the real run). Reports CPU
seconds (process time, one core), resources/s/core, items per write request and WCU per resource.
"""

from __future__ import annotations

import argparse
import gzip
import math
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "functions"))

from fhirlake.ingest.reader import lines  # noqa: E402
from fhirlake.ingest.results import ChunkResults  # noqa: E402
from fhirlake.persistence import StoredVersion  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "synthea" / "bulk-ndjson-10-patients"


def item_bytes(item: dict) -> int:
    size = 0
    for name, value in item.items():
        ((_kind, raw),) = value.items()
        size += len(name) + (len(raw) if isinstance(raw, bytes | str) else 8)
    return size


class StubDynamo:
    def __init__(self) -> None:
        self.requests = {"TransactWriteItems": 0, "BatchWriteItem": 0, "BatchGetItem": 0, "other": 0}
        self.items = 0
        self.wcu = 0.0

    def _write(self, item: dict, transactional: bool) -> None:
        self.items += 1
        units = math.ceil(item_bytes(item) / 1024)
        self.wcu += units * (2 if transactional else 1)
        self.wcu += sum(1 for g in ("gsi1pk", "gsi2pk") if g in item)  # KEYS_ONLY index writes

    def transact_write_items(self, TransactItems):
        self.requests["TransactWriteItems"] += 1
        for op in TransactItems:
            self._write(op["Put"]["Item"], True)
        return {}

    def batch_write_item(self, RequestItems):
        self.requests["BatchWriteItem"] += 1
        for requests in RequestItems.values():
            for request in requests:
                self._write(request["PutRequest"]["Item"], False)
        return {}

    def batch_get_item(self, RequestItems):
        self.requests["BatchGetItem"] += 1
        return {"Responses": {name: [] for name in RequestItems}}

    def get_item(self, **_):
        self.requests["other"] += 1
        return {}


class StubService:
    def find(self, rtype, query, base, limit):
        return [StoredVersion(rtype, "resolved-id", 1, "2024-01-01T00:00:00.000Z", "PUT", {})]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--level", default="strict")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from fhirlake.ingest.pipeline import LineImporter
    from fhirlake.persistence.dynamodb import DynamoResourceStore
    from fhirlake.search.extract import index_values
    from fhirlake.validation import get_validator

    raw = b"".join(gzip.decompress(p.read_bytes()) for p in sorted(DATA.glob("*.ndjson.gz")))
    corpus = list(lines([raw]))
    validator = get_validator(args.level)
    validator.validate({"resourceType": "Patient"})  # tables loaded outside the timing
    cpu, last = [], None
    for _ in range(args.rounds):
        stub = StubDynamo()
        store = DynamoResourceStore(stub, "t", None, "default", indexer=index_values)
        importer = LineImporter(StubService(), store, validator, id_seed="bench")
        results = ChunkResults({"bucket": "b", "key": "k"})
        start = time.process_time()
        importer.run(corpus, results)
        cpu.append(time.process_time() - start)
        last = (stub, results)
    stub, results = last
    n = results.counts["stored"]
    writes = stub.requests["TransactWriteItems"] + stub.requests["BatchWriteItem"]
    best = min(cpu)
    print(
        f"corpus: {len(corpus)} lines, {len(raw) / 1e6:.1f} MB; level {args.level}; stored {n}, "
        f"failed {results.counts['failed']}"
    )
    print(f"CPU: best {best:.2f} s, median {statistics.median(cpu):.2f} s over {args.rounds} rounds")
    print(f"resources/s/core: {n / best:,.0f} (best), {n / statistics.median(cpu):,.0f} (median)")
    print(f"write requests: {stub.requests}")
    print(
        f"items written: {stub.items} ({stub.items / n:.1f} per resource); "
        f"items per write request: {stub.items / writes:.1f}"
    )
    print(f"estimated WCU per resource: {stub.wcu / n:.1f}")


if __name__ == "__main__":
    main()

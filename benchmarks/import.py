"""Bulk import CPU cost per resource, with DynamoDB stubbed out and counted.

    .venv/bin/python benchmarks/import.py [--level strict] [--rounds 3]

Runs the import pipeline (``fhirlake.ingest.pipeline.LineImporter``: parse + conditional references +
validate + stamp + DynamoDB items incl. search index entries) over every line of the Synthea Bulk NDJSON
set (``../shared/data/synthea/bulk-ndjson-10-patients``, 7,160 resources) with a stub DynamoDB client
that answers "nothing stored yet" and keeps what it is sent (requests, items; estimated write units are
computed after the timing). Conditional references resolve through a stub search (one match each, cached
as in the real run). Reports CPU seconds (process time, one core), resources/s/core, the same run's
baseline (``orjson.loads`` of every line, timed in each round) and the pipeline's cost as a multiple of
it, items per write request and WCU per resource.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import math
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "functions"))

import orjson  # noqa: E402
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
    """Keeps references to the written items; sizes and write units are computed after the timing (the
    stub's own bookkeeping is not pipeline CPU).

    What it keeps is frozen out of the cyclic garbage collector (``gc.freeze``): a real client serializes
    a request and drops it, while ~500,000 kept dicts would make every full collection of the run scan
    them (they were ~30 % of the measured CPU)."""

    def __init__(self) -> None:
        self.requests = {"TransactWriteItems": 0, "BatchWriteItem": 0, "BatchGetItem": 0, "other": 0}
        self.transactions: list[list[dict]] = []  # the requests as sent, unpacked after the timing
        self.batches: list[list[dict]] = []

    def transact_write_items(self, TransactItems):
        self.requests["TransactWriteItems"] += 1
        self.transactions.append(TransactItems)
        gc.freeze()
        return {}

    def batch_write_item(self, RequestItems):
        self.requests["BatchWriteItem"] += 1
        self.batches += RequestItems.values()
        gc.freeze()
        return {}

    @property
    def written(self) -> list[tuple[dict, bool]]:
        """(item, transactional) of every item written."""
        return [(op["Put"]["Item"], True) for ops in self.transactions for op in ops] + [
            (request["PutRequest"]["Item"], False) for requests in self.batches for request in requests
        ]

    def batch_get_item(self, RequestItems):
        self.requests["BatchGetItem"] += 1
        return {"Responses": {name: [] for name in RequestItems}}

    def get_item(self, **_):
        self.requests["other"] += 1
        return {}

    @property
    def items(self) -> int:
        return len(self.written)

    @property
    def wcu(self) -> float:
        total = 0.0
        for item, transactional in self.written:
            total += math.ceil(item_bytes(item) / 1024) * (2 if transactional else 1)
            total += sum(1 for g in ("gsi1pk", "gsi2pk") if g in item)  # KEYS_ONLY index writes
        return total


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
    cpu, parse_cpu, last = [], [], None
    for _ in range(args.rounds):
        last = None  # the previous round's stub and what it kept are freed before this round
        gc.collect()
        start = time.process_time()  # the baseline, in the same rounds: parsing the lines, nothing else
        for line in corpus:
            orjson.loads(line.data)
        parse_cpu.append(time.process_time() - start)
        stub = StubDynamo()
        store = DynamoResourceStore(stub, "t", None, "default", indexer=index_values)
        importer = LineImporter(StubService(), store, validator, id_seed="bench")
        results = ChunkResults({"bucket": "b", "key": "k"})
        start = time.process_time()
        importer.run(corpus, results)
        cpu.append(time.process_time() - start)
        gc.unfreeze()
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
    print(
        f"baseline orjson.loads of the same lines: {len(corpus) / min(parse_cpu):,.0f}/s (best); "
        f"pipeline / parse-only CPU: {best / min(parse_cpu):.1f}x"
    )
    print(f"write requests: {stub.requests}")
    print(
        f"items written: {stub.items} ({stub.items / n:.1f} per resource); "
        f"items per write request: {stub.items / writes:.1f}"
    )
    print(f"estimated WCU per resource: {stub.wcu / n:.1f}")


if __name__ == "__main__":
    main()

"""Lake handler throughput and bytes written per resource, against baselines measured in the same run.

    .venv/bin/python benchmarks/lake.py [--batch 100] [--rounds 3]

Corpus: the Synthea bulk export (../shared/data/synthea/bulk-ndjson-10-patients, 7,160 resources of 13
types). Each resource becomes the DynamoDB stream record the lake Lambda receives (the store's own item
encoding: zlib body, base64 in the event JSON), cut into batches of ``--batch`` records in file order.

Measured, interleaved per round (median of the rounds):
- lake:         ``fhirlake.lake.stream.consume`` (decode, patient compartment, Arrow conversion, Parquet
                zstd, one file per type and batch), S3 PUTs and Glue calls stubbed and counted;
- lake+views:   the same with the 8 shipped ViewDefinitions materialized too (what the Lambda runs);
- baseline A:   orjson.loads of the same NDJSON lines (parsing alone);
- baseline B:   decoding the same stream records and writing them as gzip NDJSON (the Glue-crawled NDJSON
                design the lake did not choose).
"""

from __future__ import annotations

import argparse
import base64
import gzip
import io
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
from fhirlake.fhir import json as fhir_json
from fhirlake.lake.maintenance import distinct_rows
from fhirlake.lake.storage import GlueCatalog, LakeFiles, parquet_bytes, read_parquet
from fhirlake.lake.stream import consume
from fhirlake.lake.viewdefs import load_views
from fhirlake.lake.writer import LakeWriter
from fhirlake.persistence import StoredVersion
from fhirlake.persistence.dynamodb import DynamoResourceStore, version_from_item

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "data" / "synthea" / "bulk-ndjson-10-patients"
LAST_UPDATED = "2026-01-02T03:04:05.678Z"


class CountingS3:
    """Stands in for the S3 client: keeps nothing, counts PUTs and bytes."""

    def __init__(self) -> None:
        self.puts = 0
        self.bytes = 0
        self.objects: dict[str, bytes] = {}

    def put_object(self, Bucket: str, Key: str, Body: bytes, **_: Any) -> None:
        self.puts += 1
        self.bytes += len(Body)
        self.objects[Key] = Body


def compacted_bytes(objects: dict[str, bytes]) -> int:
    """Bytes of the lake once compaction merged each table's files into one (``distinct_rows``)."""
    tables: dict[str, list[bytes]] = {}
    for key, body in objects.items():
        tables.setdefault(key.rsplit("/", 1)[0], []).append(body)
    merged = 0
    for bodies in tables.values():
        rows = pa.concat_tables([read_parquet(b) for b in bodies], promote_options="permissive")
        merged += len(parquet_bytes(distinct_rows(rows)))
    return merged


class CountingGlue:
    """Stands in for the Glue client (the writer creates each table once per process)."""

    class exceptions:
        class AlreadyExistsException(Exception):
            pass

    def __init__(self) -> None:
        self.calls = 0

    def create_table(self, **_: Any) -> None:
        self.calls += 1


def load_lines() -> list[bytes]:
    lines: list[bytes] = []
    for path in sorted(CORPUS.glob("*.ndjson.gz")):
        lines.extend(line for line in gzip.decompress(path.read_bytes()).splitlines() if line.strip())
    return lines


def stream_records(lines: list[bytes]) -> list[dict[str, Any]]:
    """Each resource as the stream record of its first version, encoded by the store's own code."""
    store = DynamoResourceStore(None, "bench", blobs=None, tenant="default")  # type: ignore[arg-type]
    records = []
    for n, line in enumerate(lines):
        resource = orjson.loads(line)
        resource["meta"] = {**resource.get("meta", {}), "versionId": "1", "lastUpdated": LAST_UPDATED}
        version = StoredVersion(resource["resourceType"], resource["id"], 1, LAST_UPDATED, "PUT", resource)
        item, _ = store._to_item(version)  # the exact item the table holds (no blob: none is that big)
        item["body"] = {"B": base64.b64encode(item["body"]["B"]).decode()}  # as Lambda's JSON carries it
        records.append({"eventName": "INSERT", "dynamodb": {"NewImage": item, "SequenceNumber": str(n)}})
    return records


def timed(run: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = run()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--batch", type=int, default=100, help="records per stream batch (Lambda default 100)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    lines = load_lines()
    records = stream_records(lines)
    batches = [records[i : i + args.batch] for i in range(0, len(records), args.batch)]
    views = load_views()
    n = len(records)
    ndjson_bytes = sum(len(line) + 1 for line in lines)
    print(
        f"corpus: {n} resources, {ndjson_bytes / n:.0f} B/resource as NDJSON; "
        f"{len(batches)} batches of {args.batch}"
    )

    def lake(with_views: bool) -> Callable[[], CountingS3]:
        def run() -> CountingS3:
            s3, glue = CountingS3(), CountingGlue()
            files = LakeFiles(s3, "lake")
            writer = LakeWriter(files, GlueCatalog(glue, "fhirlake"), views if with_views else ())
            for batch in batches:
                consume(batch, writer, blobs=None, tenant="default")  # type: ignore[arg-type]
            return s3

        return run

    def parse_only() -> int:
        return sum(len(orjson.loads(line)) for line in lines)

    def ndjson_gzip() -> int:
        written = 0
        for batch in batches:
            out = io.BytesIO()
            with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6) as gz:
                for record in batch:
                    version = version_from_item(record["dynamodb"]["NewImage"], None)  # type: ignore[arg-type]
                    gz.write(fhir_json.dumps(version.resource) + b"\n")
            written += len(out.getvalue())
        return written

    runs: dict[str, list[float]] = {"lake": [], "lake+views": [], "orjson.loads": [], "ndjson.gz": []}
    outputs: dict[str, Any] = {}
    for _ in range(args.rounds):
        for name, run in (
            ("orjson.loads", parse_only),
            ("lake", lake(False)),
            ("ndjson.gz", ndjson_gzip),
            ("lake+views", lake(True)),
        ):
            seconds, outputs[name] = timed(run)
            runs[name].append(seconds)

    rates = {name: n / statistics.median(times) for name, times in runs.items()}
    for name, per_second in rates.items():
        print(f"{name:>13}: {per_second:>9,.0f} resources/s  (median of {args.rounds})")
    print(f"lake / orjson.loads       = {rates['lake'] / rates['orjson.loads']:.3f}x")
    print(f"lake / ndjson.gz          = {rates['lake'] / rates['ndjson.gz']:.3f}x")
    print(f"lake+views / ndjson.gz    = {rates['lake+views'] / rates['ndjson.gz']:.3f}x")
    lake_s3, views_s3 = outputs["lake"], outputs["lake+views"]
    print(
        f"bytes/resource: lake Parquet {lake_s3.bytes / n:.0f} ({lake_s3.puts} PUTs), "
        f"with views {views_s3.bytes / n:.0f} ({views_s3.puts} PUTs), "
        f"ndjson.gz {outputs['ndjson.gz'] / n:.0f}, "
        f"raw NDJSON {ndjson_bytes / n:.0f}"
    )
    print(
        f"Parquet / ndjson.gz bytes = {lake_s3.bytes / outputs['ndjson.gz']:.2f}x (as written by the stream)"
    )
    merged = compacted_bytes(views_s3.objects)
    print(f"after compaction (every table one file, views included): {merged / n:.0f} B/resource")


if __name__ == "__main__":
    main()

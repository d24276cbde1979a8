"""``fhirlake lake ...``: upkeep of the analytics lake of a running local store (``make run``).

fhirlake lake backfill            rebuild the lake from the resource table
fhirlake lake compact             merge small Parquet files
fhirlake lake erase --patient ID  remove one patient's rows from every lake table (GDPR)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fhirlake.ingest.local_client import STATE_FILE, read_state


def register(subparsers: Any) -> None:
    lake = subparsers.add_parser("lake", help="maintain the analytics lake of the running local store")
    commands = lake.add_subparsers(dest="lake_command", required=True)
    backfill = commands.add_parser("backfill", help="rebuild the lake from the resource table")
    backfill.add_argument(
        "--keep", action="store_true", help="keep files the backfill did not write (default: replace them)"
    )
    backfill.set_defaults(func=run_backfill)
    compact = commands.add_parser("compact", help="merge the small files of every lake table")
    compact.set_defaults(func=run_compact)
    erase = commands.add_parser("erase", help="erase one patient's rows from the lake (GDPR)")
    erase.add_argument("--patient", required=True, help="the Patient id")
    erase.set_defaults(func=run_erase)
    for command in (backfill, compact, erase):
        command.add_argument("--endpoint", help="AWS endpoint of the local store (default: from --state)")
        command.add_argument("--state", type=Path, default=STATE_FILE, help="state file of `fhirlake serve`")


def _local_lake(args: argparse.Namespace) -> Any:
    from fhirlake.lake.bootstrap import LakeSettings, build_lake

    endpoint = args.endpoint or (read_state(args.state) or {}).get("aws_endpoint")
    if not endpoint:
        print(
            f"No running fhirlake found ({args.state} is missing): start `make run`, or pass --endpoint",
            file=sys.stderr,
        )
        return None
    # The SDK's standard configuration points every client at the local endpoint, as in the runtime.
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    for name, value in (("AWS_ACCESS_KEY_ID", "local"), ("AWS_SECRET_ACCESS_KEY", "local")):
        os.environ.setdefault(name, value)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return build_lake(LakeSettings.local())


def run_backfill(args: argparse.Namespace) -> int:
    from fhirlake.lake.maintenance import table_versions

    lake = _local_lake(args)
    if lake is None:
        return 2
    settings = lake.settings
    versions = table_versions(lake.dynamodb, settings.table_name, lake.blobs, settings.tenant)
    count = lake.maintenance.backfill(versions, lake.writer, replace=not args.keep)
    print(f"Wrote {count} version(s) to s3://{settings.lake_bucket}")
    return 0


def run_compact(args: argparse.Namespace) -> int:
    lake = _local_lake(args)
    if lake is None:
        return 2
    print(json.dumps(asdict(lake.maintenance.compact()), indent=2))
    return 0


def run_erase(args: argparse.Namespace) -> int:
    lake = _local_lake(args)
    if lake is None:
        return 2
    print(json.dumps(asdict(lake.maintenance.erase_patient(args.patient)), indent=2))
    return 0

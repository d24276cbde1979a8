"""``fhirlake lake ...``: upkeep of the analytics lake of a running local store (``make run``).

fhirlake lake backfill            rebuild the lake from the resource table
fhirlake lake compact             merge small Parquet files
fhirlake lake erase --patient ID  remove one patient's rows from every lake table (GDPR)
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Any

from fhirlake.local.state import NoLocalStore, add_store_arguments, use_local_store


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
        add_store_arguments(command)


def _local_lake(args: argparse.Namespace) -> Any:
    from fhirlake.lake.bootstrap import LakeSettings, build_lake

    try:
        use_local_store(args.state, args.endpoint)
    except NoLocalStore as error:
        print(error, file=sys.stderr)
        return None
    return build_lake(LakeSettings.from_env())


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

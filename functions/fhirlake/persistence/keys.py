"""The single-table key design (documented in docs/architecture.md).

Every resource version is one item, and each resource has one current-version item (``sk = "cur"``,
the same attributes as its newest version, without the history index keys):

    pk     = "{tenant}#{type}#{id}"          all versions of one resource (and, later, its search entries)
    sk     = "v#{versionId:010d}"            versions sort numerically; newest = last
    gsi1pk = "{tenant}#{type}"               type-level history, newest first by gsi1sk
    gsi1sk = "{lastUpdated}#{id}#{versionId:010d}"
    gsi2pk = "{tenant}#h{shard}"             system-level history, write-sharded
    gsi2sk = "{lastUpdated}#{type}#{id}#{versionId:010d}"

Other item kinds in the same table take other ``sk`` prefixes (search entries: "i#...").
"""

from __future__ import annotations

import zlib

from fhirlake.topology import SYSTEM_HISTORY_SHARDS

CURRENT_SK = "cur"  # the current-version item: a copy of the newest version, read with one GetItem
VERSION_PREFIX = "v#"
VERSION_DIGITS = 10
LAST_VERSION_KEY = VERSION_PREFIX + "9" * VERSION_DIGITS
assert VERSION_DIGITS == 10  # _padded() spells it as a constant format spec


def resource_pk(tenant: str, resource_type: str, resource_id: str) -> str:
    return f"{tenant}#{resource_type}#{resource_id}"


def _padded(version_id: int) -> str:
    return f"{version_id:010d}"  # VERSION_DIGITS, as a constant spec: a nested one is parsed on each call


def version_sk(version_id: int) -> str:
    return VERSION_PREFIX + _padded(version_id)


def type_history_pk(tenant: str, resource_type: str) -> str:
    return f"{tenant}#{resource_type}"


def type_history_sk(last_updated: str, resource_id: str, version_id: int) -> str:
    return f"{last_updated}#{resource_id}#{_padded(version_id)}"


def system_history_shard(resource_type: str, resource_id: str) -> int:
    # crc32 is stable across processes (unlike hash()), so a resource always lands in one shard.
    return zlib.crc32(f"{resource_type}/{resource_id}".encode()) % SYSTEM_HISTORY_SHARDS


def system_history_pk(tenant: str, shard: int) -> str:
    return f"{tenant}#h{shard}"


def system_history_sk(last_updated: str, resource_type: str, resource_id: str, version_id: int) -> str:
    return f"{last_updated}#{resource_type}#{resource_id}#{_padded(version_id)}"


def version_item_keys(
    tenant: str, resource_type: str, resource_id: str, version_id: int, last_updated: str
) -> tuple[str, str, str, str, str, str]:
    """pk, sk, gsi1pk, gsi1sk, gsi2pk, gsi2sk of a version item: the functions above in one call (every
    write builds them; formatting the version once here costs half the six calls)."""
    padded = _padded(version_id)
    shard = system_history_shard(resource_type, resource_id)
    return (
        f"{tenant}#{resource_type}#{resource_id}",
        VERSION_PREFIX + padded,
        f"{tenant}#{resource_type}",
        f"{last_updated}#{resource_id}#{padded}",
        f"{tenant}#h{shard}",
        f"{last_updated}#{resource_type}#{resource_id}#{padded}",
    )

from __future__ import annotations

from fhirlake.persistence import keys


def test_version_item_keys_are_the_documented_layout() -> None:
    pk, sk, gsi1pk, gsi1sk, gsi2pk, gsi2sk = keys.version_item_keys(
        "acme", "Patient", "p-1", 12, "2024-05-01T10:00:00.000Z"
    )
    assert (pk, sk) == ("acme#Patient#p-1", "v#0000000012")
    assert (gsi1pk, gsi1sk) == ("acme#Patient", "2024-05-01T10:00:00.000Z#p-1#0000000012")
    assert gsi2pk == keys.system_history_pk("acme", keys.system_history_shard("Patient", "p-1"))
    assert gsi2sk == "2024-05-01T10:00:00.000Z#Patient#p-1#0000000012"
    assert (sk, gsi1sk, gsi2sk) == (
        keys.version_sk(12),
        keys.type_history_sk("2024-05-01T10:00:00.000Z", "p-1", 12),
        keys.system_history_sk("2024-05-01T10:00:00.000Z", "Patient", "p-1", 12),
    )


def test_versions_sort_numerically_up_to_the_last_key() -> None:
    sks = [keys.version_sk(v) for v in (1, 2, 9, 10, 11, 100, 9_999_999_999)]
    assert sorted(sks) == sks
    assert sks[-1] == keys.LAST_VERSION_KEY

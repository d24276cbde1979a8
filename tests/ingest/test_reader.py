"""Streamed reading: gzip, lines, line-aligned parts and poison detection."""

from __future__ import annotations

import gzip
import random

import pytest
from fhirlake.ingest.reader import PoisonInput, gunzip, lines, sniffed, split


def blocks(data: bytes, size: int = 37) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


DATA = b"".join(b'{"resourceType":"Basic","id":"b%d"}\n' % i for i in range(500))


def test_gunzip_streams_concatenated_members() -> None:
    two = gzip.compress(DATA) + gzip.compress(b'{"x":1}\n')
    assert b"".join(gunzip(blocks(two))) == DATA + b'{"x":1}\n'
    assert list(gunzip([])) == []


def test_invalid_and_truncated_gzip_are_poison() -> None:
    with pytest.raises(PoisonInput, match="not a valid gzip stream"):
        list(gunzip(blocks(b"this is not gzip at all" * 10)))
    with pytest.raises(PoisonInput, match="truncated"):
        list(gunzip(blocks(gzip.compress(DATA)[:-30])))


def test_lines_keep_numbers_and_offsets() -> None:
    data = b'{"a":1}\r\n\n{"b":2}\n{"c":3}'
    found = list(lines(blocks(data, 3)))
    assert [(x.number, x.offset, x.data) for x in found] == [
        (1, 0, b'{"a":1}'),
        (2, 9, b""),
        (3, 10, b'{"b":2}'),
        (4, 18, b'{"c":3}'),
    ]


@pytest.mark.parametrize("seed", range(5))
def test_split_parts_are_line_aligned_and_cover_everything(seed: int) -> None:
    rng = random.Random(seed)
    data = b"".join(b"{" + b"x" * rng.randrange(0, 300) + b"}\n" for _ in range(300))
    if seed % 2:
        data = data.rstrip(b"\n")  # no final line break
    every = list(lines([data]))
    parts = list(split(blocks(data, rng.randrange(5, 500)), rng.randrange(50, 3000), keep_data=True))
    assert b"".join(p.data for p in parts) == data
    assert [p.index for p in parts] == list(range(len(parts)))
    for part in parts:
        assert data[part.start : part.end] == part.data
        assert part.start == 0 or data[part.start - 1 : part.start] == b"\n"
        inside = list(lines([part.data], first_line=part.first_line, first_offset=part.start))
        assert inside == every[part.first_line - 1 : part.first_line - 1 + len(inside)]


def test_overlong_line_is_poison_without_buffering_it_all() -> None:
    data = b'{"a":1}\n{"b":"' + b"x" * 10_000
    with pytest.raises(PoisonInput, match=r"Line 2 \(from byte 8\) is longer than the 1000 bytes line limit"):
        list(lines(blocks(data, 100), max_line_bytes=1000))
    with pytest.raises(PoisonInput, match="Line 2"):
        list(split(blocks(data, 100), 50, max_line_bytes=1000))


@pytest.mark.parametrize(
    ("head", "reason"),
    [
        (b"\x00\x01\x02binary", "NUL bytes"),
        (b"\xff\xfe\xfa\xfb not utf-8 at all", "not UTF-8"),
        (b"PK\x03\x04zipfile", "does not start with a JSON object"),
    ],
)
def test_non_text_is_poison(head: bytes, reason: str) -> None:
    with pytest.raises(PoisonInput, match=reason):
        list(sniffed([head]))
    assert b"".join(sniffed([b"\xef\xbb\xbf{", b'"a":1}'])) == b'\xef\xbb\xbf{"a":1}'

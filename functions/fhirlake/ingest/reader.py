"""Reading dropped objects: streamed decompression, lines, line-aligned parts, poison detection.

Nothing here holds a whole NDJSON object in memory: bytes flow as blocks (``Blocks``), are cut into
lines (:func:`lines`) or into line-aligned parts (:func:`split`). Offsets are positions in the
*decompressed* stream, line numbers are 1-based and count every line (blank ones too).

Input that cannot be imported at all raises :class:`PoisonInput` with a reason meant for the job
record: an invalid or truncated gzip stream, content that is not text (NUL bytes, invalid UTF-8 at the
start), or a line longer than ``max_line_bytes`` (which is never buffered beyond that limit).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

BLOCK_BYTES = 1024 * 1024
MAX_LINE_BYTES = 64 * 1024 * 1024  # one resource per line; larger lines fail the job
SNIFF_BYTES = 64 * 1024

Blocks = Iterable[bytes]


class PoisonInput(Exception):
    """The object cannot be imported; ``reason`` says why (no resource content in it)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Line:
    number: int  # 1-based, in the whole (decompressed) object
    offset: int  # byte offset of the line's first byte in the decompressed object
    data: bytes  # without the line break


@dataclass(frozen=True, slots=True)
class Part:
    """A line-aligned byte range ``[start, end)`` of the decompressed object."""

    index: int
    start: int
    end: int
    first_line: int
    data: bytes | None = None  # the bytes, when the caller asked to keep them (gzip sources)


def gunzip(blocks: Blocks) -> Iterator[bytes]:
    """Decompress a gzip stream (several concatenated members allowed) block by block.

    Output is produced in bounded blocks (``max_length``), so a small "gzip bomb" never expands in
    memory at once.
    """
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    in_member = False
    try:
        for block in blocks:
            data, more = block, False
            while data or more:
                out = decoder.decompress(data, BLOCK_BYTES)
                in_member = in_member or bool(data)
                data, more = decoder.unconsumed_tail, bool(out)
                if out:
                    yield out
                if decoder.eof:
                    data = decoder.unused_data + data
                    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    in_member, more = False, False
    except zlib.error as exc:
        raise PoisonInput(f"The object is not a valid gzip stream ({exc.args[0].split(':')[0]})") from None
    if in_member:
        raise PoisonInput("The gzip stream is truncated (it ends before its end marker)")


def sniffed(blocks: Blocks) -> Iterator[bytes]:
    """Pass blocks through, failing early when the start of the stream is not JSON text."""
    head = b""
    iterator = iter(blocks)
    buffered: list[bytes] = []
    for block in iterator:
        buffered.append(block)
        head += block
        if len(head) >= SNIFF_BYTES:
            break
    _check_text(head[:SNIFF_BYTES])
    yield from buffered
    yield from iterator


def _check_text(head: bytes) -> None:
    if b"\x00" in head:
        raise PoisonInput("The object is not text (it contains NUL bytes): expected NDJSON or JSON")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not just a character cut at the sniff boundary
            raise PoisonInput(
                f"The object is not UTF-8 text (invalid byte at offset {exc.start}): expected NDJSON or JSON"
            ) from None
    stripped = head.lstrip(b" \t\r\n\xef\xbb\xbf")
    if stripped and not stripped.startswith((b"{", b"[")):
        raise PoisonInput("The object does not start with a JSON object: expected NDJSON or JSON")


def lines(
    blocks: Blocks, *, first_line: int = 1, first_offset: int = 0, max_line_bytes: int = MAX_LINE_BYTES
) -> Iterator[Line]:
    """Every line of the stream (a trailing ``\\r`` removed); raises PoisonInput on an over-long line."""
    buffer = bytearray()
    offset, number = first_offset, first_line
    for block in blocks:
        scan_from = len(buffer)
        buffer += block
        start = 0
        while True:
            newline = buffer.find(b"\n", max(start, scan_from))
            if newline < 0:
                break
            if newline - start > max_line_bytes:
                raise PoisonInput(_too_long(number, offset + start, max_line_bytes))
            yield Line(number, offset + start, _chomp(buffer[start:newline]))
            number += 1
            start = newline + 1
            scan_from = start
        if start:
            del buffer[:start]
            offset += start
        if len(buffer) > max_line_bytes:
            raise PoisonInput(_too_long(number, offset, max_line_bytes))
    if buffer:
        yield Line(number, offset, _chomp(buffer))


def _chomp(data: bytearray) -> bytes:
    return bytes(data[:-1] if data.endswith(b"\r") else data)


def _too_long(number: int, offset: int, limit: int) -> str:
    return (
        f"Line {number} (from byte {offset}) is longer than the {_size(limit)} line limit: "
        "the object is not NDJSON with one resource per line"
    )


def _size(limit: int) -> str:
    return f"{limit // (1024 * 1024)} MiB" if limit >= 1024 * 1024 else f"{limit} bytes"


def split(
    blocks: Blocks, part_bytes: int, *, keep_data: bool = False, max_line_bytes: int = MAX_LINE_BYTES
) -> Iterator[Part]:
    """Cut the stream into parts of about ``part_bytes`` that end on a line break.

    Counts lines on the way, so each part knows the number of its first line. With ``keep_data`` each
    part carries its bytes (used to stage decompressed gzip sources for parallel import).
    """
    index, start, first_line = 0, 0, 1
    size, newlines, since_newline = 0, 0, 0  # of the current part
    kept: list[bytes] = []
    for block in blocks:
        while block:
            room = part_bytes - size
            cut = block.find(b"\n", max(room - 1, 0)) if len(block) >= room else -1
            piece = block if cut < 0 else block[: cut + 1]
            block = b"" if cut < 0 else block[cut + 1 :]
            last = piece.rfind(b"\n")
            since_newline = since_newline + len(piece) if last < 0 else len(piece) - last - 1
            if since_newline > max_line_bytes:
                raise PoisonInput(
                    _too_long(first_line + newlines + piece.count(b"\n"), start, max_line_bytes)
                )
            newlines += piece.count(b"\n")
            size += len(piece)
            if keep_data:
                kept.append(piece)
            if cut >= 0:
                yield Part(index, start, start + size, first_line, b"".join(kept) if keep_data else None)
                index, start, first_line = index + 1, start + size, first_line + newlines
                size, newlines, kept = 0, 0, []
    if size:
        yield Part(index, start, start + size, first_line, b"".join(kept) if keep_data else None)

"""An independent, deliberately simple implementation of SNAPSHOT_FORMAT.md.

Written from the format page alone (no crema code), whole-file in memory, to
check that crema's files decode elsewhere and that crema reads files written
elsewhere.
"""

from __future__ import annotations

import struct
import zlib

import lz4.frame

Entry = tuple[bytes, bytes, int]  # expiry 0 = none


def encode(
    index: int,
    term: int,
    timestamp_ms: int,
    entries: list[Entry],
    *,
    compressed: bool,
    frames: int = 1,
) -> bytes:
    """A complete MCRS v1 file; a compressed body is split into ``frames`` LZ4 frames."""
    body = bytearray(struct.pack("<Q", len(entries)))
    for key, value, expiry in entries:
        body += struct.pack("<I", len(key)) + key + struct.pack("<I", len(value)) + value
        body += struct.pack("<Q", expiry)
    stored = bytes(body)
    if compressed:
        step = max(1, -(-len(stored) // frames))
        pieces = [stored[i : i + step] for i in range(0, len(stored), step)] or [b""]
        stored = b"".join(lz4.frame.compress(piece) for piece in pieces)
    header = b"MCRS" + struct.pack("<BBQQQ", 1, 1 if compressed else 0, index, term, timestamp_ms)
    data = header + stored
    return data + struct.pack("<I", zlib.crc32(data))


def decode(data: bytes) -> tuple[int, int, int, bool, list[Entry]]:
    """(index, term, timestamp_ms, compressed, entries); raises ValueError when invalid."""
    if len(data) < 34:
        raise ValueError("short")
    if data[:4] != b"MCRS" or data[4] != 1 or data[5] & 0xFE:
        raise ValueError("header")
    if struct.unpack("<I", data[-4:])[0] != zlib.crc32(data[:-4]):
        raise ValueError("crc")
    index, term, timestamp_ms = struct.unpack_from("<QQQ", data, 6)
    body = data[30:-4]
    if data[5] & 1:
        plain = b""
        while body:
            decompressor = lz4.frame.LZ4FrameDecompressor()
            plain += decompressor.decompress(body)
            if not decompressor.eof:
                raise ValueError("truncated frame")
            body = decompressor.unused_data
        body = plain
    (count,) = struct.unpack_from("<Q", body, 0)
    pos = 8
    entries: list[Entry] = []
    for _ in range(count):
        (klen,) = struct.unpack_from("<I", body, pos)
        key = body[pos + 4 : pos + 4 + klen]
        pos += 4 + klen
        (vlen,) = struct.unpack_from("<I", body, pos)
        value = body[pos + 4 : pos + 4 + vlen]
        pos += 4 + vlen
        (expiry,) = struct.unpack_from("<Q", body, pos)
        pos += 8
        if len(key) != klen or len(value) != vlen:
            raise ValueError("short entry")
        entries.append((key, value, expiry))
    if pos != len(body):
        raise ValueError("trailing bytes")
    return index, term, timestamp_ms, bool(data[5] & 1), entries

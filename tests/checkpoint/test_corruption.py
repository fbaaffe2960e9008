"""Corrupted files give SnapshotCorruptedError: never wrong data, never another error."""

from __future__ import annotations

import struct
import tracemalloc
import zlib
from pathlib import Path

import lz4.frame
import pytest

from crema.checkpoint import CheckpointConfig, CheckpointManager, SnapshotReader
from crema.errors import SnapshotCorruptedError, SnapshotError
from tests.checkpoint.conftest import write_snapshot

ENTRIES: list[tuple[bytes, bytes, int | None]] = [
    (b"alpha", b"one", None),
    (b"beta", b"two" * 5, 1_800_000_000_000),
    (b"gamma", b"", None),
]


def _check_all_paths_fail(manager: CheckpointManager, path: Path) -> str:
    with pytest.raises(SnapshotCorruptedError) as verified:
        manager.verify_snapshot(path)
    with pytest.raises(SnapshotCorruptedError), SnapshotReader.open(path) as reader:
        list(reader.entries())
    return verified.value.reason


@pytest.mark.parametrize("compression", [True, False])
def test_every_single_byte_flip_is_detected(tmp_path: Path, compression: bool) -> None:
    manager = CheckpointManager(CheckpointConfig(tmp_path / "c"))
    original = write_snapshot(tmp_path / "orig.snap", ENTRIES, compression=compression)
    data = original.read_bytes()
    broken = tmp_path / "broken.snap"
    for position in range(len(data)):
        for mask in (0x01, 0x80, 0xFF):
            mutated = bytearray(data)
            mutated[position] ^= mask
            broken.write_bytes(bytes(mutated))
            reason = _check_all_paths_fail(manager, broken)
            assert reason


@pytest.mark.parametrize("compression", [True, False])
def test_every_truncation_is_detected(tmp_path: Path, compression: bool) -> None:
    manager = CheckpointManager(CheckpointConfig(tmp_path / "c"))
    data = write_snapshot(tmp_path / "orig.snap", ENTRIES, compression=compression).read_bytes()
    broken = tmp_path / "broken.snap"
    for length in range(len(data)):
        broken.write_bytes(data[:length])
        _check_all_paths_fail(manager, broken)


def _raw_file(body: bytes, *, flags: int = 0, version: int = 1, magic: bytes = b"MCRS") -> bytes:
    """A file with a *valid* CRC around ``body``, to reach the structural checks."""
    head = magic + struct.pack("<BBQQQ", version, flags, 1, 1, 1_700_000_000_000)
    return head + body + struct.pack("<I", zlib.crc32(head + body))


def _entry(key: bytes, value: bytes, expiry: int = 0) -> bytes:
    return (
        struct.pack("<I", len(key))
        + key
        + struct.pack("<I", len(value))
        + value
        + (struct.pack("<Q", expiry))
    )


COUNT_1 = struct.pack("<Q", 1)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (_raw_file(COUNT_1 + _entry(b"k", b"v"), magic=b"MCRX"), "bad magic"),
        (_raw_file(COUNT_1 + _entry(b"k", b"v"), version=2), "unsupported version"),
        (_raw_file(COUNT_1 + _entry(b"k", b"v"), flags=0x02), "reserved flag"),
        (_raw_file(COUNT_1 + _entry(b"k", b"v") + b"x"), "trailing bytes"),
        (_raw_file(struct.pack("<Q", 2) + _entry(b"k", b"v")), "ends early"),
        (_raw_file(COUNT_1 + struct.pack("<I", 0xFFFFFFFF) + b"k"), "runs past the end"),
        (_raw_file(COUNT_1 + _entry(b"k", b"v")[:-3]), "runs past the end"),
        (_raw_file(b"\x01\x00"), "before the entry count"),
        (_raw_file(b""), "before the entry count"),
        (_raw_file(b"garbage-not-lz4", flags=1), "LZ4 error"),
        (_raw_file(lz4.frame.compress(COUNT_1 + _entry(b"k", b"v"))[:-5], flags=1), "LZ4"),
        (
            _raw_file(lz4.frame.compress(COUNT_1 + _entry(b"k", b"v")) + b"junk", flags=1),
            "LZ4 error",
        ),
        (_raw_file(lz4.frame.compress(COUNT_1 + _entry(b"k", b"v") + b"!"), flags=1), "trailing"),
        (b"MCRS" + b"\x01" * 20, "truncated"),
    ],
)
def test_structural_corruption_reasons(tmp_path: Path, raw: bytes, reason: str) -> None:
    path = tmp_path / "x.snap"
    path.write_bytes(raw)
    manager = CheckpointManager(CheckpointConfig(tmp_path / "c"))
    assert reason in _check_all_paths_fail(manager, path)


def test_crc_mismatch_reason(tmp_path: Path) -> None:
    data = bytearray(write_snapshot(tmp_path / "a.snap", ENTRIES, compression=False).read_bytes())
    data[-1] ^= 0x10
    (tmp_path / "a.snap").write_bytes(bytes(data))
    with pytest.raises(SnapshotCorruptedError, match="CRC mismatch"):
        CheckpointManager(CheckpointConfig(tmp_path / "c")).verify_snapshot(tmp_path / "a.snap")


def test_timestamp_out_of_datetime_range_is_corruption(tmp_path: Path) -> None:
    head = b"MCRS" + struct.pack("<BBQQQ", 1, 0, 1, 1, 2**64 - 1)
    body = struct.pack("<Q", 0)
    path = tmp_path / "t.snap"
    path.write_bytes(head + body + struct.pack("<I", zlib.crc32(head + body)))
    with pytest.raises(SnapshotCorruptedError, match="timestamp"):
        SnapshotReader.open(path)


def test_missing_file_is_snapshot_error_not_corruption(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError) as info:
        SnapshotReader.open(tmp_path / "nope.snap")
    assert not isinstance(info.value, SnapshotCorruptedError)


@pytest.mark.parametrize("compressed", [True, False])
def test_huge_length_fields_do_not_allocate(tmp_path: Path, compressed: bool) -> None:
    # Entry count 2**64-1 and a key length of 4 GiB, with a valid CRC.
    body = struct.pack("<Q", 2**64 - 1) + struct.pack("<I", 0xFFFFFFFF) + b"x" * 100
    if compressed:
        body = lz4.frame.compress(body)
    path = tmp_path / "huge.snap"
    path.write_bytes(_raw_file(body, flags=1 if compressed else 0))
    tracemalloc.start()
    try:
        with SnapshotReader.open(path) as reader:
            assert reader.entry_count == 2**64 - 1
            with pytest.raises(SnapshotCorruptedError):
                reader.verify()
            with pytest.raises(SnapshotCorruptedError):
                list(reader.entries())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20

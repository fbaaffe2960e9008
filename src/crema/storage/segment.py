"""Segment files: naming, crash-safe creation and scanning (layer L1).

Segments are named ``<seq>-<first index>.wal`` with both numbers as 16 hex
digits (``0000000000000001-0000000000000001.wal``); ``seq`` counts up by one
per segment and ``first index`` is the index the next entry had when the
segment was created (informational only). A segment is created complete with
its header and STATE record under a temporary name, fsynced, renamed into
place and the directory fsynced, so a segment never exists half-created.

Scanning classifies the first bad record of a file:

* *torn* (only in the last segment): the header is cut short, the payload
  runs past the end of the file, or the record fails a checksum and only
  zero bytes follow it. A crash while appending leaves exactly this shape.
* *corrupt*: anything else, for example a checksum mismatch with
  valid-looking data after it, or any bad record in an earlier segment.

Nothing but zero bytes from a record boundary to the end of the file is no
damage: it is the room the writer preallocates ahead of its records, and the
segment ends cleanly there. Because records overwrite those zeros in place, a
power loss can keep some blocks of an unsynced write and not others; so a bad
record of the last segment with a 512-byte disk block of its own that reads
as zeros (a block the disk never got) is torn too, whatever follows it (etcd's WAL
reads its preallocated segments the same way). Nothing after a torn record
was acknowledged: each fsync covers every earlier write.
"""

from __future__ import annotations

import fcntl
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from crema.errors import StorageError
from crema.storage.record import (
    FILE_HEADER_SIZE,
    HEADER,
    HEADER_SIZE,
    MAX_PAYLOAD,
    RecordKind,
    SegmentState,
    check_file_header,
    encode_state,
    file_header,
    frame,
)

SUFFIX = ".wal"
TMP_SUFFIX = ".tmp"
BROKEN_SUFFIX = ".broken"
_NAME = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.wal$")


@dataclass(frozen=True, slots=True)
class SegmentName:
    """A segment file found in a WAL directory."""

    seq: int
    first_index: int
    path: Path


def segment_file_name(seq: int, first_index: int) -> str:
    """The file name of segment ``seq`` opened when the next index was ``first_index``."""
    return f"{seq:016x}-{first_index:016x}{SUFFIX}"


def list_segments(directory: Path) -> list[SegmentName]:
    """The segment files of ``directory`` in sequence order (empty if it does not exist)."""
    if not directory.is_dir():
        return []
    found: list[SegmentName] = []
    for name in os.listdir(directory):
        match = _NAME.match(name)
        if match:
            found.append(SegmentName(int(match[1], 16), int(match[2], 16), directory / name))
    found.sort(key=lambda s: s.seq)
    return found


def fsync_dir(directory: Path) -> None:
    """Fsync a directory so that creations, renames and removals in it are durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def lock_directory(directory: Path, *, durable: bool) -> int:
    """Create ``directory`` if needed and lock it for this process; return the lock's fd.

    Raises:
        StorageError: another process holds the lock.
    """
    existed = directory.is_dir()
    directory.mkdir(parents=True, exist_ok=True)
    if not existed and durable:
        fsync_dir(directory.parent)
    fd = os.open(directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(fd)
        raise StorageError(f"{directory} is in use by another process") from exc
    return fd


def create_segment(directory: Path, state: SegmentState, *, durable: bool) -> Path:
    """Create segment ``state.seq`` holding its header and STATE record; return its path.

    Args:
        directory: the WAL directory (must exist).
        state: the state the segment opens with.
        durable: fsync the file and the directory (false only under ``never``).
    """
    path = directory / segment_file_name(state.seq, state.last_index + 1)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    data = file_header() + frame(RecordKind.STATE, encode_state(state))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if durable:
        fsync_dir(directory)
    return path


@dataclass(frozen=True, slots=True)
class Problem:
    """The first bad record of a segment."""

    offset: int
    reason: str
    torn: bool


SECTOR = 512
"""The block size for telling a torn write in preallocated space (see the module docstring)."""


def zero_block(data: bytes, start: int, end: int) -> bool:
    """Whether a disk block of ``data[start:end]`` reads as zeros: a block that was never written.

    Blocks are :data:`SECTOR` bytes, aligned. The first one counts from
    ``start`` on (before it lie earlier records, written before) when at least
    a record header's worth of it is the record's.
    """
    lo = start
    while lo < end:
        stop = min(lo - lo % SECTOR + SECTOR, len(data))
        if (lo % SECTOR == 0 or stop - lo >= 16) and data.count(0, lo, stop) == stop - lo:
            return True
        lo = stop
    return False


def zeros_from(data: bytes, start: int) -> bool:
    """Whether every byte of ``data`` from ``start`` on is zero (true when there are none)."""
    return data.count(0, start) == max(len(data) - start, 0)


class SegmentScan:
    """Iterate the valid records of one segment's bytes; then read ``end`` and ``problem``.

    Iterating yields ``(offset, kind, payload)`` for each record that passes
    its checksums. Afterwards ``end`` is the offset just past the last valid
    record and ``problem`` describes what stopped the scan (None at a clean
    end of file).
    """

    def __init__(self, data: bytes, *, last: bool) -> None:
        self.data = data
        self.last = last
        self.end = 0
        self.problem: Problem | None = None

    def _fail(self, offset: int, reason: str, torn: bool) -> None:
        self.problem = Problem(offset, reason, torn and self.last)

    def _bad_header(self, pos: int) -> None:
        data = self.data
        if zeros_from(data, pos):
            return  # preallocated zeros: the clean end
        if len(data) - pos < HEADER_SIZE:
            self._fail(pos, "record header cut short by end of file", torn=True)
        else:
            torn = zeros_from(data, pos + HEADER_SIZE) or zero_block(data, pos, pos + HEADER_SIZE)
            self._fail(pos, "record header checksum mismatch", torn)

    def __iter__(self) -> Iterator[tuple[int, int, memoryview]]:
        data = self.data
        view = memoryview(data)
        size = len(data)
        bad_header = check_file_header(data)
        if bad_header is not None:
            self._fail(0, bad_header, torn=False)
            return
        pos = FILE_HEADER_SIZE
        unpack = HEADER.unpack_from
        crc32 = zlib.crc32
        while pos < size:
            self.end = pos
            if size - pos < HEADER_SIZE:
                self._bad_header(pos)
                return
            length, kind, payload_crc, header_crc = unpack(data, pos)
            if crc32(view[pos : pos + 12]) != header_crc:
                self._bad_header(pos)
                return
            end = pos + HEADER_SIZE + length
            if length > MAX_PAYLOAD:
                self._fail(pos, f"record length {length} exceeds {MAX_PAYLOAD}", torn=False)
                return
            if end > size:
                self._fail(pos, "record payload cut short by end of file", torn=True)
                return
            payload = view[pos + HEADER_SIZE : end]
            if crc32(payload) != payload_crc:
                torn = zeros_from(data, end) or zero_block(data, pos, end)
                self._fail(pos, "record payload checksum mismatch", torn)
                return
            yield pos, kind, payload
            pos = end
        self.end = pos


def read_segment(path: Path) -> bytes:
    """The whole content of a segment file."""
    with open(path, "rb") as f:
        return f.read()


def quarantine(path: Path) -> Path:
    """Rename ``path`` aside with a ``.broken`` suffix (never delete evidence)."""
    target = path.with_name(path.name + BROKEN_SUFFIX)
    os.replace(path, target)
    return target

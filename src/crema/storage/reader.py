"""Reading entries back from segment files by offset (layer L1).

Recent entries are served from memory by :class:`~crema.storage.wal.DiskStorage`;
older ones come from here: one ``pread`` of the record that holds them, its
checksums verified again (disks rot), and a few decoded records kept so that
a follower catching up sequentially does not decode a batch twice.
"""

from __future__ import annotations

import os
import zlib
from collections import OrderedDict
from pathlib import Path

from crema.errors import CorruptLogError
from crema.raft.types import Entry
from crema.storage.record import HEADER, HEADER_SIZE, PayloadError, RecordKind, decode_entries


class RecordReader:
    """Positional reads of ENTRIES records, with a small cache of decoded ones."""

    def __init__(self, cache_records: int = 8) -> None:
        self._fds: dict[int, int] = {}
        self._paths: dict[int, Path] = {}
        self._decoded: OrderedDict[tuple[int, int], list[Entry]] = OrderedDict()
        self._cache_records = cache_records
        self.reads = 0

    def add_segment(self, seq: int, path: Path) -> None:
        """Make segment ``seq`` readable (its file is opened on first use)."""
        self._paths[seq] = path

    def drop_segment(self, seq: int) -> None:
        """Forget segment ``seq`` (it is about to be removed)."""
        fd = self._fds.pop(seq, None)
        if fd is not None:
            os.close(fd)
        self._paths.pop(seq, None)
        for key in [k for k in self._decoded if k[0] == seq]:
            del self._decoded[key]

    def forget_from(self, seq: int, offset: int) -> None:
        """Drop cached records of ``seq`` at or after ``offset`` (that file was truncated)."""
        for key in [k for k in self._decoded if k[0] == seq and k[1] >= offset]:
            del self._decoded[key]

    def read(self, seq: int, offset: int, length: int) -> list[Entry]:
        """The entries of the record at ``offset`` in segment ``seq``.

        Raises:
            CorruptLogError: the record no longer passes its checksums.
        """
        key = (seq, offset)
        cached = self._decoded.get(key)
        if cached is not None:
            self._decoded.move_to_end(key)
            return cached
        fd = self._fds.get(seq)
        if fd is None:
            fd = self._fds[seq] = os.open(self._paths[seq], os.O_RDONLY)
        data = os.pread(fd, length, offset)
        self.reads += 1
        entries = self._decode(seq, offset, data)
        self._decoded[key] = entries
        if len(self._decoded) > self._cache_records:
            self._decoded.popitem(last=False)
        return entries

    def _decode(self, seq: int, offset: int, data: bytes) -> list[Entry]:
        path = self._paths[seq]
        if len(data) < HEADER_SIZE:
            raise CorruptLogError(path, offset, "record cut short on read")
        length, kind, payload_crc, header_crc = HEADER.unpack_from(data, 0)
        view = memoryview(data)
        if zlib.crc32(view[:12]) != header_crc or length != len(data) - HEADER_SIZE:
            raise CorruptLogError(path, offset, "record header changed on disk")
        if kind != RecordKind.ENTRIES or zlib.crc32(view[HEADER_SIZE:]) != payload_crc:
            raise CorruptLogError(path, offset, "record payload changed on disk")
        try:
            return decode_entries(view[HEADER_SIZE:])
        except PayloadError as exc:
            raise CorruptLogError(path, offset, str(exc)) from exc

    def close(self) -> None:
        """Close every file."""
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        self._decoded.clear()


class RecentEntries:
    """The latest entries of the log, kept in memory: always a suffix of the log.

    Attributes:
        lo: index of the first entry held (``last index + 1`` when empty).
    """

    def __init__(self, next_index: int, capacity: int) -> None:
        self.entries: list[Entry] = []
        self.lo = next_index
        self._capacity = capacity

    def __len__(self) -> int:
        return len(self.entries)

    def slice(self, lo: int, hi: int) -> list[Entry]:
        """Entries ``[lo, hi)``; ``lo`` must be at least :attr:`lo`."""
        return self.entries[lo - self.lo : hi - self.lo]

    def remember(self, appended: list[Entry]) -> None:
        """Record an append (which replaces every entry from its first index on)."""
        first = appended[0].index
        if first >= self.lo:
            del self.entries[first - self.lo :]
            self.entries.extend(appended)
        else:
            self.entries = list(appended)
            self.lo = first
        excess = len(self.entries) - self._capacity
        if excess > 0:
            excess += self._capacity // 4  # evict in chunks: amortised O(1)
            del self.entries[:excess]
            self.lo += excess

    def compact(self, index: int) -> None:
        """Forget entries up to ``index``."""
        if self.lo <= index:
            del self.entries[: index + 1 - self.lo]
            self.lo = index + 1

    def reset(self, next_index: int) -> None:
        """Forget everything; the log continues at ``next_index``."""
        self.entries = []
        self.lo = next_index

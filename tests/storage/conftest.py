"""Fixtures shared by the storage tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from crema.raft.memory_storage import MemoryStorage
from crema.raft.storage import LogStorage
from crema.raft.types import Entry, EntryType, Index, Term
from crema.storage import DiskStorage


def ents(lo: int, hi: int, term: int = 1, size: int = 8) -> list[Entry]:
    """Entries ``lo .. hi`` inclusive of ``term`` with distinct data."""
    return [
        Entry(Index(i), Term(term), EntryType.NORMAL, f"{i}:{term}:".encode().ljust(size, b"."))
        for i in range(lo, hi + 1)
    ]


class Harness:
    """A storage under test and a way to simulate a restart.

    For memory storage a restart keeps the same object; for disk storage it
    closes the storage and opens the directory again, so every assertion made
    after :meth:`reopen` checks what survived on disk.
    """

    def __init__(self, kind: str, tmp: Path) -> None:
        self.kind = kind
        self.dir = tmp / "wal"
        self.storage: LogStorage = self._open()

    def _open(self) -> LogStorage:
        if self.kind == "memory":
            return MemoryStorage()
        # tiny segments and cache: rolling, compaction of segments and reads
        # by offset all happen in small tests
        return DiskStorage.open(self.dir, segment_size=4096, cache_entries=3)

    def reopen(self) -> LogStorage:
        if self.kind == "disk":
            self.storage.sync()
            self.storage.close()
            self.storage = self._open()
        return self.storage


@pytest.fixture(params=["memory", "disk"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    """The storage contract's subject: each test runs on both implementations."""
    h = Harness(request.param, tmp_path)
    yield h
    h.storage.close()

"""RaftLog: unstable tail, cache of persisted entries, truncation, backtracking hints."""

from __future__ import annotations

import pytest

from crema.errors import CompactedError
from crema.raft.log import RaftLog
from crema.raft.memory_storage import MemoryStorage
from crema.raft.types import ConfState, Entry, Index, SnapshotMeta, Term


def ents(first: int, terms: list[int], tag: bytes = b"") -> list[Entry]:
    return [Entry(Index(first + i), Term(t), data=tag) for i, t in enumerate(terms)]


def persist(log: RaftLog, storage: MemoryStorage) -> None:
    """Simulate the runtime persisting the unstable tail."""
    if log.unstable:
        storage.append(list(log.unstable))
        last = log.unstable[-1]
        log.stable_to(last.index, last.term)


def test_append_persist_and_read_back_through_the_cache() -> None:
    storage = MemoryStorage()
    log = RaftLog(storage, Index(0))
    log.append(ents(1, [1, 1, 2]))
    assert log.last_index() == 3 and log.last_term() == 2
    persist(log, storage)
    assert log.unstable == [] and [e.index for e in log.cache] == [1, 2, 3]
    assert [e.term for e in log.slice(1, 4)] == [1, 1, 2]
    log.commit_to(3)
    log.applied_to(2)
    assert [e.index for e in log.cache] == [3]
    assert [e.term for e in log.slice(1, 4)] == [1, 1, 2]  # 1..2 now from storage


def test_truncation_invalidates_the_cache() -> None:
    storage = MemoryStorage()
    log = RaftLog(storage, Index(0))
    log.append(ents(1, [1, 1, 1, 1]))
    persist(log, storage)
    log.maybe_append(2, 1, 0, tuple(ents(3, [2], b"new")))
    assert [log.term(i) for i in range(1, 4)] == [1, 1, 2]
    assert log.last_index() == 3
    assert log.slice(3, 4)[0].data == b"new"
    persist(log, storage)
    assert [e.term for e in log.slice(1, 4)] == [1, 1, 2]


def test_committed_entries_are_never_truncated() -> None:
    log = RaftLog(MemoryStorage(), Index(0))
    log.append(ents(1, [1, 1]))
    log.commit_to(2)
    with pytest.raises(AssertionError):
        log.maybe_append(1, 1, 2, tuple(ents(2, [2])))


def test_find_conflict_by_term_skips_whole_terms() -> None:
    log = RaftLog(MemoryStorage(), Index(0))
    log.append(ents(1, [1, 1, 3, 3, 3, 5, 5]))
    assert log.find_conflict_by_term(7, 4) == (5, 3)
    assert log.find_conflict_by_term(7, 2) == (2, 1)
    assert log.find_conflict_by_term(7, 0) == (0, 0)
    assert log.find_conflict_by_term(4, 9) == (4, 3)


def test_slice_respects_byte_limit_but_returns_one_entry() -> None:
    log = RaftLog(MemoryStorage(), Index(0))
    log.append(ents(1, [1, 1, 1], b"x" * 100))
    assert len(log.slice(1, 4, max_bytes=1)) == 1
    assert len(log.slice(1, 4, max_bytes=260)) == 2
    assert len(log.slice(1, 4)) == 3


def test_compacted_slice_raises() -> None:
    storage = MemoryStorage()
    storage.append(ents(1, [1, 1, 1]))
    storage.create_snapshot(SnapshotMeta(Index(2), Term(1), ConfState()))
    storage.compact(Index(2))
    log = RaftLog(storage, Index(2))
    assert log.first_index() == 3 and log.term(2) == 1 and log.term(1) is None
    with pytest.raises(CompactedError):
        log.slice(1, 3)


def test_restore_replaces_the_log() -> None:
    log = RaftLog(MemoryStorage(), Index(0))
    log.append(ents(1, [1, 1]))
    meta = SnapshotMeta(Index(10), Term(3), ConfState())
    log.restore(meta)
    assert (log.last_index(), log.committed, log.first_index()) == (10, 10, 11)
    assert log.term(10) == 3 and log.next_committed_entries() == []
    log.stable_snapshot_to(10)
    assert log.pending_snapshot is None

"""The storage contract (crema.raft.storage), run against memory and disk alike.

Every test takes the parametrized ``harness`` fixture; ``h.reopen()`` is a
restart for the disk implementation and a no-op for memory, so each claim
is checked both live and after recovery.
"""

from __future__ import annotations

import pytest

from crema.errors import CompactedError, EntryUnavailableError
from crema.raft.types import (
    ConfState,
    Entry,
    EntryType,
    HardState,
    Index,
    NodeId,
    SnapshotMeta,
    Term,
)
from tests.storage.conftest import Harness, ents

I = Index  # noqa: E741 - short alias keeps index arithmetic readable
CONF = ConfState(frozenset({NodeId(1), NodeId(2), NodeId(3)}), frozenset({NodeId(4)}))


def test_empty_storage(harness: Harness) -> None:
    for s in (harness.storage, harness.reopen()):
        assert s.first_index() == 1
        assert s.last_index() == 0
        assert s.term(I(0)) == 0
        assert s.entries(I(1), I(1)) == []
        assert s.snapshot_meta() == SnapshotMeta()
        assert s.initial_state() == (HardState(), ConfState())


def test_append_then_read(harness: Harness) -> None:
    s = harness.storage
    s.append(ents(1, 10, term=1))
    s.append(ents(11, 20, term=2))
    for s in (harness.storage, harness.reopen()):
        assert s.first_index() == 1
        assert s.last_index() == 20
        assert s.entries(I(1), I(21)) == ents(1, 10, 1) + ents(11, 20, 2)
        assert s.entries(I(5), I(15)) == ents(5, 10, 1) + ents(11, 14, 2)
        assert s.term(I(10)) == 1
        assert s.term(I(11)) == 2


def test_entry_types_and_empty_data_survive(harness: Harness) -> None:
    batch = [
        Entry(I(1), Term(1)),
        Entry(I(2), Term(1), EntryType.CONF_CHANGE, b"\x00conf\xff"),
        Entry(I(3), Term(2), EntryType.NORMAL, b"x" * 3000),
    ]
    harness.storage.append(batch)
    assert harness.reopen().entries(I(1), I(4)) == batch


def test_max_bytes_returns_at_least_one_entry(harness: Harness) -> None:
    s = harness.storage
    s.append(ents(1, 10, size=100))
    one = ents(1, 1, size=100)[0].size()
    for s in (harness.storage, harness.reopen()):
        assert len(s.entries(I(1), I(11), max_bytes=0)) == 1
        assert len(s.entries(I(1), I(11), max_bytes=one)) == 1
        assert len(s.entries(I(1), I(11), max_bytes=3 * one + 1)) == 3
        assert len(s.entries(I(1), I(11), max_bytes=None)) == 10


def test_append_overwrites_conflicting_suffix(harness: Harness) -> None:
    s = harness.storage
    s.append(ents(1, 10, term=1))
    s.append(ents(6, 8, term=2))
    for s in (harness.storage, harness.reopen()):
        assert s.last_index() == 8
        assert s.entries(I(1), I(9)) == ents(1, 5, 1) + ents(6, 8, 2)
    s.append(ents(9, 12, term=3))
    s.append(ents(1, 2, term=4))
    for s in (harness.storage, harness.reopen()):
        assert s.last_index() == 2
        assert s.entries(I(1), I(3)) == ents(1, 2, 4)
        with pytest.raises(EntryUnavailableError):
            s.term(I(3))


def test_append_refuses_gaps_and_compacted_indexes(harness: Harness) -> None:
    s = harness.storage
    s.append(ents(1, 5))
    with pytest.raises(EntryUnavailableError):
        s.append(ents(7, 8))
    s.create_snapshot(SnapshotMeta(I(3), Term(1), CONF))
    s.compact(I(3))
    with pytest.raises(CompactedError):
        s.append(ents(3, 4))
    s.append([])  # nothing to do
    s = harness.reopen()
    assert s.entries(I(4), I(6)) == ents(4, 5)


def test_read_errors(harness: Harness) -> None:
    s = harness.storage
    s.append(ents(1, 10))
    s.create_snapshot(SnapshotMeta(I(4), Term(1)))
    s.compact(I(4))
    for s in (harness.storage, harness.reopen()):
        assert s.term(I(4)) == 1  # the compaction index stays answerable
        with pytest.raises(CompactedError):
            s.term(I(3))
        with pytest.raises(EntryUnavailableError):
            s.term(I(11))
        with pytest.raises(CompactedError):
            s.entries(I(4), I(6))
        with pytest.raises(EntryUnavailableError):
            s.entries(I(5), I(12))
        assert s.entries(I(5), I(11)) == ents(5, 10)


def test_hard_state_and_membership_persist(harness: Harness) -> None:
    s = harness.storage
    s.set_hard_state(HardState(Term(3), NodeId(2), I(0)))
    s.set_hard_state(HardState(Term(4), None, I(0)))
    s.set_conf_state(CONF)
    assert harness.reopen().initial_state() == (HardState(Term(4), None, I(0)), CONF)
    s = harness.storage
    s.append(ents(1, 3, term=4))
    s.set_hard_state(HardState(Term(4), NodeId(1), I(3)))
    assert harness.reopen().initial_state() == (HardState(Term(4), NodeId(1), I(3)), CONF)


def test_create_snapshot_rules(harness: Harness) -> None:
    s = harness.storage
    s.append(ents(1, 5, term=1) + ents(6, 10, term=2))
    meta = SnapshotMeta(I(7), Term(2), CONF)
    s.create_snapshot(meta)
    s.create_snapshot(SnapshotMeta(I(6), Term(2)))  # older: ignored
    with pytest.raises(ValueError):
        s.create_snapshot(SnapshotMeta(I(8), Term(1)))  # wrong term
    with pytest.raises(EntryUnavailableError):
        s.create_snapshot(SnapshotMeta(I(11), Term(2)))
    for s in (harness.storage, harness.reopen()):
        assert s.snapshot_meta() == meta
        assert s.first_index() == 1  # no entry dropped
        assert s.last_index() == 10


def test_compact_keeps_trailing_entries(harness: Harness) -> None:
    s = harness.storage
    s.append(ents(1, 40, term=1, size=200))  # several segments on disk
    s.create_snapshot(SnapshotMeta(I(30), Term(1), CONF))
    with pytest.raises(ValueError):
        s.compact(I(31))
    s.compact(I(25))  # keep 5 trailing entries after the snapshot
    s.compact(I(10))  # at or below the compaction index: nothing
    for s in (harness.storage, harness.reopen()):
        assert s.first_index() == 26
        assert s.last_index() == 40
        assert s.term(I(25)) == 1
        assert s.entries(I(26), I(41)) == ents(26, 40, size=200)
        assert s.snapshot_meta().index == 30
    s.compact(I(30))
    s = harness.reopen()
    assert s.first_index() == 31
    assert s.entries(I(31), I(41)) == ents(31, 40, size=200)


def test_apply_snapshot_discards_the_log(harness: Harness) -> None:
    s = harness.storage
    s.append(ents(1, 20, term=1))
    meta = SnapshotMeta(I(50), Term(3), CONF)
    s.apply_snapshot(meta)
    for s in (harness.storage, harness.reopen()):
        assert s.snapshot_meta() == meta
        assert s.first_index() == 51
        assert s.last_index() == 50
        assert s.term(I(50)) == 3
        assert s.initial_state()[1] == CONF
        assert s.entries(I(51), I(51)) == []
        with pytest.raises(CompactedError):
            s.entries(I(50), I(51))
    s.append(ents(51, 55, term=3))
    s = harness.reopen()
    assert s.entries(I(51), I(56)) == ents(51, 55, term=3)


def test_apply_snapshot_behind_the_log(harness: Harness) -> None:
    s = harness.storage
    s.append(ents(1, 20, term=1))
    s.apply_snapshot(SnapshotMeta(I(10), Term(1)))
    for s in (harness.storage, harness.reopen()):
        assert (s.first_index(), s.last_index()) == (11, 10)


def test_many_batches_read_back_across_segments(harness: Harness) -> None:
    s = harness.storage
    expected: list[Entry] = []
    for lo in range(1, 300, 7):
        batch = ents(lo, lo + 6, term=1 + lo // 50, size=64)
        s.append(batch)
        expected += batch
    for s in (harness.storage, harness.reopen()):
        assert s.entries(I(1), I(s.last_index() + 1)) == expected
        for lo in range(1, 280, 37):
            assert s.entries(I(lo), I(lo + 20)) == expected[lo - 1 : lo + 19]

"""Stateful hypothesis test: DiskStorage against a dict model, with close and reopen."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

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
from crema.storage import DiskStorage

node_sets = st.frozensets(st.integers(1, 5).map(NodeId), max_size=3)


class Model:
    """The simplest possible picture of a Raft log."""

    def __init__(self) -> None:
        self.log: dict[int, Entry] = {}
        self.compact_index = 0
        self.compact_term = 0
        self.hard_state = HardState()
        self.conf_state = ConfState()
        self.snapshot = SnapshotMeta()

    @property
    def last(self) -> int:
        return max(self.log, default=self.compact_index)

    def term(self, index: int) -> int:
        return self.compact_term if index == self.compact_index else self.log[index].term


class WalMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="crema-wal-"))
        self.options = {"segment_size": 4096, "cache_entries": 4, "fsync": "never"}
        self.wal = DiskStorage.open(self.dir, **self.options)  # type: ignore[arg-type]
        self.model = Model()
        self.term = 1

    def teardown(self) -> None:
        self.wal.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(back=st.integers(0, 6), count=st.integers(1, 12), size=st.integers(0, 300))
    def append(self, back: int, count: int, size: int) -> None:
        m = self.model
        # entries covered by a snapshot are committed: Raft never overwrites them
        first = max(m.snapshot.index + 1, m.compact_index + 1, m.last + 1 - back)
        if back:
            self.term += 1  # a new leader overwrites the suffix with a higher term
        batch = [
            Entry(Index(i), Term(self.term), EntryType(i % 2), bytes([i % 256]) * size)
            for i in range(first, first + count)
        ]
        self.wal.append(batch)
        for i in [i for i in m.log if i >= first]:
            del m.log[i]
        m.log.update((e.index, e) for e in batch)

    @rule(vote=st.none() | st.integers(1, 5).map(NodeId), commit=st.integers(0, 1000))
    def set_hard_state(self, vote: NodeId | None, commit: int) -> None:
        hs = HardState(Term(self.term), vote, Index(commit))
        self.wal.set_hard_state(hs)
        self.model.hard_state = hs

    @rule(voters=node_sets)
    def set_conf_state(self, voters: frozenset[NodeId]) -> None:
        conf = ConfState(voters)
        self.wal.set_conf_state(conf)
        self.model.conf_state = conf

    @precondition(lambda self: self.model.last > self.model.snapshot.index)
    @rule(data=st.data())
    def create_snapshot(self, data: st.DataObject) -> None:
        m = self.model
        index = data.draw(st.integers(max(m.snapshot.index + 1, m.compact_index), m.last))
        meta = SnapshotMeta(Index(index), Term(m.term(index)), m.conf_state)
        self.wal.create_snapshot(meta)
        m.snapshot = meta

    @precondition(lambda self: self.model.snapshot.index > self.model.compact_index)
    @rule(data=st.data())
    def compact(self, data: st.DataObject) -> None:
        m = self.model
        index = data.draw(st.integers(m.compact_index + 1, m.snapshot.index))
        self.wal.compact(Index(index))
        m.compact_term = m.term(index)
        for i in [i for i in m.log if i <= index]:
            del m.log[i]
        m.compact_index = index

    @rule(ahead=st.integers(-3, 10), voters=node_sets)
    def apply_snapshot(self, ahead: int, voters: frozenset[NodeId]) -> None:
        m = self.model
        index = max(m.last + ahead, m.compact_index + 1, 1)
        self.term += 1
        meta = SnapshotMeta(Index(index), Term(self.term), ConfState(voters))
        self.wal.apply_snapshot(meta)
        m.log.clear()
        m.compact_index, m.compact_term = index, self.term
        m.snapshot = meta
        m.conf_state = meta.conf_state

    @rule(segment_size=st.sampled_from([4096, 8192, 1 << 20]))
    def reopen(self, segment_size: int) -> None:
        self.wal.sync()
        self.wal.close()
        self.options["segment_size"] = segment_size
        self.wal = DiskStorage.open(self.dir, **self.options)  # type: ignore[arg-type]

    @invariant()
    def matches_model(self) -> None:
        m, wal = self.model, self.wal
        assert wal.first_index() == m.compact_index + 1
        assert wal.last_index() == m.last
        assert wal.term(Index(m.compact_index)) == m.compact_term
        assert wal.initial_state() == (m.hard_state, m.conf_state)
        assert wal.snapshot_meta() == m.snapshot
        expected = [m.log[i] for i in range(m.compact_index + 1, m.last + 1)]
        assert wal.entries(Index(m.compact_index + 1), Index(m.last + 1)) == expected
        if len(expected) > 2:
            mid = expected[len(expected) // 2].index
            assert (
                wal.entries(Index(mid), Index(mid + 2)) == expected[mid - m.compact_index - 1 :][:2]
            )


WalMachine.TestCase.settings = settings(max_examples=80, stateful_step_count=40, deadline=None)
TestWal = WalMachine.TestCase

"""In-memory implementation of the Raft storage contract.

Used by the Raft core's tests and the deterministic simulation (where a
``MemoryStorage`` that survives a simulated crash stands in for disk), and
by nodes configured with ``raft_storage="memory"``.
"""

from __future__ import annotations

from crema.errors import CompactedError, EntryUnavailableError
from crema.raft.types import ConfState, Entry, HardState, Index, SnapshotMeta, Term


class MemoryStorage:
    """A log held in a Python list; :meth:`sync` does nothing.

    ``_entries[0]`` is a sentinel standing for the compaction point: its index
    and term are those of the last compacted entry (0 and 0 when nothing was
    ever compacted), so ``term(compaction index)`` stays answerable.
    """

    def __init__(self) -> None:
        self._hard_state = HardState()
        self._snapshot = SnapshotMeta()
        self._entries: list[Entry | tuple[Index, Term]] = [(Index(0), Term(0))]
        self._conf_state = ConfState()

    # -- reads --------------------------------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self._hard_state, self._conf_state

    def _offset(self) -> Index:
        head = self._entries[0]
        assert isinstance(head, tuple)
        return head[0]

    def first_index(self) -> Index:
        return Index(self._offset() + 1)

    def last_index(self) -> Index:
        return Index(self._offset() + len(self._entries) - 1)

    def term(self, index: Index) -> Term:
        offset = self._offset()
        if index < offset:
            raise CompactedError(f"index {index} is compacted (first index {offset + 1})")
        if index > self.last_index():
            raise EntryUnavailableError(f"index {index} is beyond last index {self.last_index()}")
        item = self._entries[index - offset]
        return item[1] if isinstance(item, tuple) else item.term

    def entries(self, lo: Index, hi: Index, max_bytes: int | None = None) -> list[Entry]:
        offset = self._offset()
        if lo <= offset:
            raise CompactedError(f"index {lo} is compacted (first index {offset + 1})")
        if hi > self.last_index() + 1:
            raise EntryUnavailableError(f"index {hi - 1} is beyond last index {self.last_index()}")
        selected: list[Entry] = []
        total = 0
        for item in self._entries[lo - offset : hi - offset]:
            assert isinstance(item, Entry)
            total += item.size()
            if selected and max_bytes is not None and total > max_bytes:
                break
            selected.append(item)
        return selected

    def snapshot_meta(self) -> SnapshotMeta:
        return self._snapshot

    # -- writes -------------------------------------------------------------

    def append(self, entries: list[Entry]) -> None:
        if not entries:
            return
        offset = self._offset()
        first = entries[0].index
        if first <= offset:
            raise CompactedError(f"cannot append at compacted index {first}")
        if first > self.last_index() + 1:
            raise EntryUnavailableError(
                f"append at {first} leaves a gap after last index {self.last_index()}"
            )
        del self._entries[first - offset :]
        self._entries.extend(entries)

    def set_hard_state(self, hard_state: HardState) -> None:
        self._hard_state = hard_state

    def set_conf_state(self, conf_state: ConfState) -> None:
        """Record the latest membership (the runtime calls this as conf changes apply)."""
        self._conf_state = conf_state

    def apply_snapshot(self, meta: SnapshotMeta) -> None:
        self._snapshot = meta
        self._conf_state = meta.conf_state
        self._entries = [(meta.index, meta.term)]

    def create_snapshot(self, meta: SnapshotMeta) -> None:
        if meta.index <= self._snapshot.index:
            return
        if meta.term != self.term(meta.index):
            raise ValueError(
                f"snapshot term {meta.term} differs from log term {self.term(meta.index)} "
                f"at index {meta.index}"
            )
        self._snapshot = meta

    def compact(self, index: Index) -> None:
        offset = self._offset()
        if index <= offset:
            return
        if index > self._snapshot.index:
            raise ValueError(
                f"cannot compact to {index}: beyond the snapshot index {self._snapshot.index}"
            )
        head = (index, self.term(index))
        self._entries = [head, *self._entries[index - offset + 1 :]]

    def sync(self) -> None:
        return None

    def close(self) -> None:
        return None

"""The storage contract of the Raft core.

The core reads its durable log only through :class:`Storage`; the runtime
writes to it through :class:`LogStorage` while handling a ``Ready``.
Two implementations fulfil it: :class:`crema.raft.memory_storage.MemoryStorage`
(tests, simulation, ``raft_storage="memory"``) and the segmented WAL in
:mod:`crema.storage` (the default for nodes).

Index conventions (as in etcd raft): the log holds entries
``first_index() .. last_index()`` inclusive. Entries up to a *compaction
index* ``c`` have been dropped, so ``first_index() == c + 1`` and ``term(c)``
is still answerable. The latest snapshot (``snapshot_meta()``) sits at an
index ``s >= c``: the runtime keeps a few trailing entries after a snapshot
so that slightly lagging followers need no snapshot transfer. An empty
storage has ``c == s == 0``. After :meth:`LogStorage.apply_snapshot`,
``c == s`` and the log is empty, ``last_index() == s``.
"""

from __future__ import annotations

from typing import Protocol

from crema.raft.types import ConfState, Entry, HardState, Index, SnapshotMeta, Term


class Storage(Protocol):
    """What the Raft core reads. Must not be mutated by the core."""

    def initial_state(self) -> tuple[HardState, ConfState]:
        """The persisted hard state and the latest persisted membership."""
        ...

    def entries(self, lo: Index, hi: Index, max_bytes: int | None = None) -> list[Entry]:
        """Entries ``[lo, hi)``; at least one entry if any, then up to ``max_bytes``.

        Raises:
            CompactedError: ``lo`` is at or below the compaction index.
            EntryUnavailableError: ``hi`` is beyond ``last_index() + 1``.
        """
        ...

    def term(self, index: Index) -> Term:
        """Term of the entry at ``index`` (the compaction index included).

        Raises:
            CompactedError: ``index`` is below the compaction index.
            EntryUnavailableError: ``index`` is beyond ``last_index()``.
        """
        ...

    def first_index(self) -> Index:
        """Index of the first entry still in the log (compaction index + 1)."""
        ...

    def last_index(self) -> Index:
        """Index of the last entry (the compaction index when the log is empty)."""
        ...

    def snapshot_meta(self) -> SnapshotMeta:
        """Metadata of the latest snapshot the log was compacted to or installed from."""
        ...


class LogStorage(Storage, Protocol):
    """What the runtime writes while acting on a ``Ready``.

    Mutations become durable at the latest when :meth:`sync` returns.
    """

    def append(self, entries: list[Entry]) -> None:
        """Append entries; an entry at an existing index replaces it and everything after.

        The first entry's index must be at most ``last_index() + 1`` and above
        the compaction index.
        """
        ...

    def set_hard_state(self, hard_state: HardState) -> None:
        """Replace the persisted hard state."""
        ...

    def set_conf_state(self, conf_state: ConfState) -> None:
        """Record the latest membership, returned by :meth:`initial_state` after a restart."""
        ...

    def apply_snapshot(self, meta: SnapshotMeta) -> None:
        """Install a snapshot received from the leader.

        The whole log is discarded; it restarts right after ``meta.index``,
        and ``meta`` becomes :meth:`snapshot_meta` (compaction index = ``meta.index``).
        """
        ...

    def create_snapshot(self, meta: SnapshotMeta) -> None:
        """Record that the application took a snapshot at ``meta`` (no entry is dropped).

        ``meta.index`` must be in the log (or equal the compaction index) and
        ``meta.term`` must equal ``term(meta.index)``; older snapshots are ignored.
        """
        ...

    def compact(self, index: Index) -> None:
        """Drop entries up to and including ``index``.

        ``index`` must be at most ``snapshot_meta().index``; compacting to an
        index at or below the current compaction index does nothing.
        """
        ...

    def sync(self) -> None:
        """Make every mutation so far durable (fsync); a no-op in memory."""
        ...

    def close(self) -> None:
        """Release files; the storage must not be used afterwards."""
        ...

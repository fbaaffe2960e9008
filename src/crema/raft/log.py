"""The Raft log as the core sees it: stable storage plus an unstable tail.

Entries ``first_index() .. unstable_offset - 1`` are in :class:`Storage`
(durable once the runtime persisted a Ready); entries from ``unstable_offset``
on are only in memory, handed to the runtime in ``Ready.entries`` and dropped
from here by :meth:`RaftLog.stable_to` when the runtime reports them persisted.
A snapshot received from the leader is likewise pending until persisted.
Entries persisted but not yet applied are also kept in memory (``cache``,
covering ``cache_offset .. unstable_offset - 1``) so that applying them and
replicating them to followers does not read storage back.

Invariants:

* ``applied <= committed <= last_index()``;
* ``unstable_offset == last stable index + 1`` (or snapshot index + 1);
* a committed entry is never truncated (a conflicting append below the
  commit index is a broken invariant and raises ``AssertionError``).
"""

from __future__ import annotations

from crema.errors import CompactedError, EntryUnavailableError
from crema.raft.storage import Storage
from crema.raft.types import Entry, Index, SnapshotMeta, Term


class RaftLog:
    """Stable storage plus unstable entries, with commit and apply tracking."""

    __slots__ = (
        "applied",
        "cache",
        "cache_offset",
        "committed",
        "pending_snapshot",
        "storage",
        "unstable",
        "unstable_offset",
    )

    def __init__(self, storage: Storage, applied: Index) -> None:
        self.storage = storage
        first = storage.first_index()
        self.unstable_offset = Index(storage.last_index() + 1)
        self.unstable: list[Entry] = []
        self.cache: list[Entry] = []
        self.cache_offset = self.unstable_offset
        self.pending_snapshot: SnapshotMeta | None = None
        self.committed = Index(first - 1)
        self.applied = Index(max(applied, first - 1))

    def __repr__(self) -> str:
        return (
            f"RaftLog(committed={self.committed}, applied={self.applied}, "
            f"unstable_offset={self.unstable_offset}, unstable={len(self.unstable)})"
        )

    # -- indexes and terms ----------------------------------------------------

    def first_index(self) -> Index:
        """First index whose entry is still available."""
        if self.pending_snapshot is not None:
            return Index(self.pending_snapshot.index + 1)
        return self.storage.first_index()

    def last_index(self) -> Index:
        """Index of the last entry (or of the snapshot when the log is empty)."""
        return Index(self.unstable_offset + len(self.unstable) - 1)

    def term(self, index: int) -> Term | None:
        """Term of the entry at ``index``; None when compacted or beyond the end."""
        offset = self.unstable_offset
        if index >= offset:
            pos = index - offset
            return self.unstable[pos].term if pos < len(self.unstable) else None
        if index >= self.cache_offset:
            return self.cache[index - self.cache_offset].term
        snap = self.pending_snapshot
        if snap is not None:
            return snap.term if index == snap.index else None
        try:
            return self.storage.term(Index(index))
        except (CompactedError, EntryUnavailableError):
            return None

    def last_term(self) -> Term:
        """Term of the last entry."""
        term = self.term(self.last_index())
        assert term is not None, "the last index always has a term"
        return term

    def match_term(self, index: int, term: int) -> bool:
        """Whether the entry at ``index`` has ``term``."""
        return self.term(index) == term

    def is_up_to_date(self, last_index: int, term: int) -> bool:
        """Whether a log ending at (``last_index``, ``term``) is at least as up-to-date (§5.4.1)."""
        mine = self.last_term()
        return term > mine or (term == mine and last_index >= self.last_index())

    def snapshot_meta(self) -> SnapshotMeta:
        """The pending snapshot, else the latest one in storage."""
        if self.pending_snapshot is not None:
            return self.pending_snapshot
        return self.storage.snapshot_meta()

    # -- reading entries --------------------------------------------------------

    def slice(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries ``[lo, hi)``: at least one if the range is non-empty, then up to ``max_bytes``.

        Raises:
            CompactedError: ``lo`` is below :meth:`first_index`.
        """
        if lo >= hi:
            return []
        if lo < self.first_index():
            raise CompactedError(f"index {lo} is compacted (first index {self.first_index()})")
        assert hi <= self.last_index() + 1, f"slice [{lo}, {hi}) beyond last {self.last_index()}"
        offset = self.unstable_offset
        result: list[Entry] = []
        if lo < offset:
            cache_offset = self.cache_offset
            if lo >= cache_offset:
                result = self.cache[lo - cache_offset : min(hi, offset) - cache_offset]
            else:
                result = self.storage.entries(Index(lo), Index(min(hi, offset)), max_bytes)
                if len(result) < min(hi, offset) - lo:
                    return result
        if hi > offset:
            tail = self.unstable[max(lo, offset) - offset : hi - offset]
            result = tail if not result else result + tail
        if max_bytes is not None and len(result) > 1:
            result = _limit_size(result, max_bytes)
        return result

    def entries_from(self, lo: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries from ``lo`` to the end, limited like :meth:`slice`."""
        return self.slice(lo, self.last_index() + 1, max_bytes)

    def next_committed_entries(self, max_bytes: int | None = None) -> list[Entry]:
        """Committed entries not yet handed to the application."""
        if self.pending_snapshot is not None:
            return []
        lo = max(self.applied + 1, self.first_index())
        if lo > self.committed:
            return []
        return self.slice(lo, self.committed + 1, max_bytes)

    def has_next_committed_entries(self) -> bool:
        """Whether :meth:`next_committed_entries` would return something."""
        return self.pending_snapshot is None and self.committed > self.applied

    # -- changing the log -------------------------------------------------------

    def append(self, entries: list[Entry]) -> Index:
        """Append entries, replacing any existing ones at and after the first's index."""
        if not entries:
            return self.last_index()
        after = entries[0].index
        assert after > self.committed, f"append at {after} would truncate committed entries"
        offset = self.unstable_offset
        if after == offset + len(self.unstable):
            self.unstable.extend(entries)
        elif after <= offset:
            self._truncate_cache(after)
            self.unstable_offset = after
            self.unstable = list(entries)
        else:
            self.unstable = self.unstable[: after - offset] + entries
        return self.last_index()

    def _truncate_cache(self, index: int) -> None:
        """Forget cached entries at and after ``index`` (they are being replaced)."""
        if index <= self.cache_offset:
            self.cache = []
            self.cache_offset = Index(index)
        else:
            del self.cache[index - self.cache_offset :]

    def find_conflict(self, entries: list[Entry] | tuple[Entry, ...]) -> int:
        """Index of the first entry whose term differs from the log (0 when none).

        An entry beyond the last index counts as a conflict (it is new).
        """
        last = self.last_index()
        for entry in entries:
            if entry.index > last or self.term(entry.index) != entry.term:
                return entry.index
        return 0

    def maybe_append(
        self, index: int, log_term: int, committed: int, entries: tuple[Entry, ...]
    ) -> Index | None:
        """Handle an append from the leader (§5.3).

        Returns:
            the index of the last new entry, or None when the log does not
            contain an entry at ``index`` with ``log_term``.
        """
        if not self.match_term(index, log_term):
            return None
        last_new = Index(index + len(entries))
        conflict = self.find_conflict(entries)
        if conflict:
            assert conflict > self.committed, (
                f"entry {conflict} conflicts with committed entry (committed {self.committed})"
            )
            self.append(list(entries[conflict - index - 1 :]))
        self.commit_to(min(committed, last_new))
        return last_new

    def find_conflict_by_term(self, index: int, term: int) -> tuple[Index, Term]:
        """The largest index at or below ``index`` whose term is at most ``term``.

        Used for fast backtracking of rejected appends; stops at the first
        unknown term (compacted), returning term 0 there.
        """
        while index > 0:
            found = self.term(index)
            if found is None:
                return Index(index), Term(0)
            if found <= term:
                return Index(index), found
            index -= 1
        return Index(0), Term(0)

    def commit_to(self, index: int) -> None:
        """Raise the commit index (never lowers it)."""
        if index > self.committed:
            assert index <= self.last_index(), f"commit {index} beyond last {self.last_index()}"
            self.committed = Index(index)

    def maybe_commit(self, index: int, term: int) -> bool:
        """Commit up to ``index`` if its entry is from ``term`` (§5.4.2)."""
        if index > self.committed and self.term(index) == term:
            self.commit_to(index)
            return True
        return False

    def applied_to(self, index: int) -> None:
        """The application has applied entries up to ``index``."""
        assert index <= self.committed, f"applied {index} beyond committed {self.committed}"
        if index > self.applied:
            self.applied = Index(index)
            drop = min(index + 1, self.unstable_offset) - self.cache_offset
            if drop > 0:
                del self.cache[:drop]
                self.cache_offset = Index(self.cache_offset + drop)

    def stable_to(self, index: int, term: int) -> None:
        """Entries up to ``index`` (with ``term``) were persisted; drop them from memory."""
        if index < self.unstable_offset or self.term(index) != term:
            return
        count = index + 1 - self.unstable_offset
        if self.cache_offset + len(self.cache) != self.unstable_offset:
            self.cache, self.cache_offset = [], self.unstable_offset
        self.cache.extend(self.unstable[:count])
        del self.unstable[:count]
        self.unstable_offset = Index(index + 1)

    def stable_snapshot_to(self, index: int) -> None:
        """The pending snapshot at ``index`` was installed in storage."""
        if self.pending_snapshot is not None and self.pending_snapshot.index == index:
            self.pending_snapshot = None

    def restore(self, meta: SnapshotMeta) -> None:
        """Replace the whole log by the snapshot ``meta`` (pending until persisted)."""
        self.committed = meta.index
        self.unstable = []
        self.unstable_offset = Index(meta.index + 1)
        self.cache, self.cache_offset = [], self.unstable_offset
        self.pending_snapshot = meta


def _limit_size(entries: list[Entry], max_bytes: int) -> list[Entry]:
    if sum([len(e.data) for e in entries]) + 24 * len(entries) <= max_bytes:
        return entries
    total = 0
    for i, entry in enumerate(entries):
        total += len(entry.data) + 24
        if i > 0 and total > max_bytes:
            return entries[:i]
    return entries

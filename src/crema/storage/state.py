"""The in-memory picture of a WAL, built by replaying its records (pure, no I/O).

:class:`LogIndex` holds the term of every live entry and where the record
holding it sits on disk, in flat ``array`` columns (about 40 bytes per entry
for single-entry batches, much less for larger ones). :class:`WalState`
adds the non-entry state and applies records to both: recovery replays the
segments through :meth:`WalState.apply`, and :class:`~crema.storage.wal.DiskStorage`
applies every record it writes through the same method, so the live state and
the recovered state cannot drift apart.

Invariants of :class:`LogIndex`: ``terms`` covers indexes ``lo .. hi``
(``hi == lo + len(terms) - 1``); normally ``lo == compact_index + 1``. While
replaying a directory whose oldest segments were deleted by compaction,
``lo`` may run ahead of ``compact_index + 1`` until a later COMPACT record
catches up; if it never does, entries are missing and the WAL is corrupt.
The record columns list, in index order, each record that still holds a live
entry; record ``r`` holds ``rec_first[r] .. rec_first[r + 1] - 1``.
"""

from __future__ import annotations

import struct
import sys
from array import array
from bisect import bisect_right

from crema.raft.types import ConfState, HardState, Index, SnapshotMeta, Term
from crema.storage import record
from crema.storage.record import PayloadError, RecordKind, SegmentState

_ENTRIES = int(RecordKind.ENTRIES)
_ENTRIES_HEAD = struct.Struct("<QI")
_LITTLE = sys.byteorder == "little"


class LogIndex:
    """Terms and record locations of the live entries."""

    def __init__(self) -> None:
        self.compact_index = 0
        self.compact_term = 0
        self.lo = 1
        self.terms = array("Q")
        self.rec_first = array("Q")
        self.rec_seg = array("Q")
        self.rec_off = array("Q")
        self.rec_len = array("Q")

    @property
    def hi(self) -> int:
        """Index of the last entry (``lo - 1`` when there is none)."""
        return self.lo + len(self.terms) - 1

    def _clear_records(self) -> None:
        for column in (self.rec_first, self.rec_seg, self.rec_off, self.rec_len):
            del column[:]

    def reset_range(self, last: int) -> None:
        """Forget every entry; the log is known only to end at ``last``."""
        del self.terms[:]
        self._clear_records()
        self.lo = last + 1

    def add(self, first: int, terms: array[int], seg: int, off: int, length: int) -> None:
        """Add a record of entries ``first ..``, superseding any entry at or after ``first``.

        Raises:
            PayloadError: ``first`` is compacted or leaves a gap.
        """
        if first <= self.compact_index:
            raise PayloadError(f"entries at {first} are at or below the compaction index")
        if first > self.hi + 1:
            raise PayloadError(f"entries at {first} leave a gap after {self.hi}")
        if first < self.lo:
            self.reset_range(first - 1)
        else:
            del self.terms[first - self.lo :]
            cut = bisect_right(self.rec_first, first - 1)
            for column in (self.rec_first, self.rec_seg, self.rec_off, self.rec_len):
                del column[cut:]
        self.terms.extend(terms)
        self.rec_first.append(first)
        self.rec_seg.append(seg)
        self.rec_off.append(off)
        self.rec_len.append(length)

    def compact(self, index: int, term: int) -> None:
        """Drop entries up to ``index``, remembering its term; lower indexes do nothing."""
        if index <= self.compact_index:
            return
        self.compact_index = index
        self.compact_term = term
        if index >= self.hi:
            self.reset_range(index)
            return
        if index >= self.lo:
            del self.terms[: index + 1 - self.lo]
            self.lo = index + 1
            keep = bisect_right(self.rec_first, self.lo) - 1
            for column in (self.rec_first, self.rec_seg, self.rec_off, self.rec_len):
                del column[:keep]

    def restore(self, index: int, term: int) -> None:
        """Discard the whole log; it restarts after ``index`` (a snapshot install)."""
        self.compact_index = index
        self.compact_term = term
        self.reset_range(index)

    def term(self, index: int) -> int:
        """Term of ``index``, which must be the compaction index or in ``lo .. hi``."""
        if index == self.compact_index:
            return self.compact_term
        return self.terms[index - self.lo]

    def locate(self, index: int) -> tuple[int, int, int, int]:
        """Segment, offset, length and end index (exclusive) of the record holding ``index``."""
        r = bisect_right(self.rec_first, index) - 1
        end = self.rec_first[r + 1] if r + 1 < len(self.rec_first) else self.hi + 1
        return self.rec_seg[r], self.rec_off[r], self.rec_len[r], end

    def oldest_live_segment(self) -> int | None:
        """Sequence number of the oldest segment holding a live entry (None if none does)."""
        return self.rec_seg[0] if self.terms else None

    def missing(self) -> tuple[int, int] | None:
        """The range of entries neither compacted nor present, if any (corruption)."""
        if self.lo - 1 > self.compact_index:
            return self.compact_index + 1, self.lo - 1
        return None


class WalState:
    """Everything a WAL directory says, as of the records applied so far."""

    def __init__(self) -> None:
        self.hard_state = HardState()
        self.conf_state = ConfState()
        self.snapshot = SnapshotMeta()
        self.index = LogIndex()

    def segment_state(self, seq: int) -> SegmentState:
        """The STATE record that opens a new segment ``seq`` now."""
        return SegmentState(
            seq=seq,
            hard_state=self.hard_state,
            conf_state=self.conf_state,
            snapshot=self.snapshot,
            compact_index=Index(self.index.compact_index),
            compact_term=Term(self.index.compact_term),
            last_index=Index(self.index.hi),
        )

    def apply(
        self, kind: int, payload: bytes | memoryview, seg: int, off: int, length: int
    ) -> None:
        """Apply one record found (or written) at ``seg``/``off``.

        Raises:
            PayloadError: the record does not decode or contradicts the log so far;
                nothing was changed.
        """
        if kind == _ENTRIES:
            idx = self.index
            terms = idx.terms
            first, count = _ENTRIES_HEAD.unpack_from(payload, 0) if len(payload) >= 12 else (0, 0)
            if (  # fast path of recovery and of every append: plain extension of the log
                _LITTLE
                and first == idx.lo + len(terms)
                and first > idx.compact_index
                and count > 0
                and 12 + 13 * count <= len(payload)
            ):
                terms.frombytes(payload[12 : 12 + 8 * count])
                idx.rec_first.append(first)
                idx.rec_seg.append(seg)
                idx.rec_off.append(off)
                idx.rec_len.append(length)
                return
            first, count = record.entries_span(payload)
            idx.add(first, record.entry_terms(payload, count), seg, off, length)
        elif kind == RecordKind.HARD_STATE:
            self.hard_state = record.decode_hard_state(payload)
        elif kind == RecordKind.CONF_STATE:
            self.conf_state = record.decode_conf_state(payload)
        elif kind == RecordKind.SNAPSHOT:
            meta = record.decode_snapshot(payload)
            if meta.index > self.snapshot.index:
                self.snapshot = meta
        elif kind == RecordKind.RESTORE:
            meta = record.decode_snapshot(payload)
            self.snapshot = meta
            self.conf_state = meta.conf_state
            self.index.restore(meta.index, meta.term)
        elif kind == RecordKind.COMPACT:
            index, term = record.decode_compact(payload)
            if index > self.snapshot.index:
                raise PayloadError(f"compaction to {index} beyond snapshot {self.snapshot.index}")
            self.index.compact(index, term)
        elif kind == RecordKind.STATE:
            self._apply_state(record.decode_state(payload), seg)
        else:
            raise PayloadError(f"unknown record kind {kind}")

    def _apply_state(self, state: SegmentState, seg: int) -> None:
        if state.seq != seg:
            raise PayloadError(f"STATE record of segment {state.seq} found in segment {seg}")
        self.hard_state = state.hard_state
        self.conf_state = state.conf_state
        self.snapshot = state.snapshot
        self.index.compact(state.compact_index, state.compact_term)
        if state.last_index != self.index.hi:
            self.index.reset_range(state.last_index)

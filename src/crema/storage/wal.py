"""DiskStorage: the Raft log in a segmented write-ahead log (layer L1).

Every mutation of the storage contract becomes one record appended to the
active segment (see :mod:`crema.storage.record`); nothing already written is
ever rewritten in place. A suffix truncation is an ENTRIES record starting
at an existing index; a compaction is a COMPACT record, after which whole
segments holding only compacted entries are removed (oldest first); the
hard state is a single checksummed HARD_STATE record, so it is replaced
atomically.

Group commit: mutations are staged in a buffer and numbered (``staged_seq``);
:meth:`DiskStorage.commit` (or the contract's ``sync``) writes the buffer
with one ``write`` and, as the fsync policy says, one ``fsync``; it returns
``durable_seq``, which tells the caller which mutations are durable.
Listeners registered with :meth:`DiskStorage.on_durable` hear about every
advance.

Fsync policies: ``always`` (every commit fsyncs), ``batch`` (a commit
fsyncs when ``batch_interval`` has passed since the last fsync; call
:meth:`DiskStorage.sync_if_due` from a timer to bound the delay), ``never``
(the OS decides; ``durable_seq`` then only means "handed to the OS").
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from crema.errors import CompactedError, ConfigError, EntryUnavailableError, StorageError
from crema.histogram import Histogram
from crema.raft.types import ConfState, Entry, HardState, Index, SnapshotMeta, Term
from crema.storage import record
from crema.storage.reader import RecentEntries, RecordReader
from crema.storage.record import RecordKind
from crema.storage.recovery import RepairReport, recover
from crema.storage.segment import fsync_dir, lock_directory
from crema.storage.writer import FsyncPolicy, SegmentWriter, SyncTicket

DEFAULT_SEGMENT_SIZE = 64 * 1024 * 1024
_CHUNK_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class WalStats:
    """Counters of one open :class:`DiskStorage`."""

    segments: int
    first_index: int
    last_index: int
    records_written: int
    bytes_written: int
    fsyncs: int
    staged_seq: int
    durable_seq: int
    cached_entries: int
    disk_reads: int


class DiskStorage:
    """A :class:`~crema.raft.storage.LogStorage` kept in a directory of WAL segments.

    Open one with :meth:`open`. Not thread-safe: one owner (the node's
    runtime) calls it, as with every ``LogStorage``.

    Attributes:
        directory: the WAL directory.
        policy: the fsync policy.
        repair_report: what ``open(repair=True)`` dropped, or None.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        fsync: FsyncPolicy | str = FsyncPolicy.ALWAYS,
        batch_interval: float = 0.005,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        cache_entries: int = 65536,
        repair: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Open (creating if needed) the WAL in ``directory``; see :meth:`open`."""
        self.directory = Path(directory)
        try:
            self.policy = FsyncPolicy(fsync)
        except ValueError as exc:
            raise ConfigError("fsync", f"expected always, batch or never, got {fsync!r}") from exc
        if segment_size < 4096:
            raise ConfigError("segment_size", f"must be >= 4096, got {segment_size}")
        if cache_entries < 1:
            raise ConfigError("cache_entries", f"must be >= 1, got {cache_entries}")
        if not batch_interval > 0:
            raise ConfigError("batch_interval", f"must be positive, got {batch_interval}")
        self._durable = self.policy is not FsyncPolicy.NEVER
        self._segment_size = segment_size
        self._cache_entries = cache_entries
        self._writer = SegmentWriter(self.directory, self.policy, batch_interval, clock)
        self._closed = False
        self.defer_removals = False
        self._removals: list[Path] = []
        self._reader = RecordReader()
        self._lock_fd = lock_directory(self.directory, durable=self._durable)
        try:
            self.repair_report = self._recover(repair)
        except BaseException:
            self._writer.close()
            self._reader.close()
            os.close(self._lock_fd)
            raise

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        *,
        fsync: FsyncPolicy | str = FsyncPolicy.ALWAYS,
        batch_interval: float = 0.005,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        cache_entries: int = 65536,
        repair: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> DiskStorage:
        """Open the WAL in ``directory`` (an empty or missing one gives an empty log).

        Args:
            directory: the WAL directory; created if missing.
            fsync: ``"always"``, ``"batch"`` or ``"never"`` (see the module docstring).
            batch_interval: the time bound of the ``batch`` policy, in seconds.
            segment_size: roll to a new segment once the active one reaches this size.
            cache_entries: how many of the latest entries to keep in memory.
            repair: on corruption, keep the valid prefix instead of refusing to open.
            clock: monotonic seconds, for the ``batch`` policy.

        Raises:
            CorruptLogError: a checksum failed before the tail (and ``repair`` is false),
                or entries are missing.
            StorageError: another process has the directory open.
            ConfigError: an option is out of range.
        """
        return cls(
            directory,
            fsync=fsync,
            batch_interval=batch_interval,
            segment_size=segment_size,
            cache_entries=cache_entries,
            repair=repair,
            clock=clock,
        )

    # -- opening -------------------------------------------------------------

    def _recover(self, allow_repair: bool) -> RepairReport | None:
        result, report = recover(self.directory, allow_repair=allow_repair, durable=self._durable)
        self._state = state = result.state
        segments = result.segments
        if segments and segments[-1].valid_end <= record.FILE_HEADER_SIZE:
            os.unlink(segments.pop().path)  # lost even its STATE record: start it afresh
        for seg in segments:
            self._reader.add_segment(seg.seq, seg.path)
        self._paths = {seg.seq: seg.path for seg in segments}
        if segments:
            self._writer.open_active(segments[-1].seq, segments[-1].path, segments[-1].valid_end)
        else:
            self._roll()
        self._recent = RecentEntries(state.index.hi + 1, self._cache_entries)
        self._drop_dead_segments()
        return report

    # -- reads ---------------------------------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self._state.hard_state, self._state.conf_state

    def first_index(self) -> Index:
        return Index(self._state.index.compact_index + 1)

    def last_index(self) -> Index:
        return Index(self._state.index.hi)

    def snapshot_meta(self) -> SnapshotMeta:
        return self._state.snapshot

    def term(self, index: Index) -> Term:
        idx = self._state.index
        if index < idx.compact_index:
            raise CompactedError(
                f"index {index} is compacted (first index {idx.compact_index + 1})"
            )
        if index > idx.hi:
            raise EntryUnavailableError(f"index {index} is beyond last index {idx.hi}")
        return Term(idx.term(index))

    def entries(self, lo: Index, hi: Index, max_bytes: int | None = None) -> list[Entry]:
        idx = self._state.index
        if lo <= idx.compact_index:
            raise CompactedError(f"index {lo} is compacted (first index {idx.compact_index + 1})")
        if hi > idx.hi + 1:
            raise EntryUnavailableError(f"index {hi - 1} is beyond last index {idx.hi}")
        selected: list[Entry] = []
        total = 0
        at = lo
        while at < hi:
            if at >= self._recent.lo:
                batch = self._recent.slice(at, hi)
            else:
                batch = self._read_from_disk(at, min(hi, self._recent.lo))
            for entry in batch:
                total += entry.size()
                if selected and max_bytes is not None and total > max_bytes:
                    return selected
                selected.append(entry)
            at = Index(at + len(batch))
        return selected

    def _read_from_disk(self, at: int, hi: int) -> list[Entry]:
        seq, offset, length, end = self._state.index.locate(at)
        if seq == self._writer.seq and offset + length > self._writer.written:
            self._writer.flush()
        entries = self._reader.read(seq, offset, length)
        first = entries[0].index
        return entries[at - first : min(hi, end) - first]

    # -- writes --------------------------------------------------------------

    def append(self, entries: list[Entry]) -> None:
        if not entries:
            return
        idx = self._state.index
        first = entries[0].index
        if first <= idx.compact_index:
            raise CompactedError(f"cannot append at compacted index {first}")
        if first > idx.hi + 1:
            raise EntryUnavailableError(f"append at {first} leaves a gap after last index {idx.hi}")
        if [e.index for e in entries] != list(range(first, first + len(entries))):
            raise ValueError("appended entries must have consecutive indexes")
        self._write_entries(entries)
        self._recent.remember(entries)

    def _write_entries(self, entries: list[Entry]) -> None:
        payload = record.encode_entries(entries)
        if len(payload) > _CHUNK_BYTES and len(entries) > 1:  # keep records to a few MiB
            half = len(entries) // 2
            self._write_entries(entries[:half])
            self._write_entries(entries[half:])
        else:
            self._write(RecordKind.ENTRIES, payload)

    def set_hard_state(self, hard_state: HardState) -> None:
        if hard_state != self._state.hard_state:
            self._write(RecordKind.HARD_STATE, record.encode_hard_state(hard_state))

    def set_conf_state(self, conf_state: ConfState) -> None:
        self._write(RecordKind.CONF_STATE, record.encode_conf_state(conf_state))

    def apply_snapshot(self, meta: SnapshotMeta) -> None:
        self._write(RecordKind.RESTORE, record.encode_snapshot(meta))
        self._recent.reset(meta.index + 1)
        self._reclaim()

    def create_snapshot(self, meta: SnapshotMeta) -> None:
        if meta.index <= self._state.snapshot.index:
            return
        term = self.term(meta.index)
        if meta.term != term:
            raise ValueError(
                f"snapshot term {meta.term} differs from log term {term} at index {meta.index}"
            )
        self._write(RecordKind.SNAPSHOT, record.encode_snapshot(meta))

    def compact(self, index: Index) -> None:
        if index <= self._state.index.compact_index:
            return
        if index > self._state.snapshot.index:
            raise ValueError(
                f"cannot compact to {index}: beyond the snapshot index {self._state.snapshot.index}"
            )
        term = self.term(index)
        self._write(RecordKind.COMPACT, record.encode_compact(index, term))
        self._recent.compact(index)
        self._reclaim()

    def compact_to_snapshot(self, trailing: int = 0) -> Index:
        """Compact up to the latest snapshot, keeping ``trailing`` entries before it.

        Slightly lagging followers can then still be sent those entries
        instead of a snapshot. Returns the new compaction index.
        """
        if trailing < 0:
            raise ValueError(f"trailing must be >= 0, got {trailing}")
        target = Index(max(self._state.snapshot.index - trailing, 0))
        self.compact(target)
        return Index(self._state.index.compact_index)

    def _write(self, kind: RecordKind, payload: bytes) -> None:
        """The one path of every mutation: apply to the state, then stage the record."""
        if self._closed:
            raise StorageError("storage is closed")
        writer = self._writer
        if writer.size >= self._segment_size:
            self._roll()
        data = record.frame(kind, payload)
        self._state.apply(kind, payload, writer.seq, writer.size, len(data))
        writer.stage(data)

    # -- durability ----------------------------------------------------------

    @property
    def staged_seq(self) -> int:
        """Number of records staged so far (each mutation stages one, a huge append a few)."""
        return self._writer.staged_seq

    @property
    def durable_seq(self) -> int:
        """Every record numbered up to this is durable (as far as the fsync policy goes)."""
        return self._writer.durable_seq

    def on_durable(self, listener: Callable[[int], None]) -> None:
        """Call ``listener(durable_seq)`` whenever ``durable_seq`` advances."""
        self._writer.on_durable(listener)

    def sync(self) -> None:
        """The contract's sync: :meth:`commit`, ignoring its result."""
        self._writer.commit()

    def flush(self) -> None:
        """Hand staged mutations to the OS without fsync (durable_seq does not move).

        They then survive a crash of the process, not of the machine.
        """
        self._writer.flush()

    def commit(self) -> int:
        """Write staged mutations as one batch; fsync as the policy says.

        Under ``always`` every call that has something staged fsyncs once
        (group commit: all mutations since the previous call share it); under
        ``batch`` only when ``batch_interval`` has passed since the last fsync.

        Returns:
            ``durable_seq``: every record numbered up to it is durable.
        """
        return self._writer.commit()

    def sync_due(self) -> bool:
        """Whether the ``batch`` policy's time bound calls for an fsync now."""
        return self._writer.sync_due()

    def begin_sync(self) -> SyncTicket | None:
        """:meth:`commit` with its fsync handed out as a ticket (see ``writer.py``)."""
        return self._writer.begin_sync()

    def end_sync(self, ticket: SyncTicket) -> int:
        """The ticket's fsync succeeded: advance ``durable_seq``; return it."""
        return self._writer.end_sync(ticket)

    def sync_if_due(self) -> int:
        """Fsync if the ``batch`` time bound has passed (call it from a timer)."""
        return self._writer.force_commit() if self._writer.sync_due() else self.durable_seq

    # -- segments ------------------------------------------------------------

    def _roll(self) -> None:
        """Close the active segment (durably) and open the next one."""
        seq = self._writer.seq + 1
        path = self._writer.roll(self._state.segment_state(seq))
        self._reader.add_segment(seq, path)
        self._paths[seq] = path

    def _reclaim(self) -> None:
        """Make the latest COMPACT/RESTORE durable, then remove segments it made dead."""
        self._writer.force_commit()
        self._drop_dead_segments()

    def _drop_dead_segments(self) -> None:
        oldest = self._state.index.oldest_live_segment()
        active = self._writer.seq
        keep_from = active if oldest is None else min(oldest, active)
        dead = [seq for seq in self._paths if seq < keep_from]
        if not dead:
            return
        for seq in dead:  # oldest first: a crash leaves a contiguous suffix
            self._reader.drop_segment(seq)
            path = self._paths.pop(seq)
            if self.defer_removals:
                self._removals.append(path)
            else:
                path.unlink()
        if self._durable and not self.defer_removals:
            fsync_dir(self.directory)

    def take_removals(self) -> list[Path]:
        """Dead segment files left for the caller to delete, oldest first.

        Only with ``defer_removals`` set: compaction then leaves the (slow)
        unlinking to the caller, e.g. :func:`remove_segments` in a worker
        thread. Dead segments are never read again, and any left behind by a
        crash are removed on the next open.
        """
        removals, self._removals = self._removals, []
        return removals

    # -- lifecycle -----------------------------------------------------------

    @property
    def fsync_latency(self) -> Histogram:
        """Seconds each fsync of the active segment took (a live histogram, not a copy)."""
        return self._writer.fsync_latency

    def stats(self) -> WalStats:
        """Counters for metrics and the benchmark."""
        return WalStats(
            segments=len(self._paths),
            first_index=self.first_index(),
            last_index=self.last_index(),
            records_written=self._writer.records,
            bytes_written=self._writer.bytes_written,
            fsyncs=self._writer.fsyncs,
            staged_seq=self._writer.staged_seq,
            durable_seq=self._writer.durable_seq,
            cached_entries=len(self._recent),
            disk_reads=self._reader.reads,
        )

    def close(self) -> None:
        """Write and (unless ``never``) fsync what is staged, then release the files."""
        if self._closed:
            return
        try:
            self._writer.force_commit()
        finally:
            self._closed = True
            self._writer.close()
            self._reader.close()
            os.close(self._lock_fd)

    def abandon(self) -> None:
        """Release the files without writing what is staged (after a write or fsync failed).

        Nothing staged was acknowledged (every acknowledgement follows an
        fsync), so dropping it is safe; recovery cuts a torn record the failed
        write may have left. Errors while closing are ignored.
        """
        if self._closed:
            return
        self._closed = True
        for close in (self._writer.close, self._reader.close):
            with contextlib.suppress(OSError):
                close()
        os.close(self._lock_fd)

    def __enter__(self) -> DiskStorage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["DiskStorage", "FsyncPolicy", "WalStats"]


def remove_segments(paths: list[Path], directory: Path, durable: bool = True) -> None:
    """Delete dead segment files (from :meth:`DiskStorage.take_removals`), oldest first."""
    for path in paths:
        path.unlink(missing_ok=True)
    if paths and durable:
        fsync_dir(directory)

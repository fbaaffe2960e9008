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

import enum
import fcntl
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from crema.errors import CompactedError, EntryUnavailableError, StorageError
from crema.raft.types import ConfState, Entry, HardState, Index, SnapshotMeta, Term
from crema.storage import record
from crema.storage.reader import RecordReader
from crema.storage.record import RecordKind
from crema.storage.recovery import RepairReport, repair, scan_wal, truncate_torn
from crema.storage.segment import (
    TMP_SUFFIX,
    create_segment,
    fsync_dir,
)

DEFAULT_SEGMENT_SIZE = 64 * 1024 * 1024
_FLUSH_BYTES = 1024 * 1024
_CHUNK_BYTES = 4 * 1024 * 1024


class FsyncPolicy(enum.Enum):
    """When :meth:`DiskStorage.sync` calls ``fsync``."""

    ALWAYS = "always"
    BATCH = "batch"
    NEVER = "never"


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
        self.policy = FsyncPolicy(fsync)
        if segment_size < 4096 or cache_entries < 1 or batch_interval <= 0:
            raise ValueError("segment_size >= 4096, cache_entries >= 1, batch_interval > 0")
        self._durable = self.policy is not FsyncPolicy.NEVER
        self._batch_interval = batch_interval
        self._segment_size = segment_size
        self._cache_entries = cache_entries
        self._clock = clock
        self._listeners: list[Callable[[int], None]] = []
        self._staged_seq = self._durable_seq = 0
        self._records = self._bytes = self._fsyncs = 0
        self._last_fsync = clock()
        self._closed = False
        self._reader = RecordReader()
        self._lock_fd = self._lock()
        try:
            self.repair_report = self._recover(repair)
        except BaseException:
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

    def _lock(self) -> int:
        existed = self.directory.is_dir()
        self.directory.mkdir(parents=True, exist_ok=True)
        if not existed and self._durable:
            fsync_dir(self.directory.parent)
        fd = os.open(self.directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise StorageError(f"{self.directory} is in use by another process") from exc
        return fd

    def _recover(self, allow_repair: bool) -> RepairReport | None:
        for name in os.listdir(self.directory):
            if name.endswith(TMP_SUFFIX):
                os.unlink(self.directory / name)
        result = scan_wal(self.directory)
        report = None
        damage = result.damage
        if damage is not None:
            if damage.torn:
                truncate_torn(damage, durable=self._durable)
            elif allow_repair:
                report = repair(result, durable=self._durable)
                result = scan_wal(self.directory)
                if result.damage is not None:
                    raise result.damage.error()
            else:
                raise damage.error()
        self._state = state = result.state
        segments = result.segments
        if segments and segments[-1].valid_end <= record.FILE_HEADER_SIZE:
            os.unlink(segments.pop().path)  # lost even its STATE record: start it afresh
        for seg in segments:
            self._reader.add_segment(seg.seq, seg.path)
        self._paths = {seg.seq: seg.path for seg in segments}
        if segments:
            self._seq = segments[-1].seq
            self._open_active(segments[-1].path, segments[-1].valid_end)
        else:
            self._seq = 0
            self._fd = -1
            self._roll()
        self._recent: list[Entry] = []
        self._recent_lo = state.index.hi + 1
        self._drop_dead_segments()
        return report

    def _open_active(self, path: Path, size: int) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        self._written = self._size = size
        self._buf = bytearray()

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
            if at >= self._recent_lo:
                batch = self._recent[at - self._recent_lo : hi - self._recent_lo]
            else:
                batch = self._read_from_disk(at, min(hi, self._recent_lo))
            for entry in batch:
                total += entry.size()
                if selected and max_bytes is not None and total > max_bytes:
                    return selected
                selected.append(entry)
            at = Index(at + len(batch))
        return selected

    def _read_from_disk(self, at: int, hi: int) -> list[Entry]:
        seq, offset, length, end = self._state.index.locate(at)
        if seq == self._seq and offset + length > self._written:
            self._flush()
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
        self._remember(entries)

    def _write_entries(self, entries: list[Entry]) -> None:
        payload = record.encode_entries(entries)
        if len(payload) > _CHUNK_BYTES and len(entries) > 1:  # keep records to a few MiB
            half = len(entries) // 2
            self._write_entries(entries[:half])
            self._write_entries(entries[half:])
        else:
            self._write(RecordKind.ENTRIES, payload)

    def _remember(self, entries: list[Entry]) -> None:
        first = entries[0].index
        if first >= self._recent_lo:
            del self._recent[first - self._recent_lo :]
            self._recent.extend(entries)
        else:
            self._recent = list(entries)
            self._recent_lo = first
        excess = len(self._recent) - self._cache_entries
        if excess > 0:
            excess += self._cache_entries // 4  # evict in chunks: amortised O(1)
            del self._recent[:excess]
            self._recent_lo += excess

    def set_hard_state(self, hard_state: HardState) -> None:
        if hard_state != self._state.hard_state:
            self._write(RecordKind.HARD_STATE, record.encode_hard_state(hard_state))

    def set_conf_state(self, conf_state: ConfState) -> None:
        self._write(RecordKind.CONF_STATE, record.encode_conf_state(conf_state))

    def apply_snapshot(self, meta: SnapshotMeta) -> None:
        self._write(RecordKind.RESTORE, record.encode_snapshot(meta))
        self._recent = []
        self._recent_lo = meta.index + 1
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
        if self._recent_lo <= index:
            del self._recent[: index + 1 - self._recent_lo]
            self._recent_lo = index + 1
        self._reclaim()

    def _write(self, kind: RecordKind, payload: bytes) -> None:
        """The one path of every mutation: apply to the state, then stage the record."""
        if self._closed:
            raise StorageError("storage is closed")
        if self._size >= self._segment_size:
            self._roll()
        data = record.frame(kind, payload)
        self._state.apply(kind, payload, self._seq, self._size, len(data))
        self._buf += data
        self._size += len(data)
        self._staged_seq += 1
        self._records += 1
        if len(self._buf) >= _FLUSH_BYTES:
            self._flush()

    # -- durability ----------------------------------------------------------

    @property
    def staged_seq(self) -> int:
        """Number of mutations staged so far (each write method stages at most a few)."""
        return self._staged_seq

    @property
    def durable_seq(self) -> int:
        """Every mutation numbered up to this is durable (under the fsync policy)."""
        return self._durable_seq

    def on_durable(self, listener: Callable[[int], None]) -> None:
        """Call ``listener(durable_seq)`` whenever ``durable_seq`` advances."""
        self._listeners.append(listener)

    def sync(self) -> None:
        """The contract's sync: :meth:`commit`, ignoring its result."""
        self.commit()

    def commit(self) -> int:
        """Write staged mutations as one batch; fsync as the policy says.

        Under ``always`` every call that has something staged fsyncs once
        (group commit: all mutations since the previous call share it); under
        ``batch`` only when ``batch_interval`` has passed since the last fsync.

        Returns:
            ``durable_seq``: every mutation numbered up to it is durable.
        """
        self._flush()
        if self.policy is FsyncPolicy.BATCH and not self.sync_due():
            return self._durable_seq
        return self._commit()

    def sync_due(self) -> bool:
        """Whether the ``batch`` policy's time bound calls for an fsync now."""
        waiting = self._durable_seq < self._staged_seq
        return waiting and self._clock() - self._last_fsync >= self._batch_interval

    def sync_if_due(self) -> int:
        """Fsync if the ``batch`` time bound has passed (call it from a timer)."""
        if self.sync_due():
            self._flush()
            return self._commit()
        return self._durable_seq

    def _flush(self) -> None:
        if self._buf:
            os.write(self._fd, self._buf)
            self._bytes += len(self._buf)
            self._written = self._size
            self._buf = bytearray()

    def _commit(self) -> int:
        if self._durable_seq == self._staged_seq:
            return self._durable_seq
        if self._durable:
            os.fsync(self._fd)
            self._fsyncs += 1
            self._last_fsync = self._clock()
        self._durable_seq = self._staged_seq
        for listener in self._listeners:
            listener(self._durable_seq)
        return self._durable_seq

    # -- segments ------------------------------------------------------------

    def _roll(self) -> None:
        """Close the active segment (durably) and open the next one."""
        if self._fd >= 0:
            self._flush()
            self._commit()
            os.close(self._fd)
        self._seq += 1
        path = create_segment(
            self.directory, self._state.segment_state(self._seq), durable=self._durable
        )
        self._reader.add_segment(self._seq, path)
        self._paths[self._seq] = path
        self._open_active(path, path.stat().st_size)

    def _reclaim(self) -> None:
        """Make the latest COMPACT/RESTORE durable, then remove segments it made dead."""
        self._flush()
        self._commit()
        self._drop_dead_segments()

    def _drop_dead_segments(self) -> None:
        oldest = self._state.index.oldest_live_segment()
        keep_from = self._seq if oldest is None else min(oldest, self._seq)
        dead = [seq for seq in self._paths if seq < keep_from]
        if not dead:
            return
        for seq in dead:  # oldest first: a crash leaves a contiguous suffix
            self._reader.drop_segment(seq)
            self._paths.pop(seq).unlink()
        if self._durable:
            fsync_dir(self.directory)

    # -- lifecycle -----------------------------------------------------------

    def stats(self) -> WalStats:
        """Counters for metrics and the benchmark."""
        return WalStats(
            segments=len(self._paths),
            first_index=self.first_index(),
            last_index=self.last_index(),
            records_written=self._records,
            bytes_written=self._bytes,
            fsyncs=self._fsyncs,
            staged_seq=self._staged_seq,
            durable_seq=self._durable_seq,
            cached_entries=len(self._recent),
            disk_reads=self._reader.reads,
        )

    def close(self) -> None:
        """Write and (unless ``never``) fsync what is staged, then release the files."""
        if self._closed:
            return
        try:
            self._flush()
            self._commit()
        finally:
            self._closed = True
            os.close(self._fd)
            self._reader.close()
            os.close(self._lock_fd)

    def __enter__(self) -> DiskStorage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["DiskStorage", "FsyncPolicy", "WalStats"]

"""The active segment: staging, group commit and fsync policy (layer L1).

Records are staged in a buffer and numbered (``staged_seq``). A commit
writes the whole buffer with one ``write`` and, as the policy says, one
``fsync``; afterwards ``durable_seq`` says which records are durable, and
listeners hear about the advance. Rolling to a new segment makes the old
one durable first, so only the active segment ever holds records that are
not yet fsynced.

The active segment is kept extended with zero bytes ahead of its records
(:data:`PREALLOCATE_BYTES`, written once per extension): records then
overwrite blocks that are already allocated and written, the file size does
not change, and the commit's ``fdatasync`` is a plain data flush with no
journal commit for the file's metadata. Scanning treats a tail of zero bytes
as the clean end of the segment; rolling and closing cut it off.

A commit can also be split so that the fsync runs on another thread:
:meth:`SegmentWriter.begin_sync` writes what is staged and hands out a
:class:`SyncTicket` (a duplicate descriptor of the active segment, so rolling
or closing the segment meanwhile is harmless); whoever holds the ticket calls
:func:`fsync_ticket`, and :meth:`SegmentWriter.end_sync` (on the writer's own
thread) moves ``durable_seq``.
"""

from __future__ import annotations

import enum
import errno
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from crema.histogram import FSYNC_BUCKETS, Histogram
from crema.storage.record import SegmentState
from crema.storage.segment import create_segment

log = logging.getLogger("crema.storage")

_FLUSH_BYTES = 1024 * 1024
PREALLOCATE_BYTES = 1024 * 1024
"""How far the active segment is extended with zeros past its records at a time."""
_ZEROS = bytes(PREALLOCATE_BYTES)
_datasync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)


class FsyncPolicy(enum.Enum):
    """When a commit calls ``fsync``.

    ``ALWAYS``: every commit that has something staged fsyncs once.
    ``BATCH``: a commit fsyncs only once ``batch_interval`` seconds have passed
    since the last fsync; :meth:`SegmentWriter.sync_if_due` (called from a
    timer) bounds how long a record can stay unsynced.
    ``NEVER``: the OS decides; a crash of the machine may lose recent records.
    """

    ALWAYS = "always"
    BATCH = "batch"
    NEVER = "never"


@dataclass(slots=True)
class SyncTicket:
    """An fsync handed out by :meth:`SegmentWriter.begin_sync`, to run on any thread.

    Attributes:
        fd: a duplicate of the active segment's descriptor; :func:`fsync_ticket`
            closes it.
        seq: ``staged_seq`` when the ticket was made: the records it makes durable.
        seconds: how long the fsync took (set by :func:`fsync_ticket`).
    """

    fd: int
    seq: int
    seconds: float = 0.0


def fsync_ticket(ticket: SyncTicket) -> None:
    """Fsync the ticket's segment and close its descriptor (safe off the writer's thread).

    Raises:
        OSError: the fsync failed; the records are then not known to be durable.
    """
    started = time.perf_counter()
    try:
        _datasync(ticket.fd)
    finally:
        ticket.seconds = time.perf_counter() - started
        os.close(ticket.fd)


class SegmentWriter:
    """Appends records to the active segment of a WAL directory.

    Attributes:
        seq: sequence number of the active segment.
        size: its size, including what is staged but not written yet.
        written: how much of it has been handed to the OS (readable by ``pread``).
        fsync_latency: seconds each ``fsync`` of a segment took.
    """

    def __init__(
        self,
        directory: Path,
        policy: FsyncPolicy,
        batch_interval: float,
        clock: Callable[[], float],
    ) -> None:
        self.directory = directory
        self.policy = policy
        self.durable = policy is not FsyncPolicy.NEVER
        self._batch_interval = batch_interval
        self._clock = clock
        self._listeners: list[Callable[[int], None]] = []
        self._fd = -1
        self._allocated = 0  # the active segment's file size: records, then zeros
        self._preallocate = True  # off for the rest of a segment once the disk was full
        self._buf = bytearray()
        self.seq = 0
        self.size = self.written = 0
        self.staged_seq = self.durable_seq = 0
        self.records = self.bytes_written = self.fsyncs = 0
        self.fsync_latency = Histogram(FSYNC_BUCKETS)
        self._last_fsync = clock()

    def open_active(self, seq: int, path: Path, size: int) -> None:
        """Continue appending to an existing segment whose valid records end at ``size``."""
        self._fd = os.open(path, os.O_WRONLY)
        self._allocated = os.fstat(self._fd).st_size
        self._preallocate = True
        self.seq = seq
        self.size = self.written = size

    def roll(self, state: SegmentState) -> Path:
        """Make the active segment durable, close it and create segment ``state.seq``."""
        if self._fd >= 0:
            self.flush()
            self._cut_zeros()
            self.force_commit()
            os.close(self._fd)
            self._fd = -1
        path = create_segment(self.directory, state, durable=self.durable)
        self.open_active(state.seq, path, path.stat().st_size)
        return path

    def stage(self, data: bytes) -> None:
        """Queue one framed record for the next commit."""
        self._buf += data
        self.size += len(data)
        self.staged_seq += 1
        self.records += 1
        if len(self._buf) >= _FLUSH_BYTES:
            self.flush()

    def on_durable(self, listener: Callable[[int], None]) -> None:
        """Call ``listener(durable_seq)`` whenever ``durable_seq`` advances."""
        self._listeners.append(listener)

    def flush(self) -> None:
        """Hand the staged bytes to the OS (no fsync)."""
        buf = self._buf
        if buf:
            fd, offset = self._fd, self.written
            end = offset + len(buf)
            _write_at(fd, buf, offset)
            if end > self._allocated and self._preallocate:  # once per PREALLOCATE_BYTES
                self._extend(fd, end)
            self.bytes_written += len(buf)
            self.written = self.size
            self._buf = bytearray()

    def _extend(self, fd: int, end: int) -> None:
        """Write the zeros ahead of ``end``; a full disk only turns preallocation off."""
        try:
            _write_at(fd, _ZEROS, end)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise
            os.ftruncate(fd, end)  # no partial run of zeros left behind
            self._allocated = end
            self._preallocate = False
            log.warning("WAL %s: no room to preallocate, going on without: %s", self.directory, exc)
            return
        self._allocated = end + PREALLOCATE_BYTES

    def _cut_zeros(self) -> None:
        """Cut the preallocated zeros off the active segment (before it is closed)."""
        if self._allocated > self.written:
            os.ftruncate(self._fd, self.written)
            self._allocated = self.written

    def commit(self) -> int:
        """Write what is staged; fsync as the policy says. Returns ``durable_seq``."""
        self.flush()
        if self.policy is FsyncPolicy.BATCH and not self.sync_due():
            return self.durable_seq
        return self.force_commit()

    def sync_due(self) -> bool:
        """Whether the ``batch`` policy's time bound calls for an fsync now."""
        waiting = self.durable_seq < self.staged_seq
        return waiting and self._clock() - self._last_fsync >= self._batch_interval

    def force_commit(self) -> int:
        """Write and (unless ``never``) fsync everything staged, whatever the time bound."""
        self.flush()
        if self.durable_seq == self.staged_seq:
            return self.durable_seq
        if self.durable:
            started = time.perf_counter()
            _datasync(self._fd)
            self._count_fsync(time.perf_counter() - started)
        self._advance(self.staged_seq)
        return self.durable_seq

    def begin_sync(self) -> SyncTicket | None:
        """Like :meth:`commit`, but return the fsync as a ticket instead of doing it.

        Returns:
            ``None`` when no fsync is called for (nothing new, policy ``never``,
            or ``batch`` before its time bound): ``durable_seq`` is then what
            :meth:`commit` would leave. Otherwise a ticket: run
            :func:`fsync_ticket` on it (on any thread), then :meth:`end_sync`.
        """
        self.flush()
        if self.durable_seq == self.staged_seq:
            return None
        if not self.durable:
            self._advance(self.staged_seq)
            return None
        if self.policy is FsyncPolicy.BATCH and not self.sync_due():
            return None
        return SyncTicket(os.dup(self._fd), self.staged_seq)

    def end_sync(self, ticket: SyncTicket) -> int:
        """Record a ticket's fsync as done (it succeeded). Returns ``durable_seq``."""
        self._count_fsync(ticket.seconds)
        if ticket.seq > self.durable_seq:  # a roll meanwhile may have gone further
            self._advance(ticket.seq)
        return self.durable_seq

    def _count_fsync(self, seconds: float) -> None:
        self.fsync_latency.observe(seconds)
        self.fsyncs += 1
        self._last_fsync = self._clock()

    def _advance(self, seq: int) -> None:
        self.durable_seq = seq
        for listener in self._listeners:
            listener(seq)

    def close(self) -> None:
        """Close the active segment (call :meth:`force_commit` first to keep what is staged)."""
        if self._fd >= 0:
            self._cut_zeros()
            os.close(self._fd)
            self._fd = -1


def _write_at(fd: int, data: bytes | bytearray, offset: int) -> None:
    """Write all of ``data`` at ``offset`` (a short write is continued).

    Views of ``data`` are released even when a write fails (ENOSPC, EIO): a
    view left in the traceback would keep a staging ``bytearray`` from growing.
    """
    done = os.pwrite(fd, data, offset)
    if done == len(data):
        return
    with memoryview(data) as whole:
        while done < len(whole):
            with whole[done:] as rest:
                done += os.pwrite(fd, rest, offset + done)

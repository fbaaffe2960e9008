"""The active segment: staging, group commit and fsync policy (layer L1).

Records are staged in a buffer and numbered (``staged_seq``). A commit
writes the whole buffer with one ``write`` and, as the policy says, one
``fsync``; afterwards ``durable_seq`` says which records are durable, and
listeners hear about the advance. Rolling to a new segment makes the old
one durable first, so only the active segment ever holds records that are
not yet fsynced.
"""

from __future__ import annotations

import enum
import os
import time
from collections.abc import Callable
from pathlib import Path

from crema.histogram import FSYNC_BUCKETS, Histogram
from crema.storage.record import SegmentState
from crema.storage.segment import create_segment

_FLUSH_BYTES = 1024 * 1024


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
        self._buf = bytearray()
        self.seq = 0
        self.size = self.written = 0
        self.staged_seq = self.durable_seq = 0
        self.records = self.bytes_written = self.fsyncs = 0
        self.fsync_latency = Histogram(FSYNC_BUCKETS)
        self._last_fsync = clock()

    def open_active(self, seq: int, path: Path, size: int) -> None:
        """Continue appending to an existing segment whose valid records end at ``size``."""
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        self.seq = seq
        self.size = self.written = size

    def roll(self, state: SegmentState) -> Path:
        """Make the active segment durable, close it and create segment ``state.seq``."""
        if self._fd >= 0:
            self.flush()
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
        if self._buf:
            os.write(self._fd, self._buf)
            self.bytes_written += len(self._buf)
            self.written = self.size
            self._buf = bytearray()

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
            os.fsync(self._fd)
            self.fsync_latency.observe(time.perf_counter() - started)
            self.fsyncs += 1
            self._last_fsync = self._clock()
        self.durable_seq = self.staged_seq
        for listener in self._listeners:
            listener(self.durable_seq)
        return self.durable_seq

    def close(self) -> None:
        """Close the active segment (call :meth:`force_commit` first to keep what is staged)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

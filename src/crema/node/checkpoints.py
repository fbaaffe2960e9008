"""Checkpoints on every node: trigger, write off the event loop, then compact (layer L2).

The trigger policy is checked as entries apply. A snapshot is the state
machine's :meth:`entries_view` at one applied index (cheap to take; the
state machine keeps applying), written by the ``CheckpointManager`` in a
worker thread. With the C accelerator the writer encodes the view in short
slices (about a millisecond each) and releases the GIL for compression, the
CRC and the file writes; the switch interval is lowered while it runs so the
event loop gets the GIL back quickly. Without the accelerator, large views
are written by a forked child instead (pure-Python encoding would hold the
GIL for seconds). Before writing, the
free space of the checkpoint file system is compared with an estimate of
the snapshot's size: when short, the snapshot is skipped with a warning and
counted, and retried later. A failed snapshot is logged and counted; it
never stops the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import shutil
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from crema.cache.store import EntriesView
from crema.checkpoint import (
    CheckpointManager,
    CheckpointPolicy,
    SnapshotInfo,
    SnapshotMetadata,
    SnapshotReader,
    snapshot_name,
)
from crema.checkpoint.format import accelerated
from crema.errors import SnapshotError
from crema.histogram import DURATION_BUCKETS, Histogram

log = logging.getLogger("crema.node")

RETRY_AFTER_S = 5.0
"""Seconds before a skipped or failed snapshot is tried again."""
_BYTES_PER_ENTRY = 64
FORK_MIN_ENTRIES = 100_000
"""Without the C accelerator, views at least this large are written by a forked child."""
SWITCH_INTERVAL_S = 0.0005
"""``sys.setswitchinterval`` while a snapshot thread runs (the default is 5 ms)."""


_switching_lock = threading.Lock()
_switching_users = 0
_switching_saved = 0.0


@contextlib.contextmanager
def fast_gil_switching(interval: float = SWITCH_INTERVAL_S) -> Iterator[None]:
    """Lower the GIL switch interval for the duration, then restore it.

    A thread that wants the GIL waits this long before asking the holder to
    drop it; while a snapshot thread runs, the event loop should not wait the
    default 5 ms each time it wants to run. Overlapping uses (several nodes in
    one process) nest: the first saves the setting, the last restores it.
    """
    global _switching_users, _switching_saved  # noqa: PLW0603 - one process-wide setting
    with _switching_lock:
        if _switching_users == 0:
            _switching_saved = sys.getswitchinterval()
            sys.setswitchinterval(min(_switching_saved, interval))
        _switching_users += 1
    try:
        yield
    finally:
        with _switching_lock:
            _switching_users -= 1
            if _switching_users == 0:
                sys.setswitchinterval(_switching_saved)


class Checkpointer:
    """Decides when to snapshot and writes snapshots without blocking the loop.

    Args:
        manager: the node's checkpoint manager.
        policy: the trigger policy.
        min_free_bytes: free space to keep beyond the snapshot's estimated size.
        on_written: called in the loop with the index of each snapshot written.
        free_bytes: measures free space of a directory (injectable for tests).
    """

    def __init__(
        self,
        manager: CheckpointManager,
        policy: CheckpointPolicy,
        min_free_bytes: int,
        on_written: Callable[[int], None],
        free_bytes: Callable[[str], int] | None = None,
    ) -> None:
        self.manager = manager
        self._policy = policy
        self._min_free = min_free_bytes
        self._on_written = on_written
        self._free_bytes = free_bytes or (lambda path: shutil.disk_usage(path).free)
        self.last_index = 0
        self._last_time = time.monotonic()
        self._retry_at = 0.0
        self._task: asyncio.Task[SnapshotInfo | None] | None = None
        self.fork_min_entries: int | None = None if accelerated() else FORK_MIN_ENTRIES
        """Views at least this large are written by a forked child (None: never fork)."""
        self.written = 0
        self.skipped_low_space = 0
        self.failed = 0
        self.duration = Histogram(DURATION_BUCKETS)
        """Seconds each snapshot written by this node took (the file write only)."""
        self.last_seconds = 0.0
        self.last_size = 0
        self.last_entries = 0
        self.last_data_bytes = 0
        """Keys plus values in the last snapshot written (its uncompressed payload)."""

    @property
    def running(self) -> bool:
        """Whether a snapshot is being written."""
        return self._task is not None and not self._task.done()

    def maybe_start(self, view_of: Callable[[], EntriesView], applied: int) -> None:
        """Start a snapshot in the background if the policy says so."""
        if self.running:
            return
        now = time.monotonic()
        since = applied - self.last_index
        if now < self._retry_at or not self._policy.should_snapshot(since, now - self._last_time):
            return
        self._task = asyncio.get_running_loop().create_task(self._write(view_of()))

    async def checkpoint(self, view_of: Callable[[], EntriesView]) -> SnapshotInfo:
        """Snapshot now (after any snapshot in progress) and return its info.

        Raises:
            SnapshotError: the snapshot could not be written (or space is short).
        """
        while self._task is not None and not self._task.done():
            await asyncio.wait({self._task})
        info = await self._write(view_of(), forced=True)
        assert info is not None
        return info

    def _estimate(self, view: EntriesView) -> int:
        """Twice the largest snapshot file so far, or 64 bytes per entry (stat only)."""
        previous = 0
        for path in self.manager.directory.glob("snapshot-*.snap"):
            with contextlib.suppress(OSError):
                previous = max(previous, path.stat().st_size * 2)
        return max(previous, len(view) * _BYTES_PER_ENTRY)

    async def _write(self, view: EntriesView, forced: bool = False) -> SnapshotInfo | None:
        directory = str(self.manager.directory)
        try:
            needed = self._estimate(view) + self._min_free
            free = self._free_bytes(directory)
            if free < needed:
                self.skipped_low_space += 1
                self._retry_at = time.monotonic() + RETRY_AFTER_S
                msg = f"snapshot at {view.index} skipped: {free} bytes free, need {needed}"
                log.warning("%s in %s", msg, directory)
                if forced:
                    raise SnapshotError(msg, self.manager.directory)
                return None
            meta = SnapshotMetadata(view.index, view.term, datetime.now(UTC))
            started = time.perf_counter()
            info = await self._create(meta, view)
            seconds = time.perf_counter() - started
        except SnapshotError as exc:
            self.failed += 1
            self._retry_at = time.monotonic() + RETRY_AFTER_S
            log.warning("snapshot at %d failed: %s", view.index, exc)
            if forced:
                raise
            return None
        self.written += 1
        self.duration.observe(seconds)
        self.last_seconds = seconds
        self.last_size = info.size
        self.last_entries = info.entry_count
        self.last_data_bytes = view.nbytes
        self.last_index = max(self.last_index, view.index)
        self._last_time = time.monotonic()
        self._on_written(view.index)
        return info

    async def _create(self, meta: SnapshotMetadata, view: EntriesView) -> SnapshotInfo:
        fork_min = self.fork_min_entries
        if fork_min is not None and hasattr(os, "fork") and len(view) >= fork_min:
            return await self._create_forked(meta, view)
        with fast_gil_switching():
            return await asyncio.to_thread(self._create_in_thread, meta, view)

    def _create_in_thread(self, meta: SnapshotMetadata, view: EntriesView) -> SnapshotInfo:
        try:
            return self.manager.create_snapshot(meta, view)
        finally:
            # Shards copied meanwhile die with the view: free them here, one
            # at a time, rather than all at once on the event loop.
            view.release(pause=_yield_gil)

    async def _create_forked(self, meta: SnapshotMetadata, view: EntriesView) -> SnapshotInfo:
        """Write the snapshot in a forked child, as Redis's BGSAVE does.

        Serialising a large view (sorting by write order, encoding) holds the
        GIL for long stretches, which would stall the event loop even from a
        worker thread. The child sees the view copy-on-write, writes the file
        (temp file, fsync, rename, retention) and exits; the parent only waits.
        """
        gc.freeze()  # the parent's collector must not touch (and thus copy) every page
        try:
            return await self._fork_and_wait(meta, view)
        finally:
            gc.unfreeze()  # never left on: objects made since are collected as usual

    async def _fork_and_wait(self, meta: SnapshotMetadata, view: EntriesView) -> SnapshotInfo:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            gc.disable()
            os.nice(10)  # serving comes first when cores are scarce
            code = 1
            try:
                self.manager.create_snapshot(meta, view)
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        _, status = await asyncio.to_thread(os.waitpid, pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SnapshotError(f"snapshot child {pid} failed", self.manager.directory)
        path = self.manager.directory / snapshot_name(meta.index, meta.term)
        with SnapshotReader.open(path) as reader:
            return reader.info()

    @property
    def last_compression_ratio(self) -> float:
        """Keys plus values of the last snapshot written over its file size (0: none yet)."""
        return self.last_data_bytes / self.last_size if self.last_size else 0.0

    def installed(self, index: int) -> None:
        """A snapshot at ``index`` was installed from the leader."""
        self.last_index = max(self.last_index, index)
        self._last_time = time.monotonic()

    async def stop(self) -> None:
        """Wait for a snapshot in progress to land."""
        if self._task is not None:
            await asyncio.wait({self._task})


def _yield_gil() -> None:
    time.sleep(0)  # releases the GIL: a waiting thread (the event loop) runs first

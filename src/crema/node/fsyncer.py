"""A node's WAL fsyncs on a thread of their own, off the event loop (layer L2).

The driver loop writes a Ready's records with one ``write`` and hands the
fsync to this thread (a :class:`~crema.storage.SyncTicket`); the loop goes on
reading clients and peers, proposing and stepping, while the disk works. The
ticket's callback runs back on the loop. ``os.fsync`` releases the GIL, so
the thread costs the loop nothing while it waits on the disk.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable

from crema.storage import SyncTicket, writer

SyncDone = Callable[[SyncTicket, OSError | None], None]
"""Called on the loop with the ticket and the fsync's error (``None``: it succeeded)."""


class FsyncThread:
    """One thread that fsyncs tickets in order and reports each back to the loop.

    Args:
        loop: the loop that receives the callbacks.
        name: the thread's name.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, name: str) -> None:
        self._loop = loop
        self._queue: queue.SimpleQueue[tuple[SyncTicket, SyncDone] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, ticket: SyncTicket, done: SyncDone) -> None:
        """Fsync ``ticket`` after those submitted before it, then call ``done`` on the loop."""
        self._queue.put((ticket, done))

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            ticket, done = item
            error: OSError | None = None
            try:
                writer.fsync_ticket(ticket)
            except OSError as exc:
                error = exc
            try:
                self._loop.call_soon_threadsafe(done, ticket, error)
            except RuntimeError:  # the loop is closed: nobody waits for the answer
                return

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread after the tickets already submitted (wait at most ``timeout``)."""
        self._queue.put(None)
        self._thread.join(timeout)

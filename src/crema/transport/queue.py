"""A bounded queue of encoded frames for one outbound connection (L2).

Bounded by frame count and by bytes; an empty queue always takes one frame,
however large, so a frame up to ``max_frame`` can always be sent. ``offer``
never blocks: when full it drops the new frame and counts it (Raft tolerates
loss, and a dead peer must not grow memory). ``put`` waits for space, for
producers that want backpressure (snapshot streaming).
"""

from __future__ import annotations

import asyncio
from collections import deque


class FrameQueue:
    """FIFO of frames with a drop counter; single consumer (the writer task)."""

    def __init__(self, max_items: int, max_bytes: int) -> None:
        self._frames: deque[bytes] = deque()
        self._max_items = max_items
        self._max_bytes = max_bytes
        self._bytes = 0
        self.dropped = 0
        self._closed = False
        self._ready = asyncio.Event()  # frames queued, or a wake-up was asked for
        self._space = asyncio.Event()
        self._space.set()

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def nbytes(self) -> int:
        """Bytes currently queued."""
        return self._bytes

    def _fits(self, size: int) -> bool:
        if not self._frames:
            return True
        return len(self._frames) < self._max_items and self._bytes + size <= self._max_bytes

    def offer(self, frame: bytes) -> bool:
        """Queue ``frame`` if it fits; otherwise drop it and count the drop."""
        if self._closed or not self._fits(len(frame)):
            self.dropped += 1
            return False
        self._frames.append(frame)
        self._bytes += len(frame)
        self._ready.set()
        if not self._fits(0):
            self._space.clear()
        return True

    async def put(self, frame: bytes) -> bool:
        """Queue ``frame``, waiting for space; False if the queue was closed."""
        while not self._closed and not self._fits(len(frame)):
            self._space.clear()
            await self._space.wait()
        return self.offer(frame)

    async def wait(self) -> None:
        """Return once frames are queued or :meth:`wake` was called."""
        await self._ready.wait()

    def wake(self) -> None:
        """Make a pending :meth:`wait` return, e.g. because the connection died."""
        self._ready.set()

    def take(self, max_bytes: int) -> list[bytes]:
        """Remove and return queued frames, at least one if any, up to ``max_bytes``."""
        out: list[bytes] = []
        size = 0
        frames = self._frames
        while frames and (not out or size + len(frames[0]) <= max_bytes):
            frame = frames.popleft()
            out.append(frame)
            size += len(frame)
        self._bytes -= size
        if not frames:
            self._ready.clear()
        if out:
            self._space.set()
        return out

    def close(self) -> None:
        """Drop everything; later offers are dropped and waiting producers return."""
        self._closed = True
        self._frames.clear()
        self._bytes = 0
        self._space.set()
        self._ready.set()

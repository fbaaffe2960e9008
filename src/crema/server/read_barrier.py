"""Batched read barriers: many concurrent linearizable reads share one ReadIndex round.

A read may use a barrier only if the barrier *started* after the read
arrived; a barrier already in flight may have fixed its read index before
the read's invocation, so a newcomer waits for the next one. So there are at
most two groups at any time: the barrier in flight and the readers queued
for the one after it. A connection takes a :meth:`ReadBarrier.ticket` when a
batch of pipelined commands arrives; every read of that batch is then
satisfied by the first barrier that started after it, without a round each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

__all__ = ["ReadBarrier"]


class ReadBarrier:
    """Coalesces calls to a backend's ``read_barrier``.

    Args:
        barrier: the backend's ``read_barrier`` coroutine function.
    """

    def __init__(self, barrier: Callable[[], Awaitable[None]]) -> None:
        self._barrier = barrier
        self._started = 0  # barriers started so far; barrier n is the n-th
        self._done = 0  # the highest-numbered barrier that completed
        self._inflight: asyncio.Future[None] | None = None
        self.rounds = 0  # barriers that completed (for INFO)

    def ticket(self) -> int:
        """A ticket for requests arriving now: satisfied by any barrier started later."""
        return self._started

    def satisfied(self, ticket: int) -> bool:
        """Whether a barrier that started after ``ticket`` was taken has completed."""
        return self._done > ticket

    async def wait(self, ticket: int) -> None:
        """Return once a barrier that started after ``ticket`` was taken has completed.

        Raises:
            WriteRejectedError: the barrier failed (no leader confirmed a read index).
        """
        while self._done <= ticket:
            inflight = self._inflight
            if inflight is None:
                await self._run()
            else:
                await asyncio.shield(inflight)

    async def _run(self) -> None:
        """Run one barrier round in the caller's task; others wait on its future."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._inflight = future
        self._started += 1
        number = self._started
        try:
            await self._barrier()
        except BaseException as exc:
            if not future.done():
                if isinstance(exc, Exception):
                    future.set_exception(exc)
                    future.exception()  # retrieved: waiters may all be gone
                else:  # cancelled: waiters retry with a round of their own
                    future.set_result(None)
            raise
        finally:
            if self._inflight is future:
                self._inflight = None
        self._done = max(self._done, number)
        self.rounds += 1
        future.set_result(None)

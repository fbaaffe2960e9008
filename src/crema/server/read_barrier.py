"""Batched read barriers: many concurrent linearizable reads share one ReadIndex round.

A read may use a round only if the round *started* after the read arrived;
a round already in flight may have fixed its read index before the read's
invocation, so a newcomer joins a later one. Rounds are numbered as they
start; a connection takes a :meth:`ReadBarrier.ticket` (the number of rounds
started so far) when a batch of pipelined commands arrives, and every read
of that batch is satisfied once any round numbered above the ticket has
completed.

Readers that find no such round in flight join the *next* group, which
starts one round at the end of the current loop turn (``call_soon``), so
the readers of every connection served in one turn share it. Up to
:data:`MAX_ROUNDS_IN_FLIGHT` rounds overlap: a new group does not wait for
the previous round to finish, only for a free slot. Waiting is done with
callbacks, not a task per reader: :meth:`ReadBarrier.when_ready` registers
a plain callback, called directly when its round completes (no future and
no extra loop turn per reader); :meth:`ReadBarrier.wait` wraps one in a
future for coroutines.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from crema.errors import WriteRejectedError

__all__ = ["MAX_ROUNDS_IN_FLIGHT", "ReadBarrier", "Reader"]

log = logging.getLogger("crema.server")

Reader = Callable[[BaseException | None], None]
"""Called once a reader's round ended: with ``None`` (it may read) or the round's error."""

MAX_ROUNDS_IN_FLIGHT = 2
"""ReadIndex rounds in flight at most; more readers queue for the next free slot."""


class ReadBarrier:
    """Coalesces calls to a backend's ``read_barrier``.

    Args:
        barrier: the backend's ``read_barrier``: starts one round, returns an awaitable.
    """

    def __init__(self, barrier: Callable[[], Awaitable[None]]) -> None:
        self._barrier = barrier
        self._started = 0  # rounds started so far; round n is the n-th
        self._done = 0  # the highest-numbered round that completed
        self._inflight: dict[int, list[Reader]] = {}  # number -> its readers
        self._next: list[Reader] = []  # readers of the round to start
        self._scheduled = False
        self.rounds = 0  # rounds that completed (for INFO)
        self.scratch: object = None
        """While a round's readers are called, what they may share (the state cannot
        change meanwhile: they run one after the other, no await between); None after."""

    def ticket(self) -> int:
        """A ticket for requests arriving now: satisfied by any round started later."""
        return self._started

    def satisfied(self, ticket: int) -> bool:
        """Whether a round that started after ``ticket`` was taken has completed."""
        return self._done > ticket

    def wait(self, ticket: int) -> asyncio.Future[None]:
        """A future done once a round that started after ``ticket`` was taken has completed.

        The future fails with the round's error (``WriteRejectedError``: no
        leader confirmed a read index); cancelling it affects no other reader.
        """
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._done > ticket:
            fut.set_result(None)
        else:
            self._join(ticket, _Settle(fut))
        return fut

    def when_ready(self, ticket: int, reader: Reader) -> None:
        """Call ``reader`` once a round that started after ``ticket`` was taken has completed.

        ``reader`` gets ``None``, or the round's error (``WriteRejectedError``).
        It is never called from within this method: when such a round has
        already completed, it is called soon (``call_soon``); otherwise
        directly from the callback that completes the round, together with
        every other reader of that round.
        """
        if self._done > ticket:
            asyncio.get_running_loop().call_soon(reader, None)
        else:
            self._join(ticket, reader)

    def _join(self, ticket: int, reader: Reader) -> None:
        for number, readers in self._inflight.items():  # oldest first: likely done first
            if number > ticket:
                readers.append(reader)
                return
        self._next.append(reader)
        if not self._scheduled and len(self._inflight) < MAX_ROUNDS_IN_FLIGHT:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._start)

    def _start(self) -> None:
        """Start one round for every reader queued so far."""
        self._scheduled = False
        readers = [r for r in self._next if type(r) is not _Settle or not r.fut.done()]
        self._next = []
        if not readers:
            return
        self._started += 1
        number = self._started
        self._inflight[number] = readers
        try:
            awaitable = self._barrier()
            round_future = asyncio.ensure_future(awaitable)
        except Exception as exc:
            self._finish(number, exc)
            return
        round_future.add_done_callback(lambda f: self._round_done(number, f))

    def _round_done(self, number: int, round_future: asyncio.Future[None]) -> None:
        if round_future.cancelled():
            self._finish(number, WriteRejectedError("the read barrier was cancelled"))
            return
        self._finish(number, round_future.exception())

    def _finish(self, number: int, exc: BaseException | None) -> None:
        readers = self._inflight.pop(number, [])
        if exc is None:
            self._done = max(self._done, number)
            self.rounds += 1
        self.scratch = None
        for reader in readers:
            try:
                reader(exc)
            except Exception:  # a bug in one reader must not starve the others
                log.exception("a read barrier reader failed")
        self.scratch = None
        if self._next and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._start)


class _Settle:
    """A reader that settles a future (see :meth:`ReadBarrier.wait`)."""

    __slots__ = ("fut",)

    def __init__(self, fut: asyncio.Future[None]) -> None:
        self.fut = fut

    def __call__(self, exc: BaseException | None) -> None:
        fut = self.fut
        if fut.done():
            return
        if exc is None:
            fut.set_result(None)
        else:
            fut.set_exception(exc)
            fut.exception()  # retrieved: its reader may be gone

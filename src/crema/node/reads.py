"""Batched ReadIndex rounds and waits on the applied index (layer L2).

Concurrent ``consistent_get`` calls share one ReadIndex round: the reads
queued when a round starts go in it. A round starts when reads are requested
(``Replica.start_reads``: its heartbeats or its request to the leader leave
in that same loop turn), or, when no round may start then, on a later turn
of the driver loop. Up to
:data:`MAX_ROUNDS_IN_FLIGHT` rounds overlap, so reads arriving while a round
is in flight start the next one at once instead of waiting for it. A round's
read state tells the commit index the reads must wait for; they are released
once the local applied index reaches it. A round that gets no answer (leader
change, lost message) is retried after ``retry_after`` seconds.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from crema.errors import NotLeaderError, UnavailableError
from crema.raft.rawnode import RawNode
from crema.raft.read_only import ReadState

MAX_ROUNDS_IN_FLIGHT = 4
"""ReadIndex rounds of one node in flight at most."""


def _time_out(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_exception(UnavailableError("no leader confirmed a read index in time"))


@dataclass(slots=True)
class _Round:
    context: bytes
    started: float
    waiters: list[asyncio.Future[None]] = field(default_factory=list)


Applied = Callable[[BaseException | None], None]
"""Called once the applied index reached its target (``None``), or with the error of a failure."""


class AppliedWaiters:
    """Callbacks called, and futures resolved, once the applied index reaches their target."""

    def __init__(self) -> None:
        self._calls: list[tuple[int, int, Applied]] = []
        self._seq = itertools.count()

    def call_when(self, index: int, applied: int, callback: Applied) -> None:
        """Call ``callback(None)`` once ``applied`` reaches ``index`` (now if it has).

        No future and no extra loop turn: the callback runs from :meth:`release`
        (or :meth:`fail_all`, with the error).
        """
        if index <= applied:
            callback(None)
        else:
            heapq.heappush(self._calls, (index, next(self._seq), callback))

    def wait(self, index: int, applied: int) -> asyncio.Future[None]:
        """A future done once ``applied`` reaches ``index`` (done now if it has)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.call_when(index, applied, partial(_settle, fut))
        return fut

    def release(self, applied: int) -> None:
        """Call every callback whose target is at most ``applied``."""
        calls = self._calls
        while calls and calls[0][0] <= applied:
            heapq.heappop(calls)[2](None)

    def fail_all(self, exc: BaseException) -> None:
        """Call every callback with ``exc``."""
        calls, self._calls = self._calls, []
        for _, _, callback in calls:
            callback(exc)


def _settle(fut: asyncio.Future[None], exc: BaseException | None) -> None:
    if not fut.done():
        if exc is None:
            fut.set_result(None)
        else:
            fut.set_exception(exc)


class ReadBatcher:
    """Groups linearizable reads into ReadIndex rounds.

    Args:
        node_id: prefix of round contexts, so they are unique in the cluster.
        retry_after: seconds before an unanswered round is asked again.
    """

    def __init__(self, node_id: int, retry_after: float) -> None:
        self._prefix = b"r%d:" % node_id
        self._counter = itertools.count(1)
        self._retry_after = retry_after
        self._queued: list[asyncio.Future[None]] = []
        self._rounds: dict[bytes, _Round] = {}  # in flight, oldest first
        self._waiting = AppliedWaiters()

    def request(self, timeout: float | None = None) -> asyncio.Future[None]:
        """Queue a read; the future is done when the local state may be read.

        With ``timeout``, the future fails with ``UnavailableError`` after that
        many seconds without a confirmed read index.
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._queued.append(fut)
        if timeout is not None:
            timer = loop.call_later(timeout, _time_out, fut)
            fut.add_done_callback(lambda _: timer.cancel())
        return fut

    def wants_round(self) -> bool:
        """Whether reads are queued and a round may start."""
        return bool(self._queued) and len(self._rounds) < MAX_ROUNDS_IN_FLIGHT

    def poll(self, node: RawNode, now: float) -> None:
        """Retry stale rounds and start a round for queued reads when possible."""
        for context, current in list(self._rounds.items()):
            if now - current.started > self._retry_after:
                self._queued[:0] = current.waiters
                del self._rounds[context]
        if len(self._rounds) >= MAX_ROUNDS_IN_FLIGHT:
            return
        self._queued = [f for f in self._queued if not f.done()]
        if not self._queued:
            return
        context = self._prefix + str(next(self._counter)).encode()
        try:
            node.read_index(context)
        except NotLeaderError:
            return  # no leader yet: try again on the next tick
        self._rounds[context] = _Round(context, now, self._queued)
        self._queued = []

    def on_read_states(self, states: list[ReadState], applied: int) -> bool:
        """Attach the read index of each finished round to its readers; whether one ended."""
        done = False
        for state in states:
            current = self._rounds.pop(state.context, None)
            if current is None:
                continue
            for fut in current.waiters:
                if not fut.done():
                    if state.index <= applied:
                        fut.set_result(None)
                    else:
                        chained = self._waiting.wait(state.index, applied)
                        chained.add_done_callback(_relay(fut))
            done = True
        return done

    def release(self, applied: int) -> None:
        """Release reads whose index is applied."""
        self._waiting.release(applied)

    def fail_all(self, exc: BaseException) -> None:
        """Fail every read (shutdown)."""
        waiters = list(self._queued)
        for current in self._rounds.values():
            waiters += current.waiters
        self._queued, self._rounds = [], {}
        for fut in waiters:
            if not fut.done():
                fut.set_exception(exc)
        self._waiting.fail_all(exc)


def _relay(target: asyncio.Future[None]) -> _Relay:
    return _Relay(target)


class _Relay:
    """Copies the outcome of an applied-index wait to the reader's future."""

    __slots__ = ("target",)

    def __init__(self, target: asyncio.Future[None]) -> None:
        self.target = target

    def __call__(self, source: asyncio.Future[None]) -> None:
        if self.target.done():
            return
        exc = None if source.cancelled() else source.exception()
        if exc is not None:
            self.target.set_exception(exc)
        else:
            self.target.set_result(None)

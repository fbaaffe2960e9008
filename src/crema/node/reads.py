"""Batched ReadIndex rounds and waits on the applied index (layer L2).

Concurrent ``consistent_get`` calls share one ReadIndex round: requests that
arrive while a round is in flight wait for the next one. A round's read
state tells the commit index the reads must wait for; they are released once
the local applied index reaches it. A round that gets no answer (leader
change, lost message) is retried after ``retry_after`` seconds.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from dataclasses import dataclass, field

from crema.errors import NotLeaderError
from crema.raft.rawnode import RawNode
from crema.raft.read_only import ReadState


@dataclass(slots=True)
class _Round:
    context: bytes
    started: float
    waiters: list[asyncio.Future[None]] = field(default_factory=list)


class AppliedWaiters:
    """Futures resolved once the applied index reaches their target."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def wait(self, index: int, applied: int) -> asyncio.Future[None]:
        """A future done once ``applied`` reaches ``index`` (done now if it has)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if index <= applied:
            fut.set_result(None)
        else:
            heapq.heappush(self._heap, (index, next(self._seq), fut))
        return fut

    def release(self, applied: int) -> None:
        """Resolve every waiter whose target is at most ``applied``."""
        heap = self._heap
        while heap and heap[0][0] <= applied:
            fut = heapq.heappop(heap)[2]
            if not fut.done():
                fut.set_result(None)

    def fail_all(self, exc: BaseException) -> None:
        """Fail every waiter with ``exc``."""
        for _, _, fut in self._heap:
            if not fut.done():
                fut.set_exception(exc)
        self._heap.clear()


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
        self._round: _Round | None = None
        self._waiting = AppliedWaiters()

    def request(self) -> asyncio.Future[None]:
        """Queue a read; the future is done when the local state may be read."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queued.append(fut)
        return fut

    def wants_round(self) -> bool:
        """Whether reads are queued and no round is in flight."""
        return bool(self._queued) and self._round is None

    def poll(self, node: RawNode, now: float) -> None:
        """Retry a stale round and start a round for queued reads when possible."""
        current = self._round
        if current is not None and now - current.started > self._retry_after:
            self._queued[:0] = current.waiters
            self._round = None
        if self._round is not None:
            return
        self._queued = [f for f in self._queued if not f.done()]
        if not self._queued:
            return
        context = self._prefix + str(next(self._counter)).encode()
        try:
            node.read_index(context)
        except NotLeaderError:
            return  # no leader yet: try again on the next tick
        self._round = _Round(context, now, self._queued)
        self._queued = []

    def on_read_states(self, states: list[ReadState], applied: int) -> bool:
        """Attach the read index of the current round to its readers; whether it ended."""
        done = False
        current = self._round
        for state in states:
            if current is not None and state.context == current.context:
                for fut in current.waiters:
                    if not fut.done():
                        chained = self._waiting.wait(state.index, applied)
                        chained.add_done_callback(_relay(fut))
                self._round = current = None
                done = True
        return done

    def release(self, applied: int) -> None:
        """Release reads whose index is applied."""
        self._waiting.release(applied)

    def fail_all(self, exc: BaseException) -> None:
        """Fail every read (shutdown)."""
        waiters = list(self._queued)
        if self._round is not None:
            waiters += self._round.waiters
        self._queued, self._round = [], None
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

"""Proposals waiting to be applied, keyed by log index (layer L2).

A proposal is identified by the (index, term) of its entry. When the entry
at that index is applied with the same term, the proposal succeeded; with
another term, it was lost with its leader. When this node stops leading,
every pending proposal fails with :class:`LeadershipLostError` (the entry may
still commit under the next leader, so its outcome is unknown). A proposal not
applied by its deadline fails with :class:`WriteTimeoutError` (outcome unknown
too); deadlines are checked by :meth:`PendingProposals.expire`, which the
driver calls on every tick, instead of a timer per write.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from crema.errors import LeadershipLostError, WriteTimeoutError


class PendingProposals:
    """Futures of proposed entries, resolved as entries apply.

    A proposal may also keep the command it proposed, so that the leader applies
    that object instead of decoding the entry it just encoded (used only when the
    applied entry has the proposal's term, i.e. it is that very entry).
    """

    def __init__(self) -> None:
        self._pending: dict[int, tuple[int, asyncio.Future[Any], object]] = {}
        self._deadlines: deque[tuple[float, int, asyncio.Future[Any]]] = deque()

    def __len__(self) -> int:
        return len(self._pending)

    def add(
        self,
        index: int,
        term: int,
        command: object = None,
        deadline: float | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> asyncio.Future[Any]:
        """Track the entry at (index, term); the future gets its apply result.

        Args:
            deadline: loop time after which :meth:`expire` fails the future;
                deadlines must not decrease from one call to the next.
            loop: the running loop, when the caller has it at hand.
        """
        fut: asyncio.Future[Any] = (loop or asyncio.get_running_loop()).create_future()
        self._pending[index] = (term, fut, command)
        if deadline is not None:
            self._deadlines.append((deadline, index, fut))
        return fut

    def expire(self, now: float, timeout: float) -> int:
        """Fail every proposal whose deadline is at or before ``now``; returns how many failed.

        The entry stays tracked: if it is applied later, nothing more happens.
        """
        deadlines = self._deadlines
        expired = 0
        # Writes mostly finish in order: finished ones at the front go too, so
        # the queue holds about one tick of writes.
        while deadlines and (deadlines[0][0] <= now or deadlines[0][2].done()):
            _, index, fut = deadlines.popleft()
            if not fut.done():
                fut.set_exception(
                    WriteTimeoutError(f"write at index {index} not confirmed in {timeout} s")
                )
                expired += 1
        return expired

    def command(self, index: int, term: int) -> object:
        """The command proposed as the entry at (``index``, ``term``), if kept; else None."""
        item = self._pending.get(index)
        if item is None or item[0] != term:
            return None
        return item[2]

    def applied(self, index: int, term: int, result: object) -> None:
        """The entry at ``index`` applied with ``term`` and ``result``."""
        item = self._pending.pop(index, None)
        if item is None:
            return
        want, fut, _ = item
        if fut.done():
            return
        if want == term:
            fut.set_result(result)
        else:
            fut.set_exception(
                LeadershipLostError(f"entry {index} was replaced by one of term {term}")
            )

    def fail_all(self, exc: BaseException) -> None:
        """Fail every pending proposal with ``exc``."""
        pending, self._pending = self._pending, {}
        self._deadlines.clear()
        for _, fut, _ in pending.values():
            if not fut.done():
                fut.set_exception(exc)

"""Proposals waiting to be applied, keyed by log index (layer L2).

A proposal is identified by the (index, term) of its entry. When the entry
at that index is applied with the same term, the proposal succeeded; with
another term, it was lost with its leader. When this node stops leading,
every pending proposal fails with :class:`LeadershipLostError` (the entry may
still commit under the next leader, so its outcome is unknown).
"""

from __future__ import annotations

import asyncio
from typing import Any

from crema.errors import LeadershipLostError


class PendingProposals:
    """Futures of proposed entries, resolved as entries apply.

    A proposal may also keep the command it proposed, so that the leader applies
    that object instead of decoding the entry it just encoded (used only when the
    applied entry has the proposal's term, i.e. it is that very entry).
    """

    def __init__(self) -> None:
        self._pending: dict[int, tuple[int, asyncio.Future[Any], object]] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, index: int, term: int, command: object = None) -> asyncio.Future[Any]:
        """Track the entry at (index, term); the future gets its apply result."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[index] = (term, fut, command)
        return fut

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
        for _, fut, _ in pending.values():
            if not fut.done():
                fut.set_exception(exc)

"""Stepping a command's coroutine by hand, and the reply slot it fills (layer L2).

A :class:`~crema.server.connection.Connection` runs each command's coroutine
itself instead of in a task: it calls ``send(None)`` and, when the coroutine
suspends on an asyncio future, resumes it from that future's done callback.
:class:`Slot` holds a command's place in the reply order until its reply is
known. :func:`finish` finishes, in a task, a coroutine that awaited something
other than a future.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from typing import Any

from crema.server.resp_reply import Reply

__all__ = ["Slot", "finish"]


class _Yield:
    """Awaitable that hands what a hand-started coroutine yielded to the running task."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, None, None]:
        yield self.value


async def finish(coro: Coroutine[Any, Any, Reply], yielded: Any) -> Reply:
    """Finish, inside a task, a coroutine started by hand that suspended on ``yielded``."""
    while True:
        try:
            await _Yield(yielded)
        except BaseException as exc:  # cancellation: deliver it where the coroutine waits
            try:
                yielded = coro.throw(exc)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            continue
        try:
            yielded = coro.send(None)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]


class Slot:
    """A command whose reply is not known yet (or known but behind one that is not)."""

    __slots__ = ("coro", "done", "reply", "task", "write")

    def __init__(self, coro: Coroutine[Any, Any, Reply] | None, write: bool) -> None:
        self.coro = coro
        self.write = write
        self.done = False
        self.reply: Reply = None
        self.task: asyncio.Task[Reply] | None = None

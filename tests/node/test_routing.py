"""Forwarded writes: deadlines swept on the node's ticks, callbacks on the applied index."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from crema.errors import ShutdownError, WriteTimeoutError
from crema.node.reads import AppliedWaiters
from crema.node.replica import Replica
from crema.node.routing import Router
from crema.raft.types import NodeId


class _Replica:
    """What the router's deadline sweep uses of a replica."""

    def __init__(self) -> None:
        self.tick_hooks: list[Any] = []
        self.write_timeout = 1.5


def test_forwarded_writes_time_out_on_ticks_and_are_forgotten() -> None:
    async def main() -> None:
        replica = _Replica()
        router = Router(cast(Replica, replica))
        assert replica.tick_hooks == [router.expire]
        loop = asyncio.get_running_loop()
        answered, reply = loop.create_future(), loop.create_future()
        reply.set_result(None)
        answered.set_result("OK")
        waiting, pending_reply = loop.create_future(), loop.create_future()
        router._deadlines.append((10.0, answered, reply, NodeId(2)))
        router._deadlines.append((11.0, waiting, pending_reply, NodeId(2)))
        router.expire(5.0)  # a finished write at the front goes before its deadline
        assert [d[1] for d in router._deadlines] == [waiting]
        assert not waiting.done()
        router.expire(11.0)
        exc = waiting.exception()
        assert isinstance(exc, WriteTimeoutError)
        assert str(exc) == "no reply from leader 2 in 1.500 s"
        assert pending_reply.cancelled()  # the forwarder forgets the request
        assert not router._deadlines

    asyncio.run(main())


def test_applied_callbacks_run_in_index_order_and_fail_with_the_waiters() -> None:
    async def main() -> None:
        waiters = AppliedWaiters()
        calls: list[tuple[str, BaseException | None]] = []
        waiters.call_when(3, 5, lambda exc: calls.append(("now", exc)))  # applied already
        waiters.call_when(9, 5, lambda exc: calls.append(("nine", exc)))
        waiters.call_when(7, 5, lambda exc: calls.append(("seven", exc)))
        waiters.call_when(12, 5, lambda exc: calls.append(("twelve", exc)))
        assert calls == [("now", None)]
        waiters.release(9)
        assert calls == [("now", None), ("seven", None), ("nine", None)]
        error = ShutdownError("node 1 is shutting down")
        waiters.fail_all(error)
        assert calls[-1] == ("twelve", error)
        waiters.release(20)  # nothing left
        assert len(calls) == 4

    asyncio.run(main())

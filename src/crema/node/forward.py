"""Forwarding writes from a follower to the leader over the peer connection (layer L2).

Follower side: :meth:`Forwarder.forward` sends a ``Forward`` item to the
leader and waits for the ``ForwardResp`` with the same request id. Leader
side: :meth:`Forwarder.on_forward` proposes the request locally and answers
with the outcome (see :mod:`crema.node.wire`). A request whose reply does not
arrive in time has an unknown outcome (the leader may have applied it).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable

from crema.errors import (
    CremaError,
    LeadershipLostError,
    OutcomeUnknownError,
    PeerProtocolError,
    ProposalDroppedError,
    WriteRejectedError,
    WriteTimeoutError,
)
from crema.node import wire
from crema.raft.types import NodeId
from crema.transport.codec import Forward, ForwardResp
from crema.transport.tcp import TcpTransport

log = logging.getLogger("crema.node")

Handler = Callable[[int, list[object]], Awaitable[wire.ForwardReply]]
"""Leader side: ``handler(kind, fields)`` proposes the request and returns the reply."""


class Forwarder:
    """Both ends of request forwarding for one node.

    Args:
        node_id: this node (request ids are prefixed with it).
        transport: the peer transport.
        handler: the leader-side executor of forwarded requests.
    """

    def __init__(self, node_id: int, transport: TcpTransport, handler: Handler) -> None:
        self._prefix = b"f%d:" % node_id
        self._ids = itertools.count(1)
        self._transport = transport
        self._handler = handler
        self._waiting: dict[bytes, asyncio.Future[wire.ForwardReply]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.forwarded = 0
        """Requests this node sent to a leader (whatever their outcome)."""
        self.served = 0
        """Requests forwarded to this node by followers and executed here."""

    async def forward(self, leader: NodeId, body: bytes, timeout: float) -> wire.ForwardReply:
        """Send ``body`` to ``leader``; return its reply.

        Raises:
            WriteTimeoutError: no reply within ``timeout`` (outcome unknown).
            ProposalDroppedError: the request could not be queued (not sent).
        """
        request_id = self._prefix + str(next(self._ids)).encode()
        fut: asyncio.Future[wire.ForwardReply] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = fut
        try:
            if not self._transport.send(leader, Forward(request_id, body)):
                raise ProposalDroppedError(f"cannot queue a request to node {leader}", leader)
            self.forwarded += 1
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise WriteTimeoutError(f"no reply from leader {leader} in {timeout:.3f} s") from None
        finally:
            self._waiting.pop(request_id, None)

    def on_forward_resp(self, item: ForwardResp) -> None:
        """A reply arrived from the leader."""
        fut = self._waiting.get(item.request_id)
        if fut is None or fut.done():
            return
        try:
            fut.set_result(wire.decode_reply(item.body))
        except PeerProtocolError as exc:
            fut.set_exception(exc)

    def on_forward(self, frm: NodeId, item: Forward) -> None:
        """A follower forwarded a request: execute it in a task and reply."""
        self.served += 1
        task = asyncio.get_running_loop().create_task(self._serve(frm, item))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, frm: NodeId, item: Forward) -> None:
        try:
            kind, fields = wire.decode_request(item.body)
            reply = await self._handler(kind, fields)
        except ProposalDroppedError as exc:
            reply = wire.ForwardReply(wire.STATUS_REJECTED, 0, str(exc), exc.leader_hint)
        except WriteRejectedError as exc:
            reply = wire.ForwardReply(wire.STATUS_REJECTED, 0, str(exc), None)
        except OutcomeUnknownError as exc:
            reply = wire.ForwardReply(wire.STATUS_UNKNOWN, 0, str(exc), None)
        except (CremaError, ValueError, TypeError) as exc:
            reply = wire.ForwardReply(wire.STATUS_REJECTED, 0, f"bad request: {exc}", None)
        self._transport.send(frm, ForwardResp(item.request_id, wire.encode_reply(reply)))

    async def stop(self) -> None:
        """Cancel requests being served; fail forwarded ones awaiting a reply."""
        waiting, self._waiting = self._waiting, {}
        for fut in waiting.values():
            if not fut.done():
                fut.set_exception(LeadershipLostError("node shut down awaiting the leader's reply"))
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)

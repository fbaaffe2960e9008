"""Forwarding writes from a follower to the leader over the peer connection (layer L2).

Follower side: :meth:`Forwarder.forward` sends a ``Forward`` item to the
leader and waits for the ``ForwardResp`` with the same request id. Leader
side: :meth:`Forwarder.on_forward` proposes the request locally and answers
with the outcome (see :mod:`crema.node.wire`). A request whose reply does not
arrive in time has an unknown outcome (the leader may have applied it).

Batches: :meth:`Forwarder.submit` queues a command for the leader; at the
end of the loop turn the queued commands go as one ``Forward`` per leader
carrying up to :data:`~crema.node.wire.MAX_BATCH_ITEMS` commands (and
:data:`~crema.node.wire.MAX_BATCH_BYTES`), in submission order, and the
leader proposes them in that order and answers once with every reply, which
are matched back by position. A leader that does not understand batches
(an older version) refuses the whole batch: its commands fail as not
applied, and later ones go to that leader one ``Forward`` each.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from crema.errors import (
    CremaError,
    LeadershipLostError,
    OutcomeUnknownError,
    PeerProtocolError,
    ProposalDroppedError,
    ShutdownError,
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

Proposer = Callable[[bytes], "tuple[int, asyncio.Future[Any]] | wire.ForwardReply"]
"""Leader side: propose one encoded command now: ``(index, future of its encoded result)``,
or the reply refusing it."""


class _Batch:
    """Commands queued for one leader, sent together at the end of the loop turn."""

    __slots__ = ("bodies", "futures", "size")

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.futures: list[asyncio.Future[wire.ForwardReply]] = []
        self.size = 0


class Forwarder:
    """Both ends of request forwarding for one node.

    Args:
        node_id: this node (request ids are prefixed with it).
        transport: the peer transport.
        handler: the leader-side executor of forwarded requests.
    """

    def __init__(
        self,
        node_id: int,
        transport: TcpTransport,
        handler: Handler,
        proposer: Proposer | None = None,
    ) -> None:
        self._prefix = b"f%d:" % node_id
        self._ids = itertools.count(1)
        self._transport = transport
        self._handler = handler
        self._proposer = proposer
        self._waiting: dict[bytes, asyncio.Future[wire.ForwardReply]] = {}
        self._batches: dict[bytes, tuple[NodeId, list[asyncio.Future[wire.ForwardReply]]]] = {}
        self._queued: dict[NodeId, list[_Batch]] = {}
        self._unbatched: set[NodeId] = set()  # leaders that refused a batch (older version)
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
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

    def submit(self, leader: NodeId, command: bytes) -> asyncio.Future[wire.ForwardReply]:
        """Queue an encoded command for ``leader``; a future of its reply.

        Commands submitted one after the other reach the leader in that order.
        The future fails with ``WriteRejectedError`` when the leader refused
        the batch as a whole (definitely not applied) and with
        ``WriteTimeoutError`` via :meth:`expire` callers; it is never retried.
        """
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()  # kept: a lookup costs a getpid()
        fut: asyncio.Future[wire.ForwardReply] = loop.create_future()
        if leader in self._unbatched:
            body = wire.encode_request(wire.REQ_COMMAND, command)
            request_id = self._prefix + str(next(self._ids)).encode()
            self._waiting[request_id] = fut
            fut.add_done_callback(lambda _: self._waiting.pop(request_id, None))
            if not self._transport.send(leader, Forward(request_id, body)):
                fut.set_exception(ProposalDroppedError(f"cannot queue a request to {leader}"))
            self.forwarded += 1
            return fut
        batches = self._queued.get(leader)
        if batches is None:
            batches = self._queued[leader] = [_Batch()]
            if len(self._queued) == 1:
                loop.call_soon(self._send_batches)
        batch = batches[-1]
        if len(batch.bodies) >= wire.MAX_BATCH_ITEMS or (
            batch.size + len(command) > wire.MAX_BATCH_BYTES and batch.bodies
        ):
            batch = _Batch()
            batches.append(batch)
        batch.bodies.append(command)
        batch.futures.append(fut)
        batch.size += len(command)
        return fut

    def _send_batches(self) -> None:
        """Send what was queued this loop turn: one ``Forward`` per batch."""
        queued, self._queued = self._queued, {}
        for leader, batches in queued.items():
            for batch in batches:
                request_id = self._prefix + str(next(self._ids)).encode()
                self._batches[request_id] = (leader, batch.futures)
                _forget_when_done(self._batches, request_id, batch.futures)
                sent = self._transport.send(
                    leader, Forward(request_id, wire.encode_batch(batch.bodies))
                )
                if not sent:
                    self._batches.pop(request_id, None)
                    error = ProposalDroppedError(f"cannot queue a request to node {leader}")
                    _fail(batch.futures, error)
                    continue
                self.forwarded += len(batch.bodies)

    def on_forward_resp(self, item: ForwardResp) -> None:
        """A reply arrived from the leader."""
        batch = self._batches.pop(item.request_id, None)
        if batch is not None:
            self._on_batch_reply(item, *batch)
            return
        fut = self._waiting.get(item.request_id)
        if fut is None or fut.done():
            return
        try:
            fut.set_result(wire.decode_reply(item.body))
        except PeerProtocolError as exc:
            fut.set_exception(exc)

    def _on_batch_reply(
        self, item: ForwardResp, leader: NodeId, futures: list[asyncio.Future[wire.ForwardReply]]
    ) -> None:
        try:
            replies = wire.decode_batch_reply(item.body, len(futures))
        except PeerProtocolError as exc:
            _fail(futures, exc)
            return
        if isinstance(replies, wire.ForwardReply):  # the batch as a whole was refused
            message = f"leader {leader} refused a batch of forwarded writes: {replies.value}"
            if "unknown forward kind" in str(replies.value):
                message += " (an older crema version; later writes go to it one by one)"
                self._unbatched.add(leader)
            if replies.status == wire.STATUS_UNKNOWN:
                _fail(futures, LeadershipLostError(message))
            else:
                _fail(futures, ProposalDroppedError(message, replies.leader_hint))
            return
        for fut, reply in zip(futures, replies, strict=True):
            if not fut.done():
                fut.set_result(reply)

    def on_forward(self, frm: NodeId, item: Forward) -> None:
        """A follower forwarded a request: execute it (a batch at once, else in a task); reply."""
        if self._proposer is not None and item.body[:2] == b"\x92\x04":  # [4, [...]]: a batch
            self._serve_batch(frm, item, self._proposer)
            return
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

    def _serve_batch(self, frm: NodeId, item: Forward, proposer: Proposer) -> None:
        """Propose a batch's commands now, in order; answer once every one has an outcome."""
        try:
            kind, fields = wire.decode_request(item.body)
            if kind != wire.REQ_BATCH:
                raise PeerProtocolError(f"forward kind {kind} is not a batch")
            commands = wire.batch_commands(fields)
        except PeerProtocolError as exc:
            reply = wire.ForwardReply(wire.STATUS_REJECTED, 0, f"bad request: {exc}", None)
            self._transport.send(frm, ForwardResp(item.request_id, wire.encode_reply(reply)))
            return
        self.served += len(commands)
        replies: list[wire.ForwardReply | None] = [None] * len(commands)
        proposed: list[tuple[int, int, asyncio.Future[Any]]] = []  # (position, index, future)
        for position, data in enumerate(commands):
            outcome = proposer(data)
            if isinstance(outcome, wire.ForwardReply):
                replies[position] = outcome
            else:
                proposed.append((position, *outcome))

        def answer() -> None:
            for position, index, fut in proposed:
                replies[position] = _outcome(fut, index)
            done = [r for r in replies if r is not None]
            self._transport.send(frm, ForwardResp(item.request_id, wire.encode_batch_reply(done)))

        _when_all_done([fut for _, _, fut in proposed], answer)

    async def stop(self) -> None:
        """Cancel requests being served; fail forwarded ones awaiting a reply."""
        waiting, self._waiting = self._waiting, {}
        for fut in waiting.values():
            if not fut.done():
                fut.set_exception(LeadershipLostError("node shut down awaiting the leader's reply"))
        batches, self._batches = self._batches, {}
        for _, futures in batches.values():
            _fail(futures, LeadershipLostError("node shut down awaiting the leader's reply"))
        queued, self._queued = self._queued, {}
        for queue in queued.values():
            for batch in queue:
                _fail(batch.futures, ShutdownError("node shut down before the write was sent"))
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)


def _outcome(fut: asyncio.Future[Any], index: int) -> wire.ForwardReply:
    """The reply for a proposed command's settled future."""
    if fut.cancelled():
        return wire.ForwardReply(wire.STATUS_UNKNOWN, 0, "cancelled", None)
    exc = fut.exception()
    if exc is None:
        return wire.ForwardReply(wire.STATUS_OK, index, wire.encode_result(fut.result()), None)
    if isinstance(exc, ProposalDroppedError):
        return wire.ForwardReply(wire.STATUS_REJECTED, 0, str(exc), exc.leader_hint)
    if isinstance(exc, WriteRejectedError):
        return wire.ForwardReply(wire.STATUS_REJECTED, 0, str(exc), None)
    return wire.ForwardReply(wire.STATUS_UNKNOWN, 0, str(exc), None)


def _fail(futures: list[asyncio.Future[Any]], exc: BaseException) -> None:
    for fut in futures:
        if not fut.done():
            fut.set_exception(exc)


def _forget_when_done(
    table: dict[bytes, Any], key: bytes, futures: list[asyncio.Future[wire.ForwardReply]]
) -> None:
    """Drop ``table[key]`` once every future is done (a reply, a timeout or a failure)."""
    _when_all_done(futures, lambda: table.pop(key, None))


def _when_all_done(futures: list[asyncio.Future[Any]], action: Callable[[], object]) -> None:
    """Run ``action`` once every future is done (at once when there are none).

    They are settled together (a reply, a failure) or in order (applies,
    timeouts): one callback on the last, which waits on any other still pending.
    """

    def check(_: object = None) -> None:
        for fut in futures:
            if not fut.done():
                fut.add_done_callback(check)
                return
        action()

    if futures:
        futures[-1].add_done_callback(check)
    else:
        check()

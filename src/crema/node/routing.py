"""Where a write goes: proposed here when leading, else forwarded to the leader (layer L2).

Until the write timeout, a write that is refused before being proposed (no
leader known, leader unreachable, leadership transfer in progress, the
leader changed) is tried again; only then does it fail with
:class:`UnavailableError` (definitely not applied). Once a write has been
proposed or sent, it is never retried: a lost reply surfaces as an
:class:`OutcomeUnknownError`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from functools import partial
from typing import Any

from crema.cache.codec import decode_command, encode_command
from crema.cache.commands import Command
from crema.cache.results import Result
from crema.errors import (
    CremaError,
    LeadershipLostError,
    OutcomeUnknownError,
    ProposalDroppedError,
    UnavailableError,
    WriteRejectedError,
    WriteTimeoutError,
)
from crema.node import wire
from crema.node.discovery import known_addresses
from crema.node.forward import Forwarder
from crema.node.replica import Replica
from crema.raft.confchange import ConfChange, ConfChangeType
from crema.raft.types import NodeId


class Router:
    """Runs writes, membership changes and transfers from any node."""

    def __init__(self, replica: Replica) -> None:
        self._replica = replica
        self.forwarder: Forwarder | None = None
        # Forwarded writes' deadlines, swept on the node's ticks (no timer per write):
        # (deadline, result, the leader's reply, leader).
        self._deadlines: deque[
            tuple[float, asyncio.Future[Result], asyncio.Future[Any], NodeId]
        ] = deque()
        replica.tick_hooks.append(self.expire)

    async def execute(self, command: Command) -> Result:
        """Run ``command`` through Raft; its result once applied on this node."""
        if self._replica.is_leader():  # the common case: no request body to build
            try:
                return (await self._replica.propose_command(command))[1]
            except ProposalDroppedError:
                pass  # lost the lead meanwhile: route as below
        body = wire.encode_request(wire.REQ_COMMAND, encode_command(command))
        result: Result = await self._run(lambda: self._replica.propose_command(command), body)
        return result

    def submit(self, command: Command) -> asyncio.Future[Result] | None:
        """Propose (leader) or forward (follower) ``command`` now; a future of its result.

        Commands submitted one after the other apply in that order (see
        ``Backend.submit``); a refused one fails (``WriteRejectedError``) and is
        not retried. None when it cannot be sent now (no leader known or
        reachable, shutting down): :meth:`execute` waits and retries then.
        """
        replica = self._replica
        if replica.closed:
            return None
        if replica.is_leader():
            try:
                return replica.submit_command(command)[1]
            except ProposalDroppedError:
                return None
        leader = replica.leader_id()
        forwarder = self.forwarder
        if leader is None or leader == replica.id or forwarder is None:
            return None
        leader = NodeId(leader)
        if not replica.transport.is_connected(leader):
            return None
        loop = replica.loop()
        result: asyncio.Future[Result] = loop.create_future()
        replied = forwarder.submit(leader, encode_command(command))
        self._deadlines.append((loop.time() + replica.write_timeout, result, replied, leader))
        replied.add_done_callback(partial(self._forwarded, result, leader))
        return result

    def expire(self, now: float) -> None:
        """Fail the forwarded writes whose deadline passed (outcome unknown); forget them.

        Deadlines only grow, and writes mostly finish in order, so finished
        ones at the front go too: the queue holds about one tick of writes.
        """
        deadlines = self._deadlines
        while deadlines:
            deadline, result, replied, leader = deadlines[0]
            if deadline > now and not (result.done() and replied.done()):
                return
            deadlines.popleft()
            if not result.done():
                timeout = self._replica.write_timeout
                result.set_exception(
                    WriteTimeoutError(f"no reply from leader {leader} in {timeout:.3f} s")
                )
            if not replied.done():
                replied.cancel()  # the forwarder forgets the request

    def _forwarded(
        self, result: asyncio.Future[Result], leader: NodeId, replied: asyncio.Future[Any]
    ) -> None:
        """The leader answered a submitted command: wait until it is applied here too."""
        try:
            index, value = _forward_outcome(leader, replied)
        except (CremaError, asyncio.CancelledError) as exc:
            if not result.done():
                result.set_exception(
                    exc if isinstance(exc, CremaError) else LeadershipLostError("cancelled")
                )
            return
        if result.done():
            return  # timed out already
        replica = self._replica
        replica.applied_waiters.call_when(
            index, replica.sm.applied_index, partial(_settle, result, value)
        )

    def propose_forwarded(self, data: bytes) -> tuple[int, asyncio.Future[Any]] | wire.ForwardReply:
        """Leader side of a forwarded batch: propose one encoded command now.

        Returns:
            ``(index, future of its result)``, or the reply refusing it (not proposed).
        """
        replica = self._replica
        if not replica.is_leader():
            message = f"node {replica.id} is not the leader"
            return wire.ForwardReply(wire.STATUS_REJECTED, 0, message, replica.leader_id())
        try:
            index, fut = replica.submit_command(decode_command(data))
        except ProposalDroppedError as exc:
            return wire.ForwardReply(wire.STATUS_REJECTED, 0, str(exc), exc.leader_hint)
        except WriteRejectedError as exc:
            return wire.ForwardReply(wire.STATUS_REJECTED, 0, str(exc), None)
        except (CremaError, ValueError, TypeError) as exc:
            return wire.ForwardReply(wire.STATUS_REJECTED, 0, f"bad request: {exc}", None)
        replica.commit_wanted(index)  # the follower waits to apply it
        return index, fut

    async def conf_change(self, change: ConfChange) -> None:
        """Propose a membership change from any node."""
        body = wire.encode_request(
            wire.REQ_CONF_CHANGE, int(change.type), change.node_id, change.context.decode()
        )
        await self._run(lambda: self._replica.propose_conf_change(change), body)

    async def transfer(self, to: NodeId) -> None:
        """Ask the leader to hand leadership to ``to``; wait until ``to`` leads."""
        replica = self._replica
        body = wire.encode_request(wire.REQ_TRANSFER, int(to))
        await self._run(lambda: self._transfer_here(to), body)
        deadline = asyncio.get_running_loop().time() + replica.write_timeout
        while replica.leader_id() != to:
            if asyncio.get_running_loop().time() > deadline:
                raise WriteTimeoutError(f"node {to} did not take over in time")
            await asyncio.sleep(replica.tick_s)

    async def rejoin(self) -> None:
        """After discarding local state: ask the leader to probe this node from scratch."""
        replica = self._replica
        body = wire.encode_request(wire.REQ_REJOIN, int(replica.id))
        while not replica.closed:
            try:
                await self._run(self._refuse_locally, body)
                return
            except (WriteRejectedError, OutcomeUnknownError):
                await asyncio.sleep(replica.tick_s * 10)

    async def _refuse_locally(self) -> tuple[int, Result]:
        raise ProposalDroppedError("a node that discarded its state cannot lead")

    async def _transfer_here(self, to: NodeId) -> tuple[int, Result]:
        self._replica.node.transfer_leadership(to)
        self._replica.wake()
        return 0, None

    async def _run(self, local: Any, body: bytes) -> Any:
        replica = self._replica
        loop = asyncio.get_running_loop()
        deadline = loop.time() + replica.write_timeout
        last: Exception | None = None
        while True:
            replica._check_open()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise UnavailableError(f"no leader accepted the request in time ({last})")
            try:
                if replica.is_leader():
                    return (await local())[1]
                leader = replica.leader_id()
                if leader is not None and leader != replica.id:
                    leader = NodeId(leader)
                    if replica.transport.is_connected(leader):
                        return await self._forward(leader, body, remaining)
                    last = UnavailableError(f"leader {leader} is unreachable")
                else:
                    last = UnavailableError("no leader known")
            except ProposalDroppedError as exc:  # not proposed: safe to try again
                last = exc
            await asyncio.sleep(min(replica.tick_s, max(0.0, deadline - loop.time())))

    async def _forward(self, leader: NodeId, body: bytes, timeout: float) -> Result:
        replica = self._replica
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        assert self.forwarder is not None
        reply = await self.forwarder.forward(leader, body, timeout)
        if reply.status == wire.STATUS_REJECTED:
            raise ProposalDroppedError(str(reply.value), reply.leader_hint)
        if reply.status == wire.STATUS_UNKNOWN:
            raise LeadershipLostError(f"leader {leader}: {reply.value}")
        result = wire.decode_result(reply.value)
        waiter = replica.applied_waiters.wait(reply.index, replica.sm.applied_index)
        try:
            await asyncio.wait_for(waiter, max(0.0, deadline - loop.time()))
        except TimeoutError:
            raise WriteTimeoutError(
                f"applied on the leader at {reply.index}, not yet here"
            ) from None
        return result

    async def serve_forwarded(self, kind: int, fields: list[object]) -> wire.ForwardReply:
        """Leader side: execute a forwarded request; the reply to send back."""
        replica = self._replica
        if not replica.is_leader():
            raise ProposalDroppedError(f"node {replica.id} is not the leader", replica.leader_id())
        if kind == wire.REQ_COMMAND:
            data = fields[0] if fields else None
            if not isinstance(data, bytes):
                raise WriteRejectedError("forwarded command is not bytes")
            index, fut = replica.submit_command(decode_command(data))
            replica.commit_wanted(index)  # the follower waits to apply it
            result = await fut
            return wire.ForwardReply(wire.STATUS_OK, index, wire.encode_result(result), None)
        if kind == wire.REQ_PEERS:
            return wire.ForwardReply(wire.STATUS_OK, 0, known_addresses(replica), None)
        if kind == wire.REQ_CONF_CHANGE:
            change_type, node, addr = fields
            change = ConfChange(
                ConfChangeType(int(change_type)),  # type: ignore[call-overload]
                NodeId(int(node)),  # type: ignore[call-overload]
                str(addr).encode(),
            )
            index, _ = await replica.propose_conf_change(change)
            return wire.ForwardReply(wire.STATUS_OK, index, wire.encode_result(None), None)
        node = NodeId(int(fields[0]))  # type: ignore[call-overload]
        if kind == wire.REQ_REJOIN:
            replica.forget_progress(node)
        else:
            await self._transfer_here(node)
        return wire.ForwardReply(wire.STATUS_OK, 0, wire.encode_result(None), None)


def _settle(result: asyncio.Future[Result], value: Result, exc: BaseException | None) -> None:
    """An applied-index wait ended: ``result`` gets the write's result, or the wait's error."""
    if result.done():
        return
    if exc is not None:
        result.set_exception(exc)
    else:
        result.set_result(value)


def _forward_outcome(leader: NodeId, replied: asyncio.Future[Any]) -> tuple[int, Result]:
    """``(index, result)`` of a forwarded command's reply.

    Raises:
        ProposalDroppedError: the leader refused it (not applied).
        LeadershipLostError: its outcome is unknown.
        PeerProtocolError: the reply is malformed.
    """
    reply: wire.ForwardReply = replied.result()
    if reply.status == wire.STATUS_REJECTED:
        raise ProposalDroppedError(str(reply.value), reply.leader_hint)
    if reply.status == wire.STATUS_UNKNOWN:
        raise LeadershipLostError(f"leader {leader}: {reply.value}")
    return reply.index, wire.decode_result(reply.value)

"""Submitted writes: in order from leader and follower, batched forwarding and its error paths."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import msgpack
import pytest

from crema.cache.codec import encode_command
from crema.cache.commands import IncrBy, Set
from crema.errors import PeerProtocolError, ProposalDroppedError
from crema.node import wire
from crema.node.forward import Forwarder
from crema.raft.types import NodeId
from crema.transport.codec import Forward, ForwardResp
from crema.transport.tcp import TcpTransport
from tests.node.harness import start_cluster, stop_all, wait_until


def test_submissions_apply_in_order_on_leader_and_follower(tmp_path: Path) -> None:
    async def main() -> None:
        nodes, _ = await start_cluster(tmp_path, storage="memory")
        try:
            leader = next(n for n in nodes.values() if n.is_leader())
            follower = next(n for n in nodes.values() if not n.is_leader())
            for node, key in ((leader, b"on-leader"), (follower, b"on-follower")):
                futures = []
                for i in range(600):  # more than two batches' worth
                    command = IncrBy(key, 1, node.clock_ms())
                    if i % 3 == 0:
                        command = Set(key + b":s", str(i).encode(), node.clock_ms())  # type: ignore[assignment]
                    submitted = node.submit(command)
                    assert submitted is not None
                    futures.append(submitted)
                results = await asyncio.gather(*futures)
                counts = [r for i, r in enumerate(results) if i % 3]
                assert counts == list(range(1, len(counts) + 1))  # applied in submission order
                assert await node.get(key) == str(len(counts)).encode()  # read your writes
            await wait_until(lambda: len({n.raft_index() for n in nodes.values()}) == 1)
        finally:
            await stop_all(nodes)

    asyncio.run(main())


class _Capture:
    """A transport stand-in that records what is sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, Any]] = []

    def send(self, to: int, item: Any) -> bool:
        self.sent.append((to, item))
        return True


async def _no_handler(kind: int, fields: list[object]) -> wire.ForwardReply:
    raise AssertionError("not used")


def test_a_leader_that_does_not_know_batches() -> None:
    async def main() -> None:
        transport = _Capture()
        forwarder = Forwarder(2, cast(TcpTransport, transport), _no_handler)
        leader = NodeId(1)
        futures = [forwarder.submit(leader, b"cmd%d" % i) for i in range(3)]
        await asyncio.sleep(0)
        assert len(transport.sent) == 1  # one Forward for the three
        to, item = transport.sent[0]
        assert to == 1 and isinstance(item, Forward)
        assert wire.decode_request(item.body) == (wire.REQ_BATCH, [[b"cmd0", b"cmd1", b"cmd2"]])
        # What a leader of an older version answers: one plain rejection.
        old = wire.ForwardReply(
            wire.STATUS_REJECTED, 0, "bad request: unknown forward kind 4", None
        )
        forwarder.on_forward_resp(ForwardResp(item.request_id, wire.encode_reply(old)))
        for fut in futures:
            with pytest.raises(ProposalDroppedError, match="older crema version"):
                await fut
        single = forwarder.submit(leader, b"next")
        ((_, item),) = transport.sent[1:]
        assert wire.decode_request(item.body) == (wire.REQ_COMMAND, [b"next"])
        reply = wire.ForwardReply(wire.STATUS_OK, 7, wire.encode_result(None), None)
        forwarder.on_forward_resp(ForwardResp(item.request_id, wire.encode_reply(reply)))
        assert (await single).index == 7

    asyncio.run(main())


def test_replies_are_matched_back_in_order_and_batches_are_bounded() -> None:
    async def main() -> None:
        transport = _Capture()
        forwarder = Forwarder(2, cast(TcpTransport, transport), _no_handler)
        count = wire.MAX_BATCH_ITEMS + 10
        futures = [forwarder.submit(NodeId(1), b"c%d" % i) for i in range(count)]
        await asyncio.sleep(0)
        sizes = [len(wire.decode_request(item.body)[1][0]) for _, item in transport.sent]
        assert sizes == [wire.MAX_BATCH_ITEMS, 10]
        for _, item in transport.sent:
            n = len(wire.decode_request(item.body)[1][0])
            first = len([f for f in futures if f.done()])
            replies = [
                wire.ForwardReply(wire.STATUS_OK, first + i + 1, wire.encode_result(None), None)
                for i in range(n)
            ]
            forwarder.on_forward_resp(
                ForwardResp(item.request_id, wire.encode_batch_reply(replies))
            )
        indexes = [(await f).index for f in futures]
        assert indexes == list(range(1, count + 1))

    asyncio.run(main())


def test_a_leader_serves_a_batch_in_order_and_refuses_a_bad_one() -> None:
    async def main() -> None:
        transport = _Capture()
        proposed: list[bytes] = []
        loop = asyncio.get_running_loop()
        pending: list[asyncio.Future[Any]] = []

        def proposer(data: bytes) -> tuple[int, asyncio.Future[Any]] | wire.ForwardReply:
            if data == b"refuse":
                return wire.ForwardReply(wire.STATUS_REJECTED, 0, "no", None)
            proposed.append(data)
            fut: asyncio.Future[Any] = loop.create_future()
            pending.append(fut)
            return len(proposed), fut

        forwarder = Forwarder(1, cast(TcpTransport, transport), _no_handler, proposer)
        body = wire.encode_batch([b"a", b"refuse", b"b"])
        forwarder.on_forward(NodeId(2), Forward(b"r1", body))
        assert proposed == [b"a", b"b"]  # proposed at once, in order
        assert not transport.sent  # the answer waits for every outcome
        pending[1].set_result(5)
        pending[0].set_result(None)
        await asyncio.sleep(0)
        ((to, item),) = transport.sent
        assert to == 2 and isinstance(item, ForwardResp) and item.request_id == b"r1"
        replies = wire.decode_batch_reply(item.body, 3)
        assert isinstance(replies, list)
        assert [(r.status, r.index) for r in replies] == [
            (wire.STATUS_OK, 1), (wire.STATUS_REJECTED, 0), (wire.STATUS_OK, 2)
        ]  # fmt: skip
        assert wire.decode_result(replies[2].value) == 5
        too_many = msgpack.packb([wire.REQ_BATCH, [b"x"] * (wire.MAX_BATCH_ITEMS + 1)])
        forwarder.on_forward(NodeId(2), Forward(b"r2", too_many))
        refused = wire.decode_batch_reply(transport.sent[-1][1].body, 1)
        assert isinstance(refused, wire.ForwardReply)
        assert refused.status == wire.STATUS_REJECTED and "bad request" in refused.value
        assert proposed == [b"a", b"b"]

    asyncio.run(main())


def test_batch_decoding_is_bounded() -> None:
    with pytest.raises(PeerProtocolError):
        wire.decode_request(msgpack.packb([wire.REQ_BATCH, [b"x"] * (wire.MAX_BATCH_ITEMS + 1)]))
    with pytest.raises(PeerProtocolError):
        wire.batch_commands([[1, 2]])
    with pytest.raises(ValueError, match="batch holds"):
        wire.encode_batch([])
    assert wire.decode_request(wire.encode_batch([encode_command(IncrBy(b"k", 1, 0))]))[0] == 4


def test_a_forwarded_request_that_times_out_is_forgotten() -> None:
    async def main() -> None:
        transport = _Capture()
        forwarder = Forwarder(2, cast(TcpTransport, transport), _no_handler)
        futures = [forwarder.submit(NodeId(1), b"c%d" % i) for i in range(3)]
        await asyncio.sleep(0)
        assert len(forwarder._batches) == 1
        futures[0].cancel()  # what the router does when its timer fires
        futures[1].set_exception(ProposalDroppedError("gone", None))
        futures[1].exception()
        await asyncio.sleep(0)  # done callbacks run
        assert len(forwarder._batches) == 1  # one still waits for the leader
        futures[2].cancel()
        await asyncio.sleep(0)
        assert not forwarder._batches
        ((_, item),) = transport.sent  # a late reply is ignored
        forwarder.on_forward_resp(ForwardResp(item.request_id, wire.encode_batch_reply([])))

    asyncio.run(main())

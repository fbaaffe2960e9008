"""An authenticated or unauthenticated peer misbehaving on a real socket."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from crema.raft.types import NodeId, SnapshotMeta
from crema.transport.codec import Auth, Forward, Lane, Payload, SnapshotChunk, encode, encode_frame
from crema.transport.config import parse_addr
from crema.transport.conn import accept, dial
from crema.transport.tcp import TcpTransport
from tests.transport.harness import CLUSTER, FAST, SECRET, Inbox, heartbeat, make, wait_until

pytestmark = pytest.mark.timeout(60)


async def _victim(box: Inbox) -> TcpTransport:
    a = make(1, box, peers={2: "127.0.0.1:1"}, config=replace(FAST, handshake_timeout=0.3))
    await a.start()
    return a


async def _inject(a: TcpTransport, lane: Lane, *items: Payload | bytes) -> bytes:
    """Authenticate as node 2, write ``items``, return what the victim sent back before EOF."""
    host, port = parse_addr(a.address)
    reader, writer = await dial(
        host,
        port,
        node_id=NodeId(2),
        peer_id=NodeId(1),
        cluster_id=CLUSTER,
        secret=SECRET,
        lane=lane,
        config=FAST,
    )
    for item in items:
        writer.write(item if isinstance(item, bytes) else encode_frame(encode(item)))
    await writer.drain()
    try:
        async with asyncio.timeout(5):
            return await reader.read()
    finally:
        writer.close()


@pytest.mark.parametrize(
    ("lane", "bad"),
    [
        (Lane.RAFT, heartbeat(3, 1)),  # claims to come from node 3
        (Lane.RAFT, heartbeat(2, 5)),  # addressed to another node
        (Lane.RAFT, Auth(b"")),  # handshake message after the handshake
        (Lane.RAFT, SnapshotChunk(SnapshotMeta(), 0, b"x")),  # chunk on the Raft lane
        (Lane.SNAPSHOT, heartbeat(2, 1)),  # Raft message on the snapshot lane
        (Lane.RAFT, b"\x00\x00\x00\x03abc"),  # garbage payload
        (Lane.RAFT, b"\x7f\xff\xff\xff"),  # 2 GiB frame announced
    ],
    ids=["spoofed-from", "wrong-to", "auth-again", "chunk-lane", "raft-on-snap", "garbage", "huge"],
)
def test_authenticated_peer_breaking_protocol_is_dropped(lane: Lane, bad: Payload | bytes) -> None:
    async def main() -> None:
        box = Inbox()
        a = await _victim(box)
        try:
            good = heartbeat(2, 1) if lane is Lane.RAFT else SnapshotChunk(SnapshotMeta(), 0, b"")
            trailing = Forward(b"after", b"never delivered")
            assert await _inject(a, lane, good, bad, trailing) == b""
            await wait_until(lambda: a.stats().protocol_errors == 1)
            assert [item for _, _, item in box.items] == [good]
        finally:
            await a.stop()

    asyncio.run(main())


def test_silent_connection_is_dropped_after_handshake_timeout() -> None:
    async def main() -> None:
        box = Inbox()
        a = await _victim(box)
        try:
            host, port = parse_addr(a.address)
            reader, writer = await asyncio.open_connection(host, port)
            async with asyncio.timeout(5):
                assert await reader.read() == b""  # closed by the victim, not by us
            writer.close()
            assert a.stats().rejected_handshakes == 1
        finally:
            await a.stop()

    asyncio.run(main())


def test_wrong_target_node_is_refused() -> None:
    async def main() -> None:
        box = Inbox()
        a = await _victim(box)
        b = make(2, Inbox(), peers={3: a.address})  # believes node 3 lives there
        await b.start()
        try:
            b.send(3, heartbeat(2, 3))
            await wait_until(lambda: a.stats().rejected_handshakes >= 1)
            assert box.items == []
        finally:
            await a.stop()
            await b.stop()

    asyncio.run(main())


def test_peer_moving_to_a_new_address_is_followed() -> None:
    async def main() -> None:
        box_b1, box_b2 = Inbox(), Inbox()
        a = make(1, Inbox())
        b1 = make(2, box_b1)
        b2 = make(2, box_b2)
        for t in (a, b1, b2):
            await t.start()
        try:
            a.add_peer(2, b1.address)
            b1.add_peer(1, a.address)
            b2.add_peer(1, a.address)
            a.send(2, heartbeat(1, 2))
            await wait_until(lambda: len(box_b1.items) == 1)
            a.add_peer(2, b2.address)
            while not box_b2.items:
                a.send(2, heartbeat(1, 2))
                await asyncio.sleep(0.01)
            assert a.stats().peers[NodeId(2)].addr == b2.address
        finally:
            for t in (a, b1, b2):
                await t.stop()

    asyncio.run(main())


def test_pending_handshakes_are_bounded() -> None:
    async def main() -> None:
        config = replace(FAST, max_pending_handshakes=2, handshake_timeout=5.0)
        a = make(1, Inbox(), peers={2: "127.0.0.1:1"}, config=config)
        await a.start()
        host, port = parse_addr(a.address)
        silent = [await asyncio.open_connection(host, port) for _ in range(2)]
        try:
            await wait_until(lambda: a._pending == 2)
            reader, writer = await asyncio.open_connection(host, port)
            async with asyncio.timeout(2):  # refused at once, long before the handshake timeout
                assert await reader.read() == b""
            writer.close()
            assert a.stats().rejected_handshakes == 1
        finally:
            for _, w in silent:
                w.close()
            await a.stop()

    asyncio.run(main())


def test_peer_that_stops_reading_is_redialed_after_write_timeout() -> None:
    async def main() -> None:
        held: list[asyncio.StreamWriter] = []

        async def stuck_acceptor(reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            await accept(
                reader,
                w,
                node_id=NodeId(2),
                cluster_id=CLUSTER,
                secret=SECRET,
                is_known_peer=lambda n: n == 1,
                timeout=5,
            )
            held.append(w)  # authenticated, then never reads again

        server = await asyncio.start_server(stuck_acceptor, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        config = replace(FAST, write_timeout=0.3)
        a = make(1, Inbox(), peers={2: f"127.0.0.1:{port}"}, config=config)
        await a.start()
        try:
            blob = b"x" * (1 << 20)
            while a.stats().peers[NodeId(2)].reconnects < 1:
                a.send(2, Forward(b"fill", blob))
                await asyncio.sleep(0.01)
        finally:
            await a.stop()
            for w in held:
                w.close()
            server.close()

    asyncio.run(main())


def test_callback_error_drops_only_that_stream() -> None:
    async def main() -> None:
        calls: list[int] = []

        def flaky(frm: NodeId, kind: object, item: object) -> None:
            calls.append(frm)
            if len(calls) == 1:
                raise RuntimeError("bug in the node")

        a = TcpTransport(1, "127.0.0.1:0", {}, CLUSTER, SECRET, flaky, config=FAST)
        b = make(2, Inbox())
        await a.start()
        await b.start()
        a.add_peer(2, b.address)
        b.add_peer(1, a.address)
        try:
            while len(calls) < 2:
                b.send(1, heartbeat(2, 1))
                await asyncio.sleep(0.01)
            with pytest.raises(ValueError, match="message from 3"):
                b.send(1, heartbeat(3, 1))
        finally:
            await a.stop()
            await b.stop()

    asyncio.run(main())

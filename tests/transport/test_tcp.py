"""TcpTransport over real loopback sockets: delivery, reconnects, bounds, security."""

from __future__ import annotations

import asyncio
import socket
import zlib
from dataclasses import replace

import pytest

from crema.errors import ConfigError, FrameTooLargeError
from crema.raft.types import ConfState, Index, NodeId, SnapshotMeta, Term
from crema.transport.codec import (
    Forward,
    ForwardResp,
    Kind,
    SnapshotAck,
    SnapshotChunk,
    encode,
    encode_frame,
)
from crema.transport.config import TransportConfig
from tests.transport.harness import (
    FAST,
    SECRET,
    Inbox,
    heartbeat,
    make,
    start_mesh,
    stop_all,
    wait_until,
)

pytestmark = pytest.mark.timeout(60)


def test_three_transports_exchange_messages() -> None:
    async def main() -> None:
        nodes, inboxes = await start_mesh([1, 2, 3])
        try:
            for i, t in nodes.items():
                for j in nodes:
                    if i != j:
                        assert t.send(j, heartbeat(i, j, commit=10 * i + j))
            await wait_until(lambda: all(len(b.items) == 2 for b in inboxes.values()))
            for j, box in inboxes.items():
                for frm, kind, item in box.items:
                    assert kind is Kind.RAFT
                    assert item == heartbeat(frm, j, commit=10 * frm + j)
            nodes[2].send(1, Forward(b"req-1", b"SET k v"))
            await wait_until(lambda: bool(inboxes[1].of_kind(Kind.FORWARD)))
            nodes[1].send(2, ForwardResp(b"req-1", b"OK"))
            nodes[1].send(2, SnapshotAck(5, 2, 100, True))
            await wait_until(lambda: len(inboxes[2].items) == 4)
            assert inboxes[2].of_kind(Kind.FORWARD_RESP) == [ForwardResp(b"req-1", b"OK")]
            stats = nodes[1].stats()
            assert stats.peers[NodeId(2)].connected
            assert nodes[1].is_connected(2)
            assert not nodes[1].is_connected(7)
            assert stats.sent >= 3
            assert stats.dropped == 0
        finally:
            await stop_all(nodes)

    asyncio.run(main())


def test_peer_down_then_up_is_connected_by_backoff() -> None:
    async def main() -> None:
        box_a, box_b = Inbox(), Inbox()
        probe = make(2, Inbox())
        await probe.start()
        addr_b = probe.address
        await probe.stop()  # now nothing listens at addr_b
        a = make(1, box_a, peers={2: addr_b})
        await a.start()
        for n in range(5):
            assert a.send(2, heartbeat(1, 2, commit=n))  # queued while B is down
        await wait_until(lambda: a.stats().peers[NodeId(2)].connect_failures >= 2)
        assert not a.stats().peers[NodeId(2)].connected
        b = make(2, box_b, listen=addr_b, peers={1: a.address})
        await b.start()
        try:
            await wait_until(lambda: len(box_b.items) == 5)
            assert [m.commit for _, _, m in box_b.items] == list(range(5))  # type: ignore[union-attr]
            assert a.stats().peers[NodeId(2)].connected
        finally:
            await a.stop()
            await b.stop()

    asyncio.run(main())


def test_queue_is_bounded_while_peer_is_down() -> None:
    async def main() -> None:
        probe = make(2, Inbox())
        await probe.start()
        dead = probe.address
        await probe.stop()
        config = replace(FAST, queue_messages=100)
        a = make(1, Inbox(), peers={2: dead}, config=config)
        await a.start()
        try:
            accepted = sum(a.send(2, heartbeat(1, 2)) for _ in range(1000))
            assert accepted == 100
            stats = a.stats()
            assert stats.peers[NodeId(2)].queued == 100
            assert stats.dropped == 900
            assert not a.send(99, heartbeat(1, 99))  # unknown peer: dropped, counted
            assert a.stats().dropped == 901
        finally:
            await a.stop()
        config = replace(FAST, queue_bytes=10_000)
        a = make(1, Inbox(), peers={2: dead}, config=config)
        await a.start()
        try:
            for _ in range(100):
                a.send(2, Forward(b"id", b"v" * 1000))
            peer = a.stats().peers[NodeId(2)]
            assert peer.queued_bytes <= 10_000
            assert peer.queued == peer.queued_bytes // len(
                encode_frame(encode(Forward(b"id", b"v" * 1000)))
            )
            assert peer.dropped == 100 - peer.queued
        finally:
            await a.stop()

    asyncio.run(main())


def test_peer_without_secret_cannot_inject() -> None:
    async def main() -> None:
        box_a = Inbox()
        a = make(1, box_a, secret=SECRET)
        await a.start()
        a.add_peer(2, "127.0.0.1:1")  # id 2 is a member; its real address does not matter
        intruders = [
            make(2, Inbox(), peers={1: a.address}, secret=None),
            make(2, Inbox(), peers={1: a.address}, secret=b"guessed wrong"),
            make(2, Inbox(), peers={1: a.address}, cluster="other-cluster"),
        ]
        try:
            for evil in intruders:
                await evil.start()
                evil.send(1, heartbeat(2, 1))
                evil.send(1, Forward(b"x", b"FLUSHALL"))
            await wait_until(lambda: a.stats().rejected_handshakes >= 3)
            await asyncio.sleep(0.1)
            assert box_a.items == []
            assert not any(e.stats().peers[NodeId(1)].connected for e in intruders)
        finally:
            await a.stop()
            for evil in intruders:
                await evil.stop()

    asyncio.run(main())


def test_raw_frames_without_handshake_are_dropped() -> None:
    async def main() -> None:
        box = Inbox()
        a = make(1, box, peers={2: "127.0.0.1:1"})
        await a.start()
        try:
            host, port = a.address.rsplit(":", 1)
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(encode_frame(encode(heartbeat(2, 1))))
            await writer.drain()
            assert await reader.read() == b""  # the acceptor hung up
            writer.close()
            assert box.items == []
            assert a.stats().rejected_handshakes == 1
        finally:
            await a.stop()

    asyncio.run(main())


def test_oversize_frame_drops_connection() -> None:
    async def main() -> None:
        small = replace(FAST, max_frame=64 * 1024)
        box_a = Inbox()
        a = make(1, box_a, config=small)
        b = make(2, Inbox())  # default 16 MiB limit on the sending side
        await a.start()
        await b.start()
        a.add_peer(2, b.address)
        b.add_peer(1, a.address)
        try:
            assert b.send(1, Forward(b"big", b"x" * 100_000))
            await wait_until(lambda: a.stats().protocol_errors == 1)
            assert box_a.of_kind(Kind.FORWARD) == []
            # The sender redials; later small messages get through.
            while not box_a.items:
                b.send(1, heartbeat(2, 1))
                await asyncio.sleep(0.02)
            assert a.stats().protocol_errors == 1
            with pytest.raises(FrameTooLargeError):
                a.send(2, Forward(b"big", b"x" * 100_000))  # the sender's own limit
        finally:
            await a.stop()
            await b.stop()

    asyncio.run(main())


def test_heartbeats_flow_while_a_large_snapshot_streams() -> None:
    size, chunk_size = 20 * 1024 * 1024, 1024 * 1024
    blob = bytes(range(256)) * (size // 256)
    meta = SnapshotMeta(Index(1000), Term(3), ConfState(voters=frozenset(map(NodeId, (1, 2)))))

    async def main() -> None:
        nodes, inboxes = await start_mesh([1, 2])
        a, box_b = nodes[1], inboxes[2]
        beats_during: list[int] = []

        def chunks_seen() -> int:
            return len(box_b.of_kind(Kind.SNAPSHOT_CHUNK))

        async def stream() -> None:
            for off in range(0, size, chunk_size):
                data = blob[off : off + chunk_size]
                last = off + chunk_size >= size
                assert await a.send_snapshot_chunk(2, SnapshotChunk(meta, off, data, last))

        async def beat() -> None:
            n = 0
            while chunks_seen() < size // chunk_size:
                a.send(2, heartbeat(1, 2, commit=n))
                n += 1
                await asyncio.sleep(0.002)
                if 0 < chunks_seen() < size // chunk_size:
                    beats_during.append(len(box_b.of_kind(Kind.RAFT)))

        try:
            await asyncio.gather(stream(), beat())
            got = box_b.of_kind(Kind.SNAPSHOT_CHUNK)
            body = b"".join(c.data for c in got)  # type: ignore[union-attr]
            assert zlib.crc32(body) == zlib.crc32(blob)
            assert got[-1].last  # type: ignore[union-attr]
            # Heartbeats were delivered while chunks were still arriving.
            assert len(set(beats_during)) > 1
            assert a.stats().peers[NodeId(2)].snapshot_connected
        finally:
            await stop_all(nodes)

    asyncio.run(main())


def test_remove_peer_drops_its_streams_and_stop_is_idempotent() -> None:
    async def main() -> None:
        nodes, inboxes = await start_mesh([1, 2])
        a, b = nodes[1], nodes[2]
        try:
            b.send(1, heartbeat(2, 1))
            await wait_until(lambda: len(inboxes[1].items) == 1)
            await a.remove_peer(2)
            await a.remove_peer(2)
            assert a.peer_ids() == []
            assert not a.send(2, heartbeat(1, 2))
            for _ in range(20):  # B keeps trying; A now refuses it
                b.send(1, heartbeat(2, 1))
                await asyncio.sleep(0.01)
            await wait_until(lambda: a.stats().rejected_handshakes >= 1)
            assert len(inboxes[1].items) == 1
            a.add_peer(2, b.address)
            await wait_until(lambda: len(inboxes[1].items) > 1)
        finally:
            await stop_all(nodes)
            await stop_all(nodes)
        assert not a.send(2, heartbeat(1, 2))

    asyncio.run(main())


def test_bad_config_rejected() -> None:
    with pytest.raises(ConfigError, match="listen_addr"):
        make(1, Inbox(), listen="nohostport")
    with pytest.raises(ConfigError, match="peers"):
        make(1, Inbox(), peers={1: "127.0.0.1:9"})
    with pytest.raises(ConfigError, match="secret"):
        make(1, Inbox(), secret=b"")
    with pytest.raises(ConfigError, match="queue_messages"):
        TransportConfig(queue_messages=0)


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback")
def test_ipv6_addresses() -> None:
    async def main() -> None:
        box_a, box_b = Inbox(), Inbox()
        a = make(1, box_a, listen="[::1]:0")
        b = make(2, box_b, listen="[::1]:0")
        await a.start()
        await b.start()
        try:
            assert a.address.startswith("[::1]:")
            a.add_peer(2, b.address)
            b.add_peer(1, a.address)
            a.send(2, heartbeat(1, 2))
            await wait_until(lambda: len(box_b.items) == 1)
        finally:
            await a.stop()
            await b.stop()

    asyncio.run(main())


def test_on_drained_follows_each_batch_of_inbound_items() -> None:
    """on_drained runs after on_message saw every item of a read, and only then."""

    async def main() -> None:
        nodes, inboxes = await start_mesh([1, 2])
        marks: list[int] = []  # items received when on_drained ran
        box = inboxes[2]
        nodes[2].set_handlers(box, lambda: marks.append(len(box.items)))
        try:
            assert nodes[1].send(2, heartbeat(1, 2, commit=0))
            await wait_until(lambda: len(marks) == 1)
            assert marks == [1]
            for commit in range(1, 51):  # queued in one turn: fewer reads than items
                nodes[1].send(2, heartbeat(1, 2, commit=commit))
            await wait_until(lambda: len(box.items) == 51 and marks[-1] == 51)
            assert [item.commit for _, _, item in box.items] == list(range(51))  # type: ignore[union-attr]
            assert marks == sorted(marks)
            assert len(marks) < 51  # batches, not one call per item
        finally:
            await stop_all(nodes)

    asyncio.run(main())

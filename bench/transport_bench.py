"""Peer transport over loopback: one-way messages/s and round-trip latency.

Two ``TcpTransport`` instances (with a cluster secret) run in one event loop,
so one core does both ends' work. Figures:

* one-way throughput of Raft ``APP`` messages carrying one 128-byte entry,
  with a window of messages in flight;
* round trips (``HEARTBEAT`` -> ``HEARTBEAT_RESP`` echo) with 1 and with many
  in flight: round trips/s, p50 and p99 latency;
* the same ping-pong over bare asyncio streams with the same framing and
  msgpack bodies but no validation, handshake or queues, as the peer: the
  ratio shows what the transport's checks and queues cost;
* heartbeat round trips while 64 MiB stream on the snapshot lane, and on the
  Raft connection (what a single-connection transport would do);
* round trips with node B in a child process (one event loop per node).

    .venv/bin/python bench/transport_bench.py [--messages 100000] [--round-trips 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import struct
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Protocol

import msgpack

from crema.raft.messages import Message, MessageType
from crema.raft.types import Entry, Index, NodeId, SnapshotMeta, Term
from crema.transport.codec import Forward, Kind, Payload, SnapshotChunk
from crema.transport.tcp import TcpTransport

SECRET = b"bench-secret-bench-secret"
A, B = NodeId(1), NodeId(2)
Handler = Callable[[NodeId, Kind, Payload], None]


def _echo_child(a_addr: str, conn: Connection) -> None:
    """Node B in its own process: echo every heartbeat back to A until told to stop."""

    async def run() -> None:
        def on_message(_frm: NodeId, _kind: Kind, item: Payload) -> None:
            if isinstance(item, Message):
                reply = Message(
                    MessageType.HEARTBEAT_RESP, A, B, term=Term(1), context=item.context
                )
                b.send(A, reply)

        b = TcpTransport(2, "127.0.0.1:0", {1: a_addr}, "bench", SECRET, on_message)
        await b.start()
        conn.send(b.address)
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        await b.stop()

    asyncio.run(run())


class RemotePair:
    """Transport A here, an echoing transport B in a child process (one core each)."""

    def __init__(self) -> None:
        self.on_a: Handler = lambda *_: None
        self.a = TcpTransport(1, "127.0.0.1:0", {}, "bench", SECRET, self._to_a)
        self._conn, self._child = multiprocessing.Pipe()
        self._proc: multiprocessing.process.BaseProcess | None = None

    def _to_a(self, frm: NodeId, kind: Kind, item: Payload) -> None:
        self.on_a(frm, kind, item)

    async def start(self) -> None:
        await self.a.start()
        self._proc = multiprocessing.get_context("spawn").Process(
            target=_echo_child, args=(self.a.address, self._child), daemon=True
        )
        self._proc.start()
        b_addr = await asyncio.get_running_loop().run_in_executor(None, self._conn.recv)
        self.a.add_peer(B, b_addr)
        await self.round_trips(10, 1)

    async def stop(self) -> None:
        if self._proc is not None:
            self._conn.send("stop")
            await asyncio.get_running_loop().run_in_executor(None, self._proc.join, 10)
        await self.a.stop()

    async def round_trips(self, n: int, inflight: int) -> tuple[float, list[float]]:
        """``n`` heartbeat round trips to the child with ``inflight`` outstanding."""
        return await measure_round_trips(self.a, self, n, inflight)


class Pair:
    """Two connected transports whose callbacks can be swapped per experiment."""

    def __init__(self) -> None:
        self.on_a: Handler = lambda *_: None
        self.on_b: Handler = lambda *_: None
        self.a = TcpTransport(1, "127.0.0.1:0", {}, "bench", SECRET, self._to_a)
        self.b = TcpTransport(2, "127.0.0.1:0", {}, "bench", SECRET, self._to_b)

    def _to_a(self, frm: NodeId, kind: Kind, item: Payload) -> None:
        self.on_a(frm, kind, item)

    def _to_b(self, frm: NodeId, kind: Kind, item: Payload) -> None:
        self.on_b(frm, kind, item)

    async def start(self) -> None:
        await self.a.start()
        await self.b.start()
        self.a.add_peer(B, self.b.address)
        self.b.add_peer(A, self.a.address)
        await self.round_trips(10, 1)  # connect both lanes before measuring

    async def stop(self) -> None:
        await self.a.stop()
        await self.b.stop()

    async def one_way(self, n: int, window: int) -> float:
        """Send ``n`` APP messages A -> B; return messages per second."""
        entry = Entry(Index(1), Term(1), data=b"e" * 128)
        msg = Message(MessageType.APP, B, A, term=Term(1), entries=(entry,))
        received = 0
        progress = asyncio.Event()

        def on_b(_frm: NodeId, _kind: Kind, _item: Payload) -> None:
            nonlocal received
            received += 1
            progress.set()

        self.on_b = on_b
        start = time.perf_counter()
        sent = 0
        while received < n:
            while sent < n and sent - received < window:
                self.a.send(B, msg)
                sent += 1
            progress.clear()
            await progress.wait()
        return n / (time.perf_counter() - start)

    async def round_trips(self, n: int, inflight: int) -> tuple[float, list[float]]:
        """``n`` echo round trips with ``inflight`` outstanding; return (rt/s, latencies)."""

        def on_b(_frm: NodeId, _kind: Kind, item: Payload) -> None:
            assert isinstance(item, Message)
            reply = Message(MessageType.HEARTBEAT_RESP, A, B, term=Term(1), context=item.context)
            self.b.send(A, reply)

        self.on_b = on_b
        return await measure_round_trips(self.a, self, n, inflight)

    async def rtt_during_stream(self, size: int, snapshot_lane: bool) -> list[float]:
        """Heartbeat round trips (1 in flight) while ``size`` bytes stream A -> B.

        With ``snapshot_lane`` the bytes go as 1 MiB ``SnapshotChunk`` frames on
        their own connection; otherwise as 1 MiB ``Forward`` frames on the Raft
        connection, which is what a single-connection transport would do.
        """
        chunk = 1 << 20
        meta = SnapshotMeta(Index(1), Term(1))
        blob = b"s" * chunk
        got = 0
        latencies: list[float] = []
        pong = asyncio.Event()

        def on_b(_frm: NodeId, kind: Kind, item: Payload) -> None:
            nonlocal got
            if isinstance(item, Message):
                self.b.send(A, Message(MessageType.HEARTBEAT_RESP, A, B, term=Term(1)))
            else:
                got += 1

        self.on_a, self.on_b = lambda *_: pong.set(), on_b
        total = size // chunk

        async def stream() -> None:
            for i in range(total):
                if snapshot_lane:
                    await self.a.send_snapshot_chunk(B, SnapshotChunk(meta, i * chunk, blob))
                else:
                    self.a.send(B, Forward(b"%d" % i, blob))
                    await asyncio.sleep(0)

        streamer = asyncio.get_running_loop().create_task(stream())
        while got < total:
            pong.clear()
            t0 = time.perf_counter()
            self.a.send(B, Message(MessageType.HEARTBEAT, B, A, term=Term(1)))
            await pong.wait()
            latencies.append(time.perf_counter() - t0)
        await streamer
        return latencies


class _HasOnA(Protocol):
    on_a: Handler


async def measure_round_trips(
    a: TcpTransport, pair: _HasOnA, n: int, inflight: int
) -> tuple[float, list[float]]:
    """Heartbeats from ``a`` to node B, which echoes them; return (rt/s, latencies)."""
    started: dict[bytes, float] = {}
    latencies: list[float] = []
    done = asyncio.get_running_loop().create_future()
    issued = 0

    def issue() -> None:
        nonlocal issued
        key = issued.to_bytes(8, "big")
        issued += 1
        started[key] = time.perf_counter()
        a.send(B, Message(MessageType.HEARTBEAT, B, A, term=Term(1), context=key))

    def on_a(_frm: NodeId, _kind: Kind, item: Payload) -> None:
        assert isinstance(item, Message)
        latencies.append(time.perf_counter() - started.pop(item.context))
        if issued < n:
            issue()
        elif not started and not done.done():
            done.set_result(None)

    pair.on_a = on_a
    begin = time.perf_counter()
    for _ in range(min(inflight, n)):
        issue()
    await done
    return n / (time.perf_counter() - begin), latencies


async def bare_round_trips(n: int, inflight: int) -> float:
    """The peer: echo over plain asyncio streams, same framing and msgpack, no checks."""
    header = struct.Struct(">I")

    async def read_frame(reader: asyncio.StreamReader) -> bytes:
        (size,) = header.unpack(await reader.readexactly(4))
        return await reader.readexactly(size)

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                body = msgpack.unpackb(await read_frame(reader))
            except asyncio.IncompleteReadError:
                writer.close()
                return
            data = msgpack.packb([1, 10, body[2]])
            writer.write(header.pack(len(data)) + data)

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    msg = [9, 2, 1, 1, 0, 0, [], 0, False, 0, b"12345678", None]

    def send() -> None:
        data = msgpack.packb([1, 10, msg])
        writer.write(header.pack(len(data)) + data)

    begin = time.perf_counter()
    for _ in range(min(inflight, n)):
        send()
    issued = min(inflight, n)
    for _ in range(n):
        msgpack.unpackb(await read_frame(reader))
        if issued < n:
            send()
            issued += 1
    rate = n / (time.perf_counter() - begin)
    writer.close()
    server.close()
    await server.wait_closed()
    return rate


def pct(values: list[float], q: float) -> float:
    """The q-th percentile in microseconds."""
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] * 1e6


async def main(messages: int, rts: int) -> None:
    pair = Pair()
    await pair.start()
    try:
        for window in (1, 64, 1024):
            rate = await pair.one_way(messages if window > 1 else messages // 10, window)
            print(f"one-way APP (128 B entry), window {window:5d}: {rate:10,.0f} msg/s")
        for inflight in (1, 16, 256):
            rate, lat = await pair.round_trips(rts, inflight)
            bare = await bare_round_trips(rts, inflight)
            print(
                f"round trip, {inflight:3d} in flight: {rate:9,.0f} rt/s  "
                f"p50 {pct(lat, 50):7.0f} us  p99 {pct(lat, 99):7.0f} us  "
                f"(bare asyncio: {bare:9,.0f} rt/s, ratio {rate / bare:.2f})"
            )
        for lane in (True, False):
            lat = await pair.rtt_during_stream(64 << 20, snapshot_lane=lane)
            where = "snapshot lane" if lane else "Raft lane (single connection)"
            print(
                f"heartbeat rtt while 64 MiB streams on the {where}: "
                f"n={len(lat)} p50 {pct(lat, 50):7.0f} us  p99 {pct(lat, 99):7.0f} us  "
                f"max {max(lat) * 1e6:7.0f} us"
            )
        stats = pair.a.stats()
        print(f"A stats: sent={stats.sent} dropped={stats.dropped} received={stats.received}")
    finally:
        await pair.stop()
    remote = RemotePair()
    await remote.start()
    try:
        for inflight in (1, 16, 256):
            rate, lat = await remote.round_trips(rts, inflight)
            print(
                f"two processes, round trip, {inflight:3d} in flight: {rate:9,.0f} rt/s  "
                f"p50 {pct(lat, 50):7.0f} us  p99 {pct(lat, 99):7.0f} us"
            )
    finally:
        await remote.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--round-trips", type=int, default=20_000)
    args = parser.parse_args()
    asyncio.run(main(args.messages, args.round_trips))

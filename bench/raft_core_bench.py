"""Throughput ceiling of the Raft core: a 3-node in-memory cluster, no network delay.

Each round the leader takes a batch of proposals (100-byte payloads), then
every node handles its Ready (persist to MemoryStorage, send, apply) and all
messages are delivered. Reports committed proposals per second (applied on
all three nodes) and CPU microseconds per proposal, for several batch sizes.

For comparison it runs the same workload through PySyncObj (the peer the
project names), when installed (``pip install pysyncobj``; not a project
dependency): three SyncObj nodes in this process ticked by hand. PySyncObj
has no network-free core, so its figure includes its localhost TCP transport
and serialization; it is a reference point, not a like-for-like ratio.

    .venv/bin/python bench/raft_core_bench.py [--proposals 200000] [--profile] [--no-peer]
"""

from __future__ import annotations

import argparse
import cProfile
import importlib
import pstats
import random
import socket
import time
from typing import Any

from crema.raft.config import RaftConfig
from crema.raft.memory_storage import MemoryStorage
from crema.raft.messages import Message
from crema.raft.rawnode import RawNode, bootstrap
from crema.raft.types import NodeId

PAYLOAD = b"x" * 100


class Cluster:
    """Three RawNodes and a zero-delay message bus."""

    def __init__(self) -> None:
        ids = [NodeId(1), NodeId(2), NodeId(3)]
        self.storages: dict[int, MemoryStorage] = {}
        self.nodes: dict[int, RawNode] = {}
        for i in ids:
            storage = MemoryStorage()
            bootstrap(storage, ids)
            self.storages[i] = storage
            config = RaftConfig(id=i, max_inflight=256, max_size_per_msg=1 << 20)
            self.nodes[i] = RawNode(config, storage, random.Random(i))
        self.queue: list[Message] = []
        self.applied: dict[int, int] = {i: 0 for i in ids}
        self.round()
        self.nodes[1].campaign()
        while self.round():
            pass

    def round(self) -> bool:
        """Handle every node's Ready once and deliver all messages; False when idle."""
        busy = False
        for i, node in self.nodes.items():
            if not node.has_ready():
                continue
            busy = True
            rd = node.ready()
            storage = self.storages[i]
            if rd.entries:
                storage.append(rd.entries)
            if rd.hard_state is not None:
                storage.set_hard_state(rd.hard_state)
            self.queue.extend(rd.messages)
            if rd.committed_entries:
                self.applied[i] += len(rd.committed_entries)
            node.advance(rd)
        if self.queue:
            busy = True
            queue, self.queue = self.queue, []
            nodes = self.nodes
            for m in queue:
                nodes[m.to].step(m)
        return busy


def run(total: int, batch: int) -> tuple[float, float, float]:
    """Commit ``total`` proposals in batches; returns (proposals/s, CPU us/proposal, wall s)."""
    cluster = Cluster()
    leader = cluster.nodes[1]
    base = dict(cluster.applied)
    propose = leader.propose
    wall, cpu = time.perf_counter(), time.process_time()
    sent = 0
    while sent < total:
        for _ in range(min(batch, total - sent)):
            propose(PAYLOAD)
        sent += min(batch, total - sent)
        cluster.round()
    while cluster.round():
        pass
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    for i, count in cluster.applied.items():
        assert count - base[i] >= total, f"node {i} applied {count - base[i]} of {total}"
    return total / wall, cpu / total * 1e6, wall


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_pysyncobj(total: int, window: int = 1000) -> tuple[float, float] | None:
    """The same workload through PySyncObj; None when it is not installed."""
    try:
        pso: Any = importlib.import_module("pysyncobj")
    except ImportError:
        return None

    class Sink(pso.SyncObj):  # type: ignore[misc]
        def __init__(self, me: str, others: list[str]) -> None:
            super().__init__(me, others, pso.SyncObjConf(autoTick=False))
            self.count = 0

        @pso.replicated  # type: ignore[untyped-decorator]
        def put(self, data: bytes) -> None:
            self.count += 1

    addrs = [f"127.0.0.1:{_free_port()}" for _ in range(3)]
    nodes = [Sink(a, [b for b in addrs if b != a]) for a in addrs]
    deadline = time.monotonic() + 30
    while not any(n._isLeader() for n in nodes):
        if time.monotonic() > deadline:
            raise RuntimeError("PySyncObj elected no leader")
        for n in nodes:
            n.doTick(0.0)
    leader = next(n for n in nodes if n._isLeader())
    wall, cpu = time.perf_counter(), time.process_time()
    sent = 0
    while min(n.count for n in nodes) < total:
        while sent < total and sent - leader.count < window:
            leader.put(PAYLOAD)
            sent += 1
        for n in nodes:
            n.doTick(0.0)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    for n in nodes:
        n.destroy()
    return total / wall, cpu / total * 1e6


def main() -> None:
    """Print the figures for a few batch sizes."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--proposals", type=int, default=200_000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--no-peer", action="store_true", help="skip PySyncObj")
    args = parser.parse_args()
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        run(args.proposals, 1000)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
        return
    print(f"3-node in-memory cluster, {args.proposals} proposals of {len(PAYLOAD)} bytes")
    print(f"{'batch':>6} {'proposals/s':>12} {'CPU us/proposal':>16} {'wall s':>8}")
    best = 0.0
    for batch in (1, 10, 100, 1000, 10000):
        total = args.proposals if batch >= 100 else args.proposals // 10
        rate, cpu_us, wall = run(total, batch)
        print(f"{batch:>6} {rate:>12,.0f} {cpu_us:>16.2f} {wall:>8.2f}")
        if batch == 1000:
            best = rate
    if args.no_peer:
        return
    peer = run_pysyncobj(min(args.proposals, 20_000))
    if peer is None:
        print("PySyncObj not installed: no peer figure")
        return
    print(
        f"PySyncObj 3 nodes (localhost TCP, window 1000): {peer[0]:,.0f} proposals/s, "
        f"{peer[1]:.2f} CPU us/proposal; crema core at batch 1000 is {best / peer[0]:.1f}x"
    )


if __name__ == "__main__":
    main()

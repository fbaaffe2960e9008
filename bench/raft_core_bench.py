"""Throughput ceiling of the Raft core: a 3-node in-memory cluster, no network delay.

Each round the leader takes a batch of proposals (100-byte payloads), then
every node handles its Ready (persist to MemoryStorage, send, apply) and all
messages are delivered. Reports committed proposals per second (applied on
all three nodes) and CPU microseconds per proposal, for several batch sizes.

    .venv/bin/python bench/raft_core_bench.py [--proposals 200000] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import time

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


def main() -> None:
    """Print the figures for a few batch sizes."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--proposals", type=int, default=200_000)
    parser.add_argument("--profile", action="store_true")
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
    for batch in (1, 10, 100, 1000, 10000):
        total = args.proposals if batch >= 100 else args.proposals // 10
        rate, cpu_us, wall = run(total, batch)
        print(f"{batch:>6} {rate:>12,.0f} {cpu_us:>16.2f} {wall:>8.2f}")


if __name__ == "__main__":
    main()

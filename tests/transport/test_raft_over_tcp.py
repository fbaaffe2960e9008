"""The real Raft core over the real TCP transport: election, replication, failover."""

from __future__ import annotations

import asyncio
import random

import pytest

from crema.raft.config import RaftConfig
from crema.raft.memory_storage import MemoryStorage
from crema.raft.messages import Message
from crema.raft.rawnode import RawNode, bootstrap
from crema.raft.types import EntryType, NodeId
from crema.transport.codec import Kind, Payload
from crema.transport.tcp import TcpTransport
from tests.transport.harness import CLUSTER, FAST, SECRET, wait_until

pytestmark = pytest.mark.timeout(60)


class RaftPeer:
    """A minimal driver: tick, step inbound messages, persist/send/apply each Ready."""

    def __init__(self, node_id: int, ids: list[NodeId]) -> None:
        self.storage = MemoryStorage()
        bootstrap(self.storage, ids)
        config = RaftConfig(id=NodeId(node_id), election_tick=10, heartbeat_tick=1)
        self.node = RawNode(config, self.storage, random.Random(node_id))
        self.applied: list[bytes] = []
        self.transport = TcpTransport(
            node_id, "127.0.0.1:0", {}, CLUSTER, SECRET, self.on_message, config=FAST
        )
        self.task: asyncio.Task[None] | None = None

    def on_message(self, frm: NodeId, kind: Kind, item: Payload) -> None:
        if isinstance(item, Message):
            self.node.step(item)

    def handle_ready(self) -> None:
        if not self.node.has_ready():
            return
        rd = self.node.ready()
        if rd.entries:
            self.storage.append(rd.entries)
        if rd.hard_state is not None:
            self.storage.set_hard_state(rd.hard_state)
        for m in rd.messages:
            self.transport.send(m.to, m)
        for e in rd.committed_entries:
            if e.type is EntryType.NORMAL and e.data:
                self.applied.append(e.data)
        self.node.advance(rd)

    async def drive(self) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while True:
            if loop.time() >= next_tick:
                self.node.tick()
                next_tick += 0.01
            self.handle_ready()
            await asyncio.sleep(0.002)

    def is_leader(self) -> bool:
        status = self.node.status()
        return status.lead == status.id

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.wait({self.task})
        await self.transport.stop()


async def start_cluster(ids: list[int]) -> dict[int, RaftPeer]:
    voters = [NodeId(i) for i in ids]
    peers = {i: RaftPeer(i, voters) for i in ids}
    for p in peers.values():
        await p.transport.start()
    for i, p in peers.items():
        for j, q in peers.items():
            if i != j:
                p.transport.add_peer(j, q.transport.address)
        p.task = asyncio.get_running_loop().create_task(p.drive())
    return peers


def leader_of(peers: dict[int, RaftPeer]) -> RaftPeer | None:
    leaders = [p for p in peers.values() if p.is_leader()]
    return leaders[0] if len(leaders) == 1 else None


def test_raft_cluster_elects_replicates_and_fails_over() -> None:
    async def main() -> None:
        peers = await start_cluster([1, 2, 3])
        try:
            await wait_until(lambda: leader_of(peers) is not None, timeout=20)
            leader = leader_of(peers)
            assert leader is not None
            for n in range(20):
                leader.node.propose(b"cmd-%d" % n)
            want = [b"cmd-%d" % n for n in range(20)]
            await wait_until(lambda: all(p.applied == want for p in peers.values()), timeout=20)

            await leader.stop()  # the leader crashes; the others must take over
            rest = {i: p for i, p in peers.items() if p is not leader}
            await wait_until(lambda: leader_of(rest) is not None, timeout=20)
            new_leader = leader_of(rest)
            assert new_leader is not None
            new_leader.node.propose(b"after-failover")
            await wait_until(
                lambda: all(p.applied[-1:] == [b"after-failover"] for p in rest.values()),
                timeout=20,
            )
        finally:
            for p in peers.values():
                await p.stop()

    asyncio.run(main())

"""Membership changes, low-disk snapshots, the Backend protocol, interrupted transfers."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, cast

import pytest

from crema.cache.commands import IncrBy
from crema.checkpoint import CheckpointManager
from crema.config import CacheConfig, CheckpointConfig
from crema.errors import PeerProtocolError, SnapshotError
from crema.node import wire
from crema.node.install import SnapshotReceiver
from crema.node.peers import load_peers
from crema.raft.types import ConfState, Index, NodeId, SnapshotMeta, Term
from crema.server.backend import Backend
from crema.transport.codec import SnapshotAck, SnapshotChunk
from crema.transport.tcp import TcpTransport
from tests.node.harness import (
    leader_of,
    node_config,
    seeds_for,
    start,
    start_cluster,
    stop_all,
    wait_leader,
    wait_until,
)

pytestmark = pytest.mark.timeout(90)


def test_add_and_remove_a_node(tmp_path: Path) -> None:
    async def main() -> None:
        nodes, seeds = await start_cluster(tmp_path, log_threshold=40, trailing=5)
        try:
            leader = await wait_leader(nodes)
            for n in range(100):  # compacted: the new node needs a snapshot
                await leader.put(f"k{n}", f"v{n}")
            addr = seeds_for(1)[0][1]
            base = node_config(1, seeds, tmp_path, log_threshold=40, trailing=5)
            config = CacheConfig(
                4,
                addr,
                seed_nodes=base.seed_nodes,
                data_dir=tmp_path / "node-4",
                raft_config=base.raft_config,
                checkpoint_config=CheckpointConfig(tmp_path / "node-4" / "cp"),
                cluster_secret=base.cluster_secret,
            )
            nodes[4] = new = await start(config)
            follower = next(n for n in nodes.values() if n is not leader and n is not new)
            await follower.add_node(4, addr)  # forwarded to the leader
            added_at = follower.raft_index()
            await wait_until(lambda: new.raft_index() >= leader.raft_index(), what="catch up")
            assert await new.get("k99") == b"v99"
            assert new.cluster_status()["voters"] == [1, 2, 3, 4]
            await new.put("from-4", "x")
            assert await new.consistent_get("from-4") == b"x"
            # a follower restarted after the log was compacted past the change still
            # knows node 4's address (peers.json), so node 4 can reach it
            for n in range(60):
                await leader.put(f"more{n}", "x")
            await wait_until(lambda: follower.cluster_status()["log_first_index"] > added_at)
            fid = follower.config.node_id
            await follower.shutdown()
            nodes[fid] = follower = await start(follower.config)
            assert 4 in follower.transport.stats().peers
            await wait_until(lambda: follower.raft_index() >= leader.raft_index())
            await leader.remove_node(4)
            assert leader.cluster_status()["voters"] == [1, 2, 3]
            await new.shutdown()
            del nodes[4]
            await leader.put("after-remove", "1")
            # the restarted follower learns who leads from its next append
            await wait_until(lambda: leader_of(nodes) is not None, what="one leader all follow")
        finally:
            await stop_all(nodes)

    asyncio.run(main())


def _joiner(node_id: int, seeds: list[tuple[int, str]], data: Path) -> CacheConfig:
    """A new node whose seeds are the first three members only."""
    base = node_config(1, seeds, data, log_threshold=40, trailing=5)
    return CacheConfig(
        node_id,
        seeds_for(1)[0][1],
        seed_nodes=base.seed_nodes,
        data_dir=data / f"node-{node_id}",
        raft_config=base.raft_config,
        checkpoint_config=CheckpointConfig(data / f"node-{node_id}" / "cp", log_threshold=40),
        cluster_secret=base.cluster_secret,
    )


def test_a_node_joining_by_snapshot_learns_members_added_before_it(tmp_path: Path) -> None:
    """Node 5 knows only 1-3; node 4's change was compacted: the leader tells it where 4 is."""

    async def main() -> None:
        nodes, seeds = await start_cluster(tmp_path, log_threshold=40, trailing=5)
        try:
            leader = await wait_leader(nodes)
            nodes[4] = four = await start(_joiner(4, seeds, tmp_path))
            await leader.add_node(4, four.config.addr)
            added_at = leader.raft_index()
            for n in range(120):  # every log is compacted past node 4's change
                await leader.put(f"k{n}", "v")
            await wait_until(
                lambda: all(
                    x.cluster_status()["log_first_index"] > added_at for x in nodes.values()
                ),
                what="compaction past the change",
            )
            nodes[5] = five = await start(_joiner(5, seeds, tmp_path))
            assert 4 not in five.transport.stats().peers
            await leader.add_node(5, five.config.addr)
            await wait_until(lambda: 4 in five.transport.stats().peers, what="node 4's address")
            assert five.discovery is not None and five.discovery.learned == 1
            assert load_peers(tmp_path / "node-5")[4] == four.config.addr
            # node 5 can lead and replicate to node 4, which it never had a seed for
            await wait_until(lambda: five.raft_index() >= leader.raft_index(), what="catch up")
            await leader.transfer_leadership(5)
            assert five.is_leader()
            await five.put("from-5", "x")
            await wait_until(lambda: four.contains("from-5"), what="node 4 replicated by 5")
        finally:
            await stop_all(nodes)

    asyncio.run(main())


def test_peer_rows_are_checked() -> None:
    assert wire.peer_rows([[4, "127.0.0.1:7000"]]) == [(4, "127.0.0.1:7000")]
    bad: object
    for bad in ({}, [[0, "h:1"]], [[4]], [["4", "h:1"]], [[4, ""]], [[4, "h" * 400]],
                [[4, "h:1"]] * (wire.MAX_PEER_ROWS + 1)):  # fmt: skip
        with pytest.raises(PeerProtocolError):
            wire.peer_rows(bad)


def test_low_disk_space_skips_snapshots_but_keeps_serving(tmp_path: Path) -> None:
    async def main() -> None:
        seeds = seeds_for(1)
        config = node_config(1, seeds, tmp_path, log_threshold=10).with_min_free_bytes(1 << 62)
        cache = await start(config)
        async with cache:
            await wait_until(cache.is_leader)
            for n in range(30):
                await cache.put(f"k{n}", "v")
            status = cache.cluster_status()
            assert status["snapshots_skipped_low_space"] >= 1
            assert status["snapshots_written"] == 0
            with pytest.raises(SnapshotError):
                await cache.checkpoint()
            await cache.put("still", "serving")
            assert await cache.get("still") == b"serving"

    asyncio.run(main())


def test_distributed_cache_is_a_backend(tmp_path: Path) -> None:
    async def main() -> None:
        cache = await start(node_config(1, seeds_for(1), tmp_path, storage="memory"))
        async with cache:
            backend: Backend = cache
            await wait_until(cache.is_leader)
            assert await backend.execute(IncrBy(b"n", 5, backend.clock_ms())) == 5
            await backend.read_barrier()
            assert backend.state_machine.get(b"n", backend.clock_ms()) == b"5"
            assert backend.status()["role"] == "leader"

    asyncio.run(main())


class _Sent:
    def __init__(self) -> None:
        self.items: list[Any] = []

    def send(self, to: int, item: Any) -> bool:
        self.items.append((to, item))
        return True


def test_interrupted_snapshot_transfer_is_refused_and_cleaned_up(tmp_path: Path) -> None:
    async def main() -> None:
        sent = _Sent()
        manager = CheckpointManager(CheckpointConfig(tmp_path))
        receiver = SnapshotReceiver(cast(TcpTransport, sent), manager, None, lambda: 0, lambda: 0)
        meta = SnapshotMeta(Index(10), Term(2), ConfState(frozenset({NodeId(1)})))
        receiver.on_chunk(NodeId(1), SnapshotChunk(meta, 0, b"MCRS" + b"x" * 10))
        receiver.on_chunk(NodeId(1), SnapshotChunk(meta, 99, b"y", last=True))  # a gap
        assert sent.items == [(1, SnapshotAck(10, 2, 0, False))]
        assert not list(tmp_path.glob(".install-*"))
        assert not receiver.ready_for(meta)
        # a complete but corrupt file is refused too, never staged
        receiver.on_chunk(NodeId(1), SnapshotChunk(meta, 0, b"MCRS-not-a-snapshot", last=True))
        await wait_until(lambda: len(sent.items) == 2)
        assert sent.items[-1] == (1, SnapshotAck(10, 2, 0, False))
        assert receiver.staged is None and not receiver.ready_for(meta)
        await receiver.stop()

    asyncio.run(main())


def test_nodes_with_different_entry_bounds_refuse_each_other(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Different bounds would evict differently and drift apart: the handshake says no."""
    seeds = seeds_for(3)

    async def main() -> None:
        nodes = {
            i: await start(node_config(i, seeds, tmp_path).with_max_capacity(100)) for i in (1, 2)
        }
        nodes[3] = odd = await start(node_config(3, seeds, tmp_path))
        try:
            await wait_leader({i: nodes[i] for i in (1, 2)})
            refusal = "wrong cluster id 'crema/max-capacity=100' (this node: 'crema')"
            await wait_until(lambda: refusal in caplog.text, what="node 3 refusing the others")
            assert not any(odd.transport.is_connected(i) for i in (1, 2))
            assert nodes[1].cluster_status()["max_capacity"] == 100
        finally:
            await stop_all(nodes)

    with caplog.at_level(logging.WARNING, logger="crema.transport"):
        asyncio.run(main())


def test_peer_cluster_id_carries_the_entry_bound(tmp_path: Path) -> None:
    base = node_config(1, seeds_for(1), tmp_path)
    assert base.peer_cluster_id == "crema"
    assert base.with_max_capacity(5).peer_cluster_id == "crema/max-capacity=5"
    assert base.with_cluster_id("x").with_max_capacity(5).peer_cluster_id == "x/max-capacity=5"

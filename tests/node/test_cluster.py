"""Three nodes in one event loop over real loopback sockets."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from crema.config import CacheConfig
from crema.errors import UnavailableError
from crema.node import DistributedCache
from tests.node.harness import (
    FAST_TRANSPORT,
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


def test_writes_through_every_node_and_reads(tmp_path: Path) -> None:
    async def main() -> None:
        nodes, _ = await start_cluster(tmp_path, storage="memory")
        try:
            for node_id, node in nodes.items():
                for n in range(10):
                    await node.put(f"k{node_id}-{n}", f"v{n}")
                    # get after put on the same node sees the write, leader or follower
                    assert await node.get(f"k{node_id}-{n}") == f"v{n}".encode()
            for node in nodes.values():
                assert await node.consistent_get("k1-9") == b"v9"
                assert await node.consistent_get("missing") is None
            assert await nodes[2].delete("k1-0") is True
            assert await nodes[3].consistent_get("k1-0") is None
            await wait_until(lambda: len({n.raft_index() for n in nodes.values()}) == 1)
            views = [sorted(n.entries()) for n in nodes.values()]
            assert views[0] == views[1] == views[2] and len(views[0]) == 29
        finally:
            await stop_all(nodes)

    asyncio.run(main())


def test_concurrent_writes_and_reads_from_followers(tmp_path: Path) -> None:
    async def main() -> None:
        nodes, _ = await start_cluster(tmp_path)
        try:
            leader = await wait_leader(nodes)
            followers = [n for n in nodes.values() if n is not leader]

            async def writer(w: int) -> None:
                node = list(nodes.values())[w % 3]
                for n in range(20):
                    await node.put(f"w{w}", str(n))

            await asyncio.gather(*(writer(w) for w in range(12)))
            reads = await asyncio.gather(
                *(f.consistent_get(f"w{w}") for f in followers for w in range(12))
            )
            assert reads == [b"19"] * 24
        finally:
            await stop_all(nodes)

    asyncio.run(main())


def test_leader_failover_and_transfer(tmp_path: Path) -> None:
    async def main() -> None:
        nodes, _ = await start_cluster(tmp_path)
        try:
            leader = await wait_leader(nodes)
            target = next(i for i in nodes if i != leader.config.node_id)
            await nodes[target].transfer_leadership(target)  # from a follower
            await wait_until(lambda: leader_of(nodes) is nodes[target], what="transfer")
            await nodes[target].put("after-transfer", "1")
            await nodes[target].shutdown()
            rest = {i: n for i, n in nodes.items() if i != target}
            await wait_leader(rest)
            for node in rest.values():
                await node.put(f"from-{node.config.node_id}", "x")
                assert await node.consistent_get("after-transfer") == b"1"
        finally:
            await stop_all(nodes)

    asyncio.run(main())


def test_peer_without_secret_cannot_join(tmp_path: Path) -> None:
    async def main() -> None:
        nodes, seeds = await start_cluster(tmp_path, storage="memory")
        try:
            leader = await wait_leader(nodes)
            term = leader.raft_term()
            # an impostor claiming to be node 3, without (then with a wrong) secret
            for secret in (None, b"wrong"):
                config = node_config(3, seeds, tmp_path / "impostor", storage="memory")
                port = seeds_for(1)[0][1]
                impostor_conf = CacheConfig(
                    3,
                    port,
                    seed_nodes=config.seed_nodes,
                    data_dir=config.data_dir,
                    raft_storage="memory",
                    raft_config=config.raft_config,
                    checkpoint_config=config.checkpoint_config,
                    cluster_secret=secret,
                )
                impostor = await start(impostor_conf)
                try:
                    await asyncio.sleep(0.5)  # give it time to try: nothing must happen
                    assert not impostor.is_leader() and impostor.leader_id() is None
                    peers = impostor.transport.stats().peers
                    assert not any(p.connected for p in peers.values())
                    with pytest.raises(UnavailableError):
                        impostor._replica.write_timeout = 0.3
                        await impostor.put("x", "y")
                finally:
                    await impostor.shutdown()
            assert leader.is_leader() and leader.raft_term() == term
            assert await leader.get("x") is None
        finally:
            await stop_all(nodes)

    asyncio.run(main())


def test_ttl_hidden_by_each_nodes_clock(tmp_path: Path) -> None:
    async def main() -> None:
        seeds = seeds_for(3)
        base = 1_700_000_000_000
        skew = {1: 0, 2: 0, 3: 3_600_000}  # node 3's clock runs an hour ahead
        nodes = {}
        for node_id, _ in seeds:
            config = node_config(node_id, seeds, tmp_path, storage="memory")
            nodes[node_id] = await DistributedCache.create(
                config,
                clock_ms=lambda n=node_id: base + skew[n],  # type: ignore[misc]
                transport_config=FAST_TRANSPORT,
            )
        try:
            if (await wait_leader(nodes)) is nodes[3]:
                # the leader's clock stamps writes: keep the skewed node a follower here
                await nodes[3].transfer_leadership(1)
            await nodes[2].put_with_ttl("session", "s", 60)
            await wait_until(lambda: len({n.raft_index() for n in nodes.values()}) == 1)
            assert await nodes[3].get("session") is None  # expired by node 3's clock
            assert await nodes[1].get("session") == b"s"
            assert await nodes[2].get("session") == b"s"
            # the replicated state is the same everywhere: same absolute expiry
            expiries = {
                tuple(e for k, _, e in n.state_machine.entries_view() if k == b"session")
                for n in nodes.values()
            }
            assert len(expiries) == 1
        finally:
            await stop_all(nodes)

    asyncio.run(main())

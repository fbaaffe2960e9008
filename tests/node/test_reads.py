"""Linearizable reads on a node: a round's messages leave in the turn the round starts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from crema.node import DistributedCache
from crema.node.replica import Replica
from tests.node.harness import start_cluster, stop_all, wait_leader

pytestmark = pytest.mark.timeout(60)


def _replica(node: DistributedCache) -> Replica:
    return node._replica


def test_the_leader_sends_a_rounds_heartbeats_at_once(tmp_path: Path) -> None:
    async def main() -> None:
        nodes, _ = await start_cluster(tmp_path, storage="memory")
        try:
            leader = await wait_leader(nodes)
            await leader.put("k", "v")  # an entry of this term is committed
            raft = _replica(leader).node.raft
            fut = leader.read_barrier()
            # Registered in the core and its heartbeats handed to the transport
            # before read_barrier returned, not on a later turn of the driver loop.
            assert len(raft.read_only.queue) == 1
            assert not raft.msgs
            await fut
            assert not raft.read_only.queue
            assert await leader.consistent_get("k") == b"v"
        finally:
            await stop_all(nodes)

    asyncio.run(main())


def test_a_follower_asks_the_leader_at_once(tmp_path: Path) -> None:
    async def main() -> None:
        nodes, _ = await start_cluster(tmp_path, storage="memory")
        try:
            leader = await wait_leader(nodes)
            await leader.put("k", "v")
            follower = next(n for n in nodes.values() if n is not leader)
            replica = _replica(follower)
            fut = follower.read_barrier()
            assert not replica.reads.wants_round()  # its round started: nothing queued
            assert not replica.node.raft.msgs  # the READ_INDEX request went out
            await fut
            assert await follower.consistent_get("k") == b"v"
        finally:
            await stop_all(nodes)

    asyncio.run(main())


def test_rounds_beyond_the_limit_start_once_one_ends(tmp_path: Path) -> None:
    async def main() -> None:
        nodes, _ = await start_cluster(tmp_path, storage="memory")
        try:
            leader = await wait_leader(nodes)
            await leader.put("k", "v")
            # One round per call: more than may be in flight; every read completes.
            futures = [leader.read_barrier() for _ in range(10)]
            await asyncio.wait_for(asyncio.gather(*futures), 20)
        finally:
            await stop_all(nodes)

    asyncio.run(main())

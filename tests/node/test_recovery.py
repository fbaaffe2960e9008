"""Restart from snapshot + WAL, compaction and snapshot install, corruption fallback."""

from __future__ import annotations

import asyncio
import gc
import sys
from pathlib import Path

import pytest

from crema.node import DistributedCache
from crema.node.checkpoints import fast_gil_switching
from tests.node.harness import (
    node_config,
    seeds_for,
    start,
    start_cluster,
    stop_all,
    wait_leader,
    wait_until,
)

pytestmark = pytest.mark.timeout(120)


def _body(path: Path) -> bytes:
    return path.read_bytes()[30:-4]


def test_single_node_restart_from_snapshot_and_wal(tmp_path: Path) -> None:
    async def main() -> None:
        seeds = seeds_for(1)
        config = node_config(1, seeds, tmp_path, log_threshold=50, trailing=10)
        cache = await start(config)
        await wait_until(cache.is_leader)
        for n in range(130):
            await cache.put(f"k{n % 40}", f"v{n}")
        await wait_until(lambda: cache.cluster_status()["snapshots_written"] >= 2)
        await cache.delete("k0")
        index = cache.raft_index()
        before = sorted(cache.entries())
        status = cache.cluster_status()
        assert status["log_first_index"] > 1  # compacted
        await cache.shutdown()

        again = await start(config)
        async with again:
            # recovered before create() returns: snapshot + WAL replay
            assert again.raft_index() >= index
            assert sorted(again.entries()) == before
            await wait_until(again.is_leader)
            await again.put("new", "1")
            assert await again.get("k1") == b"v121"

    asyncio.run(main())


def test_corrupted_newest_snapshot_falls_back(tmp_path: Path) -> None:
    async def main() -> None:
        seeds = seeds_for(1)
        config = node_config(1, seeds, tmp_path, log_threshold=30, trailing=100)
        cache = await start(config)
        await wait_until(cache.is_leader)
        for n in range(100):
            await cache.put(f"k{n}", f"v{n}")
        await cache.checkpoint()
        before = sorted(cache.entries())
        snaps = cache.checkpoint_manager.list_snapshots()
        assert len(snaps) >= 2
        await cache.shutdown()
        newest = snaps[-1].path
        raw = bytearray(newest.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        newest.write_bytes(bytes(raw))

        again = await start(config)
        async with again:
            assert sorted(again.entries()) == before
            assert newest.with_name(newest.name + ".broken").exists()

    asyncio.run(main())


def test_lagging_follower_catches_up_by_snapshot_install(tmp_path: Path) -> None:
    async def main() -> None:
        nodes, _ = await start_cluster(tmp_path, log_threshold=100, trailing=20)
        try:
            leader = await wait_leader(nodes)
            lagging_id = next(i for i in nodes if i != leader.config.node_id)
            lag_config = nodes[lagging_id].config
            await nodes[lagging_id].shutdown()
            # Many times log_threshold, and well past what the leader keeps in flight to
            # the stopped follower (max_inflight appends, queued by the transport and
            # delivered when it reconnects): compacted past what those cover.
            for n in range(1200):
                await leader.put(f"k{n % 150}", f"v{n}")
            # every running node compacted past that: whichever leads then (a leader
            # change may happen) can only catch the follower up by a snapshot
            running = [n for i, n in nodes.items() if i != lagging_id]
            await wait_until(
                lambda: all(n.cluster_status()["log_first_index"] > 600 for n in running)
            )
            nodes[lagging_id] = back = await start(lag_config)
            await wait_until(lambda: back.raft_index() >= leader.raft_index(), what="catch up")
            assert back.cluster_status()["snapshots_installed"] >= 1
            assert sorted(back.entries()) == sorted(leader.entries())
            await back.put("from-lagger", "1")
            assert await back.get("from-lagger") == b"1"
        finally:
            await stop_all(nodes)

    asyncio.run(main())


def test_auto_recover_off_discards_and_catches_up(tmp_path: Path) -> None:
    async def main() -> None:
        nodes, seeds = await start_cluster(tmp_path, log_threshold=50, trailing=5)
        try:
            leader = await wait_leader(nodes)
            other = next(i for i in nodes if i != leader.config.node_id)
            for n in range(120):
                await leader.put(f"k{n}", f"v{n}")
            await nodes[other].shutdown()
            config = node_config(
                other, seeds, tmp_path, log_threshold=50, trailing=5, auto_recover=False
            )
            nodes[other] = back = await start(config)
            assert back.raft_index() == 0  # discarded local state
            await wait_until(lambda: back.raft_index() >= leader.raft_index(), what="catch up")
            assert sorted(back.entries()) == sorted(leader.entries())
            assert any(p.name.startswith("discarded-") for p in config.data_directory.iterdir())
        finally:
            await stop_all(nodes)

    asyncio.run(main())


def test_snapshot_bodies_identical_across_nodes(tmp_path: Path) -> None:
    async def main() -> None:
        nodes, _ = await start_cluster(tmp_path)
        for node in nodes.values():  # one node writes in a forked child (no accelerator)
            node._replica.checkpointer.fork_min_entries = 0 if node.config.node_id == 1 else None
        switch_interval = sys.getswitchinterval()
        try:
            leader = await wait_leader(nodes)
            for n in range(200):
                node = list(nodes.values())[n % 3]
                await node.put(f"k{n % 70}", f"v{n}" * (n % 5))
                if n % 9 == 0:
                    await node.put_with_ttl(f"t{n}", "x", 0.05 if n % 2 else 3600)
                if n % 13 == 0:
                    await node.delete(f"k{n % 50}")
            await leader.put("quiesce", "1")
            await wait_until(lambda: len({n.raft_index() for n in nodes.values()}) == 1)
            infos = [await n.checkpoint() for n in nodes.values()]
            assert len({(i.metadata.index, i.metadata.term) for i in infos}) == 1
            bodies = {_body(i.path) for i in infos}
            assert len(bodies) == 1
            assert gc.get_freeze_count() == 0  # the fork's gc.freeze() was undone
            assert sys.getswitchinterval() == switch_interval  # the thread's was restored
        finally:
            await stop_all(nodes)

    asyncio.run(main())


def test_ttl_across_restart_with_injected_clock(tmp_path: Path) -> None:
    async def main() -> None:
        now = [1_700_000_000_000]
        seeds = seeds_for(1)
        config = node_config(1, seeds, tmp_path)
        cache = await DistributedCache.create(config, clock_ms=lambda: now[0])
        await wait_until(cache.is_leader)
        await cache.put_with_ttl("short", "s", 10)
        await cache.put_with_ttl("long", "l", 100)
        (expiry,) = [e for k, _, e in cache.entries() if k == b"long"]
        await cache.checkpoint()
        await cache.shutdown()
        now[0] += 50_000  # 50 s later: "short" expired, "long" keeps its absolute expiry
        again = await DistributedCache.create(config, clock_ms=lambda: now[0])
        async with again:
            assert await again.get("short") is None
            assert await again.get("long") == b"l"
            assert [e for k, _, e in again.entries() if k == b"long"] == [expiry]
            now[0] += 60_000
            assert await again.get("long") is None

    asyncio.run(main())


def test_fast_gil_switching_nests_and_restores() -> None:
    before = sys.getswitchinterval()
    with fast_gil_switching(0.0005):
        assert sys.getswitchinterval() == pytest.approx(0.0005)
        with fast_gil_switching(0.0005):
            pass
        assert sys.getswitchinterval() == pytest.approx(0.0005)  # still inside the outer one
    assert sys.getswitchinterval() == before
    with pytest.raises(ZeroDivisionError), fast_gil_switching(0.0005):
        _ = 1 / 0
    assert sys.getswitchinterval() == before

"""The node's metrics counters and their export on ``/metrics`` (no timing assertions)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from crema.cache.store import Store
from crema.histogram import Histogram
from crema.node import DistributedCache
from crema.server.admin import AdminServer, health
from crema.server.session import ServerState
from tests.node.harness import node_config, seeds_for, start, start_cluster, stop_all, wait_until

pytestmark = pytest.mark.timeout(60)


def test_histogram_buckets_and_sum() -> None:
    hist = Histogram((0.1, 1.0))
    for seconds in (0.05, 0.1, 0.5, 3.0):
        hist.observe(seconds)
    assert hist.counts == [2, 1, 1] and hist.count == 4
    assert hist.total == pytest.approx(3.65)


def test_store_bytes_is_a_running_total() -> None:
    store = Store(capacity=3)
    store.write(b"a", b"12345", None, 0)
    store.write(b"bb", b"1", 100, 0)
    assert store.nbytes == 1 + 5 + 2 + 1
    store.write(b"a", b"1", None, 0)  # overwrite: only the value changes
    assert store.nbytes == 1 + 1 + 2 + 1
    store.delete(b"bb")
    assert store.nbytes == 2
    for key in (b"c", b"d", b"e"):  # capacity 3: evicts "a"
        store.write(key, b"xy", None, 0)
    assert store.nbytes == 9 and len(store) == 3
    store.check_invariants()
    view = store.view(1, 1, 0)
    assert view.nbytes == 9
    store.write(b"t", b"v", 5, 0)
    assert store.purge_expired(10, None) == 1
    store.check_invariants()
    assert Store.from_entries(_Entries(store), None).nbytes == store.nbytes
    store.clear()
    assert store.nbytes == 0


class _Item:
    def __init__(self, key: bytes, value: bytes, expiry: int | None) -> None:
        self.key, self.value, self.expiry_ms = key, value, expiry


def _Entries(store: Store) -> list[_Item]:  # noqa: N802 - reads like a type
    return [_Item(k, v, e) for k, v, e in store.view(0, 0, 0)]


def test_single_node_counters_on_disk(tmp_path: Path) -> None:
    puts = 20

    async def main() -> None:
        seeds = seeds_for(1)
        config = node_config(1, seeds, tmp_path, fsync="always")
        cache = await start(config)
        async with cache:
            await wait_until(cache.is_leader, what="leadership")
            for i in range(puts):
                await cache.put(f"k{i}", "v" * 10)
            status = cache.cluster_status()
            assert status["proposals"] >= puts
            assert status["leader_changes"] == 1
            assert status["forwarded_writes"] == 0
            expected = sum(len(f"k{i}") + 10 for i in range(puts))
            assert status["cache_bytes"] == expected
            fsync = cache.histograms()["wal_fsync_seconds"]
            assert fsync.count > 0 and fsync.total >= 0
            assert status["last_snapshot_size"] == 0
            info = await cache.checkpoint()
            status = cache.cluster_status()
            assert status["last_snapshot_size"] == info.size > 0
            assert status["last_snapshot_entries"] == puts
            assert status["last_snapshot_compression_ratio"] > 0
            assert status["last_snapshot_seconds"] >= 0
            assert cache.histograms()["checkpoint_seconds"].count == 1
            for i in range(5):
                await cache.put(f"late{i}", "x")
            applied = status["applied_index"] + 5
            await wait_until(lambda: cache.cluster_status()["applied_index"] >= applied)
        again = await start(config)
        async with again:
            status = again.cluster_status()
            assert status["recovery_snapshot_index"] == info.metadata.index
            assert status["recovery_entries_replayed"] >= 5
            assert status["recovery_seconds"] >= 0
            await wait_until(again.is_leader, what="leadership")
            # counted once the Ready that reports the new role is durable
            await wait_until(lambda: again.cluster_status()["leader_changes"] == 1)
            assert again.cluster_status()["leader_changes"] == 1

    asyncio.run(main())


def test_single_node_counters_in_memory(tmp_path: Path) -> None:
    async def main() -> None:
        cache = await start(node_config(1, seeds_for(1), tmp_path, storage="memory"))
        async with cache:
            await wait_until(cache.is_leader, what="leadership")
            for i in range(3):
                await cache.put(f"k{i}", "v")
            status = cache.cluster_status()
            assert status["proposals"] >= 3
            assert status["recovery_snapshot_index"] == 0
            assert "wal_fsync_seconds" not in cache.histograms()

    asyncio.run(main())


def _sample(body: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", body, re.MULTILINE)
    assert match is not None, name
    return float(match.group(1))


async def _scrape(node: DistributedCache) -> str:
    admin = AdminServer(node, ServerState(node))
    await admin.start()
    try:
        reader, writer = await asyncio.open_connection(admin.host, admin.port)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        raw = await reader.read()
        writer.close()
    finally:
        await admin.stop()
    head, _, body = raw.decode().partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 200")
    return body


def test_metrics_scrape_has_the_node_metrics(tmp_path: Path) -> None:
    async def main() -> None:
        nodes, _ = await start_cluster(tmp_path, 3, fsync="always")
        try:
            follower = next(n for n in nodes.values() if not n.is_leader())
            for i in range(10):
                await follower.put(f"k{i}", "value")
            await follower.checkpoint()
            body = await _scrape(follower)
        finally:
            await stop_all(nodes)
        assert _sample(body, "crema_forwarded_writes_total") >= 10
        assert _sample(body, "crema_raft_leader_changes_total") >= 1
        assert _sample(body, "crema_cache_bytes") >= 10 * len("k0value")
        assert _sample(body, "crema_cache_entries") == 10
        assert _sample(body, "crema_wal_fsync_duration_seconds_count") > 0
        assert _sample(body, "crema_checkpoint_duration_seconds_count") == 1
        assert _sample(body, "crema_checkpoint_last_size_bytes") > 0
        assert _sample(body, "crema_checkpoint_last_entries") == 10
        assert _sample(body, "crema_checkpoint_last_compression_ratio") > 0
        assert _sample(body, "crema_checkpoint_last_duration_seconds") >= 0
        assert _sample(body, "crema_raft_proposals_total") >= 0
        assert _sample(body, "crema_forwarded_writes_served_total") == 0
        assert _sample(body, "crema_recovery_duration_seconds") >= 0
        assert _sample(body, "crema_recovery_snapshot_index") == 0
        assert _sample(body, "crema_recovery_entries_replayed") >= 0
        assert _sample(body, "crema_snapshot_installs_sent_total") == 0
        assert 'crema_wal_fsync_duration_seconds_bucket{le="+Inf"}' in body

    asyncio.run(main())


def test_health_names_a_failure_first() -> None:
    ok = {"leader_id": 1, "commit_index": 10, "applied_index": 10, "failure": None}
    assert health(ok) == (True, "ok")
    failed = {**ok, "failure": "OSError: [Errno 28] No space left on device"}
    assert health(failed) == (False, "node failed: OSError: [Errno 28] No space left on device")
    assert health({**ok, "leader_id": None}) == (False, "no leader known")

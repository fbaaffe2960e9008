"""A single-node DistributedCache: writes, reads, TTLs, errors, shutdown."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from crema.config import CacheConfig
from crema.errors import ConfigError, ShutdownError, WriteError
from tests.node.harness import node_config, seeds_for, start, wait_until

pytestmark = pytest.mark.timeout(60)


def test_config_validation_names_the_field() -> None:
    with pytest.raises(ConfigError) as info:
        CacheConfig(0, "127.0.0.1:1")
    assert info.value.field == "node_id"
    with pytest.raises(ConfigError) as info:
        CacheConfig(1, "nohost")
    assert info.value.field == "addr"
    with pytest.raises(ConfigError) as info:
        CacheConfig(1, "127.0.0.1:1").with_raft_storage("tape")
    assert info.value.field == "raft_storage"
    with pytest.raises(ConfigError) as info:
        CacheConfig(1, "127.0.0.1:1").with_seed_nodes([(1, "a:1"), (1, "b:2")])
    assert info.value.field == "seed_nodes"
    config = CacheConfig(3, "127.0.0.1:7003")
    assert str(config.data_directory) == "crema-data/node-3"


@pytest.mark.parametrize("storage", ["memory", "disk"])
def test_single_node_writes_and_reads(tmp_path: Path, storage: str) -> None:
    async def main() -> None:
        seeds = seeds_for(1)
        cache = await start(node_config(1, seeds, tmp_path, storage=storage))
        async with cache:
            await wait_until(cache.is_leader, what="leadership")
            await cache.put("a", "1")
            await cache.put(b"b", b"2")
            assert await cache.get("a") == b"1"
            assert await cache.consistent_get("b") == b"2"
            assert cache.contains("a") and len(cache) == 2
            assert await cache.delete("a") is True
            assert await cache.delete("a") is False
            assert await cache.get("a") is None
            await cache.put_with_ttl("t", "x", 60)
            (entry,) = [e for e in cache.entries() if e[0] == b"t"]
            assert entry[2] is not None and entry[2] > cache.clock_ms()
            assert cache.raft_index() > 0 and cache.raft_term() >= 1
            status = cache.cluster_status()
            assert status["role"] == "leader" and status["voters"] == [1]
            await cache.clear()
            assert cache.entry_count() == 0
        with pytest.raises(ShutdownError) as info:
            await cache.put("late", "x")
        assert isinstance(info.value, WriteError) and not info.value.may_have_been_applied

    asyncio.run(main())


def test_address_in_use_releases_local_state(tmp_path: Path) -> None:
    async def main() -> None:
        seeds = seeds_for(1)
        config = node_config(1, seeds, tmp_path)
        first = await start(config)
        other = node_config(1, seeds, tmp_path / "other")
        with pytest.raises(OSError):
            await start(other)  # same address
        await first.shutdown()
        again = await start(other)  # its WAL lock was released
        await again.shutdown()

    asyncio.run(main())

"""Helpers for node tests: free loopback ports, configs, clusters, bounded waits."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from pathlib import Path

from crema.config import CacheConfig, CheckpointConfig, RaftConfig
from crema.node import DistributedCache
from crema.transport.config import TransportConfig

SECRET = b"node-test-secret"
FAST_RAFT = RaftConfig(tick_interval_ms=10, election_ticks=10, heartbeat_ticks=2, write_timeout=5)
FAST_TRANSPORT = TransportConfig(backoff_initial=0.01, backoff_max=0.2, handshake_timeout=2.0)


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1 (bound, read, released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def node_config(
    node_id: int,
    seeds: list[tuple[int, str]],
    data: Path,
    *,
    log_threshold: int = 10_000,
    trailing: int = 1_000,
    storage: str = "disk",
    fsync: str = "never",
    auto_recover: bool = True,
) -> CacheConfig:
    """A fast test configuration for one node of ``seeds``."""
    addr = dict(seeds)[node_id]
    raft = RaftConfig(
        tick_interval_ms=10,
        election_ticks=10,
        heartbeat_ticks=2,
        write_timeout=5,
        trailing_entries=trailing,
        fsync=fsync,
    )
    checkpoints = CheckpointConfig(
        data / f"node-{node_id}" / "checkpoints",
        log_threshold=log_threshold,
        auto_recover=auto_recover,
    )
    return (
        CacheConfig(node_id, addr)
        .with_seed_nodes(seeds)
        .with_data_dir(data / f"node-{node_id}")
        .with_raft_storage(storage)
        .with_raft_config(raft)
        .with_checkpoint_config(checkpoints)
        .with_cluster_secret(SECRET)
        .with_min_free_bytes(0)
    )


def seeds_for(n: int) -> list[tuple[int, str]]:
    """``n`` node ids with free loopback addresses."""
    return [(i + 1, f"127.0.0.1:{port}") for i, port in enumerate(free_ports(n))]


async def start(config: CacheConfig) -> DistributedCache:
    """Create a node with the fast transport."""
    return await DistributedCache.create(config, transport_config=FAST_TRANSPORT)


async def wait_until(cond: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    """Poll ``cond`` until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        await asyncio.sleep(0.01)


def leader_of(nodes: dict[int, DistributedCache]) -> DistributedCache | None:
    """The one node that believes it leads and that the others follow, if any."""
    leaders = [c for c in nodes.values() if c.is_leader()]
    if len(leaders) != 1:
        return None
    lead = leaders[0]
    return lead if all(c.leader_id() == lead.config.node_id for c in nodes.values()) else None


async def wait_leader(
    nodes: dict[int, DistributedCache], timeout: float = 20.0
) -> DistributedCache:
    """Wait until ``nodes`` agree on one leader; return it."""
    await wait_until(lambda: leader_of(nodes) is not None, timeout, "a leader")
    leader = leader_of(nodes)
    assert leader is not None
    return leader


async def start_cluster(
    data: Path, n: int = 3, **kwargs: object
) -> tuple[dict[int, DistributedCache], list[tuple[int, str]]]:
    """Start ``n`` nodes in this loop; wait for a leader."""
    seeds = seeds_for(n)
    nodes: dict[int, DistributedCache] = {}
    for node_id, _ in seeds:
        nodes[node_id] = await start(node_config(node_id, seeds, data, **kwargs))  # type: ignore[arg-type]
    await wait_leader(nodes)
    return nodes, seeds


async def stop_all(nodes: dict[int, DistributedCache]) -> None:
    """Shut every node down."""
    for node in nodes.values():
        await node.shutdown()

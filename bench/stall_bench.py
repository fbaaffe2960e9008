"""Snapshot stall and restart of one node, in one process: thread writer vs forked child.

Run: ``.venv/bin/python bench/stall_bench.py [--entries 1000000]``

A single-node cluster (WAL fsync ``always``) is loaded with ``--entries``
entries (MSET batches of 1,000; 100-300 byte values). Then, for each way of
writing a snapshot (the worker thread with the C encoder, which the node
uses when the accelerator is built, and the forked child it falls back to
without it), one writer loop runs while ``checkpoint()`` is taken, and a
probe task sleeping 1 ms at a time measures how late the event loop wakes
it. Reported: the snapshot's duration, the longest write and the longest
event-loop lag during it. Last, the node is shut down and restarted on its
data (snapshot plus 10,000 log entries): time until the node is ready.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from crema.cache.commands import MSet
from crema.node import DistributedCache
from crema.node.__main__ import config_from, parse_args

VALUE = b"v" * 100


async def _load(cache: DistributedCache, n: int) -> None:
    pending: list[Any] = []
    for start in range(0, n, 1000):
        end = min(n, start + 1000)
        pairs = tuple((b"session:%07d" % i, b"x" * (100 + i % 200)) for i in range(start, end))
        pending.append(cache.execute(MSet(pairs, cache.clock_ms())))
        if len(pending) >= 4:
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)


async def _stall(cache: DistributedCache, fork: bool) -> dict[str, float]:
    cache._replica.checkpointer.fork_min_entries = 0 if fork else None
    done = asyncio.Event()
    writes: list[tuple[float, float]] = []
    lags: list[tuple[float, float]] = []

    async def writer() -> None:
        n = 0
        while not done.is_set():
            t0 = time.perf_counter()
            await cache.put(b"stall-%d" % n, VALUE)
            writes.append((t0, time.perf_counter() - t0))
            n += 1

    async def probe() -> None:
        while not done.is_set():
            t0 = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append((t0, time.perf_counter() - t0 - 0.001))

    tasks = [asyncio.create_task(writer()), asyncio.create_task(probe())]
    await asyncio.sleep(0.3)
    s0 = time.perf_counter()
    await cache.checkpoint()
    s1 = time.perf_counter()
    await asyncio.sleep(0.1)
    done.set()
    await asyncio.gather(*tasks)
    during = [d for t, d in writes if s0 - d <= t <= s1]
    lag = [d for t, d in lags if s0 - d <= t <= s1]
    return {
        "snapshot_s": s1 - s0,
        "writes": len(during),
        "max_write_ms": max(during, default=0) * 1000,
        "max_lag_ms": max(lag, default=0) * 1000,
    }


def _argv(data: Path, port: int) -> list[str]:
    addr = f"127.0.0.1:{port}"
    return [
        "--id", "1", "--addr", addr, "--peers", f"1={addr}", "--data", str(data),
        "--fsync", "always", "--log-threshold", "100000000", "--trailing", "20000",
    ]  # fmt: skip


def _free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def bench(data: Path, entries: int) -> dict[str, Any]:
    """Every figure, one node."""
    config = config_from(parse_args(_argv(data, _free_port())))
    cache = await DistributedCache.create(config)
    out: dict[str, Any] = {}
    try:
        while not cache.is_leader():
            await asyncio.sleep(0.02)
        t0 = time.perf_counter()
        await _load(cache, entries)
        out["load_s"] = time.perf_counter() - t0
        out["thread"] = await _stall(cache, fork=False)
        if hasattr(os, "fork"):
            out["fork"] = await _stall(cache, fork=True)
        await cache.checkpoint()
        for start in range(0, 10_000, 64):
            await asyncio.gather(
                *(cache.put(b"log-%d" % i, VALUE) for i in range(start, min(10_000, start + 64)))
            )
        out["entries"] = len(cache.state_machine)
    finally:
        await cache.shutdown()
    t0, c0 = time.perf_counter(), time.process_time()
    cache = await DistributedCache.create(config)
    out["restart_ready_s"] = time.perf_counter() - t0
    out["restart_cpu_s"] = time.process_time() - c0
    await cache.shutdown()
    return out


def report(out: dict[str, Any]) -> str:
    """The figures as markdown lines."""
    lines = [f"- {out['entries']:,} entries, loaded in {out['load_s']:.1f} s"]
    for name in ("thread", "fork"):
        if name in out:
            r = out[name]
            lines.append(
                f"- snapshot by {name}: {r['snapshot_s']:.2f} s; longest write meanwhile "
                f"{r['max_write_ms']:.1f} ms ({r['writes']} writes), longest event-loop lag "
                f"{r['max_lag_ms']:.1f} ms"
            )
    if "fork" in out and out["thread"]["max_write_ms"]:
        ratio = out["fork"]["max_write_ms"] / out["thread"]["max_write_ms"]
        lines.append(f"- longest write, fork / thread: {ratio:.1f}x")
    lines.append(
        f"- restart with that snapshot + 10,000 log entries: ready in "
        f"{out['restart_ready_s']:.2f} s ({out['restart_cpu_s']:.2f} s CPU)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    p = argparse.ArgumentParser()
    p.add_argument("--entries", type=int, default=1_000_000)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="crema-stall-") as tmp:
        out = asyncio.run(bench(Path(tmp), args.entries))
    print(f"load average {os.getloadavg()[0]:.2f}, Python {sys.version.split()[0]}")
    print(report(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

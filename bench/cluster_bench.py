"""Cluster benchmark: 3 crema node processes on loopback vs 3 PySyncObj processes.

Run: ``.venv/bin/python bench/cluster_bench.py [--entries 1000000] [--out FILE]``
(needs the ``bench`` extra for PySyncObj: ``pip install -e '.[bench]'``).

Each crema node is a process (``python bench/cluster_bench.py node ...``,
which is ``python -m crema.node`` plus benchmark ops) with WAL fsync
``always``. Clients run inside the leader's process through the embedded
API (``DistributedCache.put`` / ``consistent_get``), so the figures are the
node's, not a client protocol's. Reported:

* write throughput and p50/p99 latency with 1, 16, 256 and 4096 concurrent writers;
* ``consistent_get`` throughput with 16 concurrent readers;
* the longest write stall while a snapshot of ``--entries`` entries is taken;
* restart-to-ready of a follower with that snapshot plus 10,000 log entries
  (SIGKILL, respawn: time to READY, i.e. recovered and serving local reads,
  and time until caught up with the leader);
* the same write load on a 3-node PySyncObj ``ReplDict`` cluster (in-memory
  journal), as a ratio;
* CPU time per write of the leader and the followers (user + system).

The nodes run on uvloop when it is installed (the ``bench`` extra) and with a
gen-0 GC threshold of 50,000 (``--gc-gen0``; 0 keeps Python's default).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from crema.cache.commands import MSet
from crema.node import DistributedCache
from crema.node.__main__ import ExtraOps, parse_args, run_node

VALUE = b"v" * 100


def _summary(lat: list[float], elapsed: float) -> dict[str, Any]:
    return {
        "ops": len(lat),
        "per_s": len(lat) / elapsed,
        "p50": _pct(lat, 0.5),
        "p99": _pct(lat, 0.99),
    }


def _pct(lat: list[float], q: float) -> float:
    if not lat:
        return 0.0
    lat = sorted(lat)
    return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000


async def op_writes(cache: DistributedCache, req: dict[str, Any]) -> dict[str, Any]:
    """``writers`` concurrent put loops for ``seconds``; throughput and latency."""
    writers, seconds = int(req["writers"]), float(req["seconds"])
    lat: list[float] = []
    end = time.perf_counter() + seconds

    async def writer(w: int) -> None:
        n = 0
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            await cache.put(b"w%d-%d" % (w, n), VALUE)
            lat.append(time.perf_counter() - t0)
            n += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    elapsed = time.perf_counter() - t0
    return {
        "ops": len(lat),
        "per_s": len(lat) / elapsed,
        "p50": _pct(lat, 0.5),
        "p99": _pct(lat, 0.99),
    }


async def op_reads(cache: DistributedCache, req: dict[str, Any]) -> dict[str, Any]:
    """``readers`` concurrent consistent_get loops for ``seconds``."""
    readers, seconds = int(req["readers"]), float(req["seconds"])
    count = 0
    end = time.perf_counter() + seconds

    async def reader() -> None:
        nonlocal count
        while time.perf_counter() < end:
            await cache.consistent_get(b"w0-0")
            count += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(reader() for _ in range(readers)))
    return {"ops": count, "per_s": count / (time.perf_counter() - t0)}


async def op_load(cache: DistributedCache, req: dict[str, Any]) -> int:
    """Load ``n`` entries (keys ``session:N``, 100-300 byte values) with MSET batches."""
    n, batch = int(req["n"]), 1000
    pending: list[Any] = []
    for start in range(0, n, batch):
        pairs = tuple(
            (b"session:%07d" % i, b"x" * (100 + i % 200))
            for i in range(start, min(n, start + batch))
        )
        pending.append(cache.execute(MSet(pairs, cache.clock_ms())))
        if len(pending) >= 4:
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)
    return cache.raft_index()


async def op_stall(cache: DistributedCache, req: dict[str, Any]) -> dict[str, Any]:
    """One writer loop while a checkpoint runs: the longest write during the snapshot."""
    lat: list[tuple[float, float]] = []
    done = asyncio.Event()

    async def writer() -> None:
        n = 0
        while not done.is_set():
            t0 = time.perf_counter()
            await cache.put(b"stall-%d" % n, VALUE)
            lat.append((t0, time.perf_counter() - t0))
            n += 1

    task = asyncio.create_task(writer())
    await asyncio.sleep(0.5)
    s0 = time.perf_counter()
    info = await cache.checkpoint()
    s1 = time.perf_counter()
    await asyncio.sleep(0.2)
    done.set()
    await task
    during = [d for t, d in lat if s0 - d <= t <= s1]
    before = [d for t, d in lat if t < s0]
    return {
        "snapshot_s": s1 - s0,
        "entries": info.entry_count,
        "size": info.size,
        "max_ms": max(during, default=0) * 1000,
        "writes_during": len(during),
        "p99_before_ms": _pct(before, 0.99),
    }


async def op_fill_log(cache: DistributedCache, req: dict[str, Any]) -> int:
    """``n`` more single-key writes (log entries after the snapshot), 64 at a time."""
    n = int(req["n"])
    for start in range(0, n, 64):
        await asyncio.gather(
            *(cache.put(b"log-%d" % i, VALUE) for i in range(start, min(n, start + 64)))
        )
    return cache.raft_index()


async def op_cpu(cache: DistributedCache, req: dict[str, Any]) -> float:
    """CPU seconds (user + system) this node process used so far."""
    t = os.times()
    return t.user + t.system


OPS: ExtraOps = {
    "cpu": op_cpu,
    "writes": op_writes,
    "reads": op_reads,
    "load": op_load,
    "stall": op_stall,
    "fill_log": op_fill_log,
}


class Proc:
    """A benchmark node process and its control connection."""

    def __init__(self, argv: list[str]) -> None:
        self.t0 = time.perf_counter()
        self.p = subprocess.Popen(
            [sys.executable, __file__, *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self.p.stdout is not None
        line = self.p.stdout.readline()
        self.ready_s = time.perf_counter() - self.t0
        self.port = int(line.split()[1])
        import socket  # noqa: PLC0415

        self.sock = socket.create_connection(("127.0.0.1", self.port))
        self.f = self.sock.makefile("rwb")

    def call(self, op: str, **fields: Any) -> Any:
        self.f.write(json.dumps({"op": op, **fields}).encode() + b"\n")
        self.f.flush()
        reply = json.loads(self.f.readline())
        if not reply["ok"]:
            raise RuntimeError(reply)
        return reply["value"]

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.p.kill()
        else:
            assert self.p.stdin is not None
            self.p.stdin.close()
        self.p.wait(30)


def _ports(n: int) -> list[int]:
    import socket  # noqa: PLC0415

    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _node_argv(
    i: int, peers: str, addr: str, data: Path, threshold: int, gc_gen0: int = 0
) -> list[str]:
    return [
        "node", "--id", str(i), "--addr", addr, "--peers", peers, "--data", str(data / f"n{i}"),
        "--fsync", "always", "--log-threshold", str(threshold), "--trailing", "20000",
        "--write-timeout", "30", "--gc-gen0", str(gc_gen0),
    ]  # fmt: skip


def _leader(procs: dict[int, Proc]) -> int:
    deadline = time.time() + 30
    while time.time() < deadline:
        leads = {p.call("status")["leader_id"] for p in procs.values()}
        if len(leads) == 1 and None not in leads:
            return int(leads.pop())
        time.sleep(0.05)
    raise RuntimeError("no leader")


def bench_crema(data: Path, entries: int, seconds: float, gc_gen0: int = 0) -> dict[str, Any]:
    """Every crema figure, in one cluster run."""
    ports = _ports(3)
    addrs = {i + 1: f"127.0.0.1:{p}" for i, p in enumerate(ports)}
    peers = ",".join(f"{i}={a}" for i, a in addrs.items())
    threshold = 10_000_000
    argv = {i: _node_argv(i, peers, a, data, threshold, gc_gen0) for i, a in addrs.items()}
    procs = {i: Proc(argv[i]) for i in addrs}
    out: dict[str, Any] = {}
    try:
        lead = procs[_leader(procs)]
        for writers in (1, 16, 256, 4096):
            before = {i: p.call("cpu") for i, p in procs.items()}
            result = lead.call("writes", writers=writers, seconds=seconds)
            used = {i: p.call("cpu") - before[i] for i, p in procs.items()}
            n = max(1, result["ops"])
            result["leader_cpu_us"] = used.pop(next(i for i in procs if procs[i] is lead)) / n * 1e6
            result["follower_cpu_us"] = sum(used.values()) / len(used) / n * 1e6
            out[f"writes_{writers}"] = result
        out["reads_16"] = lead.call("reads", readers=16, seconds=seconds)
        t0 = time.perf_counter()
        lead.call("load", n=entries)
        out["load_s"] = time.perf_counter() - t0
        out["stall"] = lead.call("stall")
        fid = next(i for i in procs if procs[i] is not lead)
        procs[fid].call("checkpoint")
        lead.call("fill_log", n=10_000)
        target = lead.call("status")["applied_index"]
        while procs[fid].call("status")["applied_index"] < target:
            time.sleep(0.01)
        procs[fid].stop(kill=True)
        restarted = procs[fid] = Proc(argv[fid])
        out["restart_ready_s"] = restarted.ready_s
        while restarted.call("status")["applied_index"] < target:
            time.sleep(0.005)
        out["restart_caught_up_s"] = time.perf_counter() - restarted.t0
    finally:
        for p in procs.values():
            p.stop()
    return out


def pso_node(argv: list[str]) -> None:
    """A PySyncObj ReplDict node with a control port (run in a child process)."""
    import socket  # noqa: PLC0415

    from pysyncobj import SyncObj, SyncObjConf  # noqa: PLC0415
    from pysyncobj.batteries import ReplDict  # noqa: PLC0415

    me, partners = argv[0], argv[1].split(",")
    d = ReplDict()
    obj = SyncObj(me, partners, consumers=[d], conf=SyncObjConf(dynamicMembershipChange=False))
    srv = socket.create_server(("127.0.0.1", 0))
    print("READY", srv.getsockname()[1], flush=True)
    conn, _ = srv.accept()
    f = conn.makefile("rwb")
    for line in f:
        req = json.loads(line)
        if req["op"] == "status":
            value: Any = {"leader_id": str(obj._getLeader()), "is_leader": obj._isLeader()}
        else:
            value = _pso_writes(d, int(req["writers"]), float(req["seconds"]))
        f.write(json.dumps({"ok": True, "value": value}).encode() + b"\n")
        f.flush()


def _pso_writes(d: Any, writers: int, seconds: float) -> dict[str, Any]:
    lat: list[float] = []
    lock = threading.Lock()
    end = time.perf_counter() + seconds
    done = threading.Semaphore(0)

    def issue(w: int, n: int) -> None:
        t0 = time.perf_counter()

        def cb(result: Any, err: Any) -> None:
            with lock:
                lat.append(time.perf_counter() - t0)
            if time.perf_counter() < end:
                issue(w, n + 1)
            else:
                done.release()

        d.set(f"w{w}-{n}", VALUE.decode(), callback=cb)

    t0 = time.perf_counter()
    for w in range(writers):
        issue(w, 0)
    for _ in range(writers):
        done.acquire(timeout=seconds + 30)
    elapsed = time.perf_counter() - t0
    return {
        "ops": len(lat),
        "per_s": len(lat) / elapsed,
        "p50": _pct(lat, 0.5),
        "p99": _pct(lat, 0.99),
    }


def bench_pysyncobj(seconds: float) -> dict[str, Any]:
    """The write load on 3 PySyncObj processes (in-memory journal)."""
    addrs = [f"127.0.0.1:{p}" for p in _ports(3)]
    procs = []
    for a in addrs:
        others = ",".join(x for x in addrs if x != a)
        procs.append(Proc(["pso-node", a, others]))
    out: dict[str, Any] = {}
    try:
        deadline = time.time() + 30
        lead = None
        while lead is None and time.time() < deadline:
            lead = next((p for p in procs if p.call("status")["is_leader"]), None)
            time.sleep(0.1)
        assert lead is not None, "PySyncObj elected no leader"
        for writers in (1, 16, 256, 4096):
            out[f"writes_{writers}"] = lead.call("writes", writers=writers, seconds=seconds)
    finally:
        for p in procs:
            p.stop(kill=True)
    return out


def fsync_ms(directory: Path) -> float:
    """Median latency of write+fsync of 100 bytes on the data disk."""
    path = directory / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    samples = []
    for _ in range(50):
        t0 = time.perf_counter()
        os.write(fd, b"x" * 100)
        os.fsync(fd)
        samples.append(time.perf_counter() - t0)
    os.close(fd)
    return statistics.median(samples) * 1000


def report(crema: dict[str, Any], pso: dict[str, Any] | None, fsync: float, entries: int) -> str:
    """The results as Markdown."""
    lscpu = subprocess.run(["lscpu"], check=False, capture_output=True, text=True)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        f"## Cluster: `bench/cluster_bench.py` ({when})",
        "",
        "3 node processes on loopback, WAL fsync `always` "
        f"(median write+fsync here: {fsync:.2f} ms),",
        f"clients in the leader's process through the embedded API. {platform.python_version()}.",
        "",
        "```",
        *lscpu.stdout.splitlines()[:14],
        "```",
        "",
        "| load | crema writes/s | p50 ms | p99 ms "
        "| PySyncObj writes/s | p50 ms | p99 ms | ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for w in (1, 16, 256, 4096):
        c = crema[f"writes_{w}"]
        p = (pso or {}).get(f"writes_{w}", {"per_s": 0.0, "p50": 0.0, "p99": 0.0})
        ratio = c["per_s"] / p["per_s"] if p["per_s"] else float("nan")
        lines.append(
            f"| {w} writers | {c['per_s']:,.0f} | {c['p50']:.2f} | {c['p99']:.2f} | "
            f"{p['per_s']:,.0f} | {p['p50']:.2f} | {p['p99']:.2f} | {ratio:.2f}x |"
        )
    stall = crema["stall"]
    lines += [
        "",
        "CPU per write (user + system, microseconds), leader / mean follower: "
        + ", ".join(
            f"{w} writers {crema[f'writes_{w}']['leader_cpu_us']:.0f} / "
            f"{crema[f'writes_{w}']['follower_cpu_us']:.0f}"
            for w in (1, 16, 256, 4096)
        )
        + f"; node GC gen-0 threshold: {crema.get('gc_gen0') or 'default'}.",
        "",
        f"- consistent_get, 16 readers: {crema['reads_16']['per_s']:,.0f}/s",
        f"- load of {entries:,} entries (MSET batches of 1,000): {crema['load_s']:.1f} s",
        f"- snapshot of {stall['entries']:,} entries ({stall['size'] / 1e6:.1f} MB) took "
        f"{stall['snapshot_s']:.2f} s; longest write meanwhile {stall['max_ms']:.1f} ms "
        f"({stall['writes_during']} writes; p99 before: {stall['p99_before_ms']:.2f} ms)",
        f"- follower restart with that snapshot + 10,000 log entries: READY (recovered, serving) "
        f"in {crema['restart_ready_s']:.2f} s, caught up in {crema['restart_caught_up_s']:.2f} s",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, as a child process, one node)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "node":
        run_node(parse_args(argv[1:]), OPS)
        return 0
    if argv and argv[0] == "pso-node":
        pso_node(argv[1:])
        return 0
    p = argparse.ArgumentParser()
    p.add_argument("--entries", type=int, default=1_000_000)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--out", default=None)
    p.add_argument("--no-pysyncobj", action="store_true")
    p.add_argument(
        "--gc-gen0",
        type=int,
        default=50_000,
        help="the nodes' gen-0 GC threshold (python -m crema.node --gc-gen0; 0: default)",
    )
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        fsync = fsync_ms(Path(tmp))
        crema = bench_crema(Path(tmp), args.entries, args.seconds, args.gc_gen0)
        crema["gc_gen0"] = args.gc_gen0
    pso = None if args.no_pysyncobj else bench_pysyncobj(args.seconds)
    text = report(crema, pso, fsync, args.entries)
    print(text)
    print(json.dumps({"crema": crema, "pysyncobj": pso}, indent=1))
    if args.out:
        with open(args.out, "a") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A 3-node crema cluster under redis-benchmark, against redis-server and a 3-member etcd.

Run: ``.venv/bin/python bench/resp_bench.py [--scale F]``.

In one run, on loopback ports only:

1. a 3-node crema cluster (three ``crema serve`` processes, ``--raft-fsync
   always``, default settings): ``redis-benchmark -t set`` through the leader,
   through a follower and spread over all three nodes (three runs at once,
   the 50 clients split among them, as the etcd clients are spread over its
   members), ``-t get`` in the default ``linearizable`` read
   mode, then a second cluster started with ``--read-mode local`` for GET in
   ``local`` mode (leader and follower);
2. a single ``redis-server --save '' --appendonly no``: SET and GET;
3. a 3-member etcd cluster (Debian ``etcd-server``), puts through its HTTP/JSON
   gateway (``/v3/kv/put``) from an asyncio client with 64 concurrent
   keep-alive connections spread over the members.

redis-benchmark runs with 50 clients, 100-byte values, pipeline 1 and 16 and a
bounded request count per case; requests/s, p50 and p99 come from its
``--csv`` output. The program prints every figure and the ratios crema
linearizable GET / Redis GET (target >= 0.40), crema local GET / Redis GET
(target >= 0.60) and crema SET / etcd put (target >= 3). Every process it
starts is stopped by PID in a ``finally``; each load is bounded in count and
time. Needs Debian's ``redis-server``, ``redis-tools`` and ``etcd-server``
(etcd is skipped, and said so, when missing).

An earlier version of this program measured the single-node preview
(``python -m crema.server``); its report is ``bench/RESULTS_server.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import csv
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from crema.cli.local_cluster import LocalCluster, ServeNode, free_ports

CLIENTS = 50
VALUE_BYTES = 100
ETCD_CLIENTS = 64
BENCH_TIMEOUT = 90.0
KEY = "key:__rand_int__"  # the key redis-benchmark uses without -r


@dataclass
class Figure:
    """One measured case."""

    system: str
    case: str
    pipeline: int
    rps: float
    p50: float
    p99: float
    leader_cpu_us: float | None = None
    """CPU time (user + system) of the leader process per request, in microseconds."""


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid`` (from ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def redis_benchmark(port: int, test: str, pipeline: int, requests: int) -> tuple[float, ...]:
    """``(requests/s, p50 ms, p99 ms)`` of one ``redis-benchmark -t test`` run.

    Args:
        port: Loopback port of the server.
        test: ``set`` or ``get``.
        pipeline: ``-P`` value.
        requests: ``-n`` value.

    Returns:
        Requests per second, p50 and p99 latency in milliseconds.
    """
    argv = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", test,
            "-c", str(CLIENTS), "-n", str(requests), "-P", str(pipeline),
            "-d", str(VALUE_BYTES), "--csv"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=BENCH_TIMEOUT, check=True)
    for row in csv.DictReader(io.StringIO(done.stdout)):
        return (float(row["rps"]), float(row["p50_latency_ms"]), float(row["p99_latency_ms"]))
    raise RuntimeError(f"no CSV row from redis-benchmark: {done.stdout!r} {done.stderr!r}")


def redis_benchmark_spread(
    ports: list[int], test: str, pipeline: int, requests: int
) -> tuple[float, ...]:
    """``redis-benchmark`` against every port at once, :data:`CLIENTS` clients in all.

    Clients and requests are split evenly over the nodes, as etcd's clients
    are spread over its members. Returns the total requests/s (all requests
    over the slowest run's wall time) and the highest p50 and p99 of the runs.
    """
    share = [CLIENTS // len(ports) + (i < CLIENTS % len(ports)) for i in range(len(ports))]
    procs = []
    began = time.perf_counter()
    for port, clients in zip(ports, share, strict=True):
        n = requests * clients // CLIENTS
        argv = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", test,
                "-c", str(clients), "-n", str(n), "-P", str(pipeline),
                "-d", str(VALUE_BYTES), "--csv"]  # fmt: skip
        procs.append((n, subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)))
    rows = []
    total = 0
    for n, proc in procs:
        out, err = proc.communicate(timeout=BENCH_TIMEOUT)
        if proc.returncode != 0:
            raise RuntimeError(f"redis-benchmark failed: {err.decode()!r}")
        rows += list(csv.DictReader(io.StringIO(out.decode())))
        total += n
    elapsed = time.perf_counter() - began
    p50 = max(float(r["p50_latency_ms"]) for r in rows)
    p99 = max(float(r["p99_latency_ms"]) for r in rows)
    return (total / elapsed, p50, p99)


def wait_port(port: int, timeout: float = 30.0) -> None:
    """Wait until something accepts connections on loopback ``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


def stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM ``proc`` (by its PID), then SIGKILL after ``grace`` seconds."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


@contextlib.contextmanager
def started(argv: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` (output to ``log``) for the ``with`` block; stop it by PID after."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    try:
        yield proc
    finally:
        stop(proc)


def bench_redis(tmp: Path, scale: float) -> list[Figure]:
    """SET and GET against one redis-server without persistence."""
    port = free_ports(1)[0]
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(tmp)]  # fmt: skip
    figures = []
    with started(argv, tmp / "redis.log"):
        wait_port(port)
        for test in ("set", "get"):
            for pipeline in (1, 16):
                n = int((150_000 if pipeline == 1 else 800_000) * scale)
                rps, p50, p99 = redis_benchmark(port, test, pipeline, n)
                figures.append(Figure("redis", test.upper(), pipeline, rps, p50, p99))
    return figures


def crema_cases(
    system: str, nodes: list[tuple[str, ServeNode]], test: str, scale: float
) -> list[Figure]:
    """``test`` at pipeline 1 and 16 through each ``(role, node)`` (the leader first)."""
    figures = []
    leader_pid = nodes[0][1].pid
    for role, node in nodes:
        for pipeline in (1, 16):
            base, factor = (30_000, 2) if test == "set" else (100_000, 4)
            n = int(base * (factor if pipeline > 1 else 1) * scale)
            cpu = cpu_seconds(leader_pid)
            rps, p50, p99 = redis_benchmark(node.client_port, test, pipeline, n)
            cpu_us = (cpu_seconds(leader_pid) - cpu) / n * 1e6
            figures.append(
                Figure(system, f"{test.upper()} via {role}", pipeline, rps, p50, p99, cpu_us)
            )
    return figures


def spread_cases(
    system: str, nodes: list[ServeNode], leader_pid: int, scale: float
) -> list[Figure]:
    """SET with the clients spread over every node (as the etcd load is), P1 and P16."""
    figures = []
    for pipeline in (1, 16):
        n = int(30_000 * (2 if pipeline > 1 else 1) * scale)
        cpu = cpu_seconds(leader_pid)
        rps, p50, p99 = redis_benchmark_spread([x.client_port for x in nodes], "set", pipeline, n)
        cpu_us = (cpu_seconds(leader_pid) - cpu) / n * 1e6
        figures.append(Figure(system, "SET spread over all nodes", pipeline, rps, p50, p99, cpu_us))
    return figures


def bench_crema(tmp: Path, read_mode: str, scale: float) -> list[Figure]:
    """A 3-node cluster (fsync always): SET (linearizable mode only) and GET."""
    cluster = LocalCluster(
        tmp / f"crema-{read_mode}", 3, ("--raft-fsync", "always", "--read-mode", read_mode)
    )
    try:
        cluster.start_all()
        leader = cluster.wait_leader()
        follower = next(n for n in cluster.nodes if n.node_id != leader.node_id)
        nodes = [("leader", leader), ("follower", follower)]
        system = f"crema {read_mode}"
        figures = []
        if read_mode == "linearizable":
            figures += crema_cases(system, nodes, "set", scale)
            figures += spread_cases(system, cluster.nodes, leader.pid, scale)
        else:
            with leader.client() as client:
                client.set(KEY, b"x" * VALUE_BYTES)
        figures += crema_cases(system, nodes, "get", scale)
        return figures
    finally:
        cluster.stop_all()


async def etcd_load(urls: list[tuple[str, int]], count: int, seconds: float) -> Figure:
    """``count`` puts (at most ``seconds``) from :data:`ETCD_CLIENTS` keep-alive connections."""
    value = base64.b64encode(b"x" * VALUE_BYTES).decode()
    latencies: list[float] = []
    remaining = [count]
    deadline = time.monotonic() + seconds

    async def client(host: str, port: int, index: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while remaining[0] > 0 and time.monotonic() < deadline:
                remaining[0] -= 1
                key = base64.b64encode(f"key:{index}:{remaining[0]}".encode()).decode()
                body = json.dumps({"key": key, "value": value}).encode()
                head = (f"POST /v3/kv/put HTTP/1.1\r\nHost: {host}:{port}\r\n"
                        "Content-Type: application/json\r\n"
                        f"Content-Length: {len(body)}\r\n\r\n")  # fmt: skip
                start = time.perf_counter()
                writer.write(head.encode() + body)
                status = await reader.readline()
                length = -1
                chunked = False
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, val = line.decode().partition(":")
                    if name.lower() == "content-length":
                        length = int(val)
                    elif name.lower() == "transfer-encoding" and "chunked" in val:
                        chunked = True
                if chunked:
                    while (size := int((await reader.readline()).strip(), 16)) > 0:
                        await reader.readexactly(size + 2)
                    await reader.readline()
                else:
                    await reader.readexactly(length)
                latencies.append(time.perf_counter() - start)
                if b" 200 " not in status:
                    raise RuntimeError(f"etcd put failed: {status!r}")
        finally:
            writer.close()

    began = time.perf_counter()
    await asyncio.gather(*(client(*urls[i % len(urls)], i) for i in range(ETCD_CLIENTS)))
    elapsed = time.perf_counter() - began
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    return Figure("etcd", "put", 1, len(latencies) / elapsed, p50, p99)


def bench_etcd(tmp: Path, scale: float) -> list[Figure]:
    """Puts into a 3-member etcd cluster through its HTTP/JSON gateway."""
    if shutil.which("etcd") is None:
        print("etcd not found (Debian etcd-server): etcd skipped")
        return []
    ports = free_ports(6)
    peer = {i: f"http://127.0.0.1:{ports[3 + i]}" for i in range(3)}
    cluster = ",".join(f"m{i}={peer[i]}" for i in range(3))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(3):
            client_url = f"http://127.0.0.1:{ports[i]}"
            argv = ["etcd", "--name", f"m{i}", "--data-dir", str(tmp / f"etcd-{i}"),
                    "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
                    "--listen-peer-urls", peer[i], "--initial-advertise-peer-urls", peer[i],
                    "--initial-cluster", cluster, "--initial-cluster-state", "new",
                    "--initial-cluster-token", "crema-bench", "--log-level", "error"]  # fmt: skip
            with open(tmp / f"etcd-{i}.log", "ab") as out:
                procs.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                              stderr=out))  # fmt: skip
        for port in ports[:3]:
            wait_port(port)
        urls = [("127.0.0.1", p) for p in ports[:3]]
        deadline = time.monotonic() + 30
        while True:  # until the cluster has a leader and takes a put
            try:
                asyncio.run(etcd_load(urls[:1], 1, 5.0))
                break
            except (OSError, EOFError, RuntimeError, ValueError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        return [asyncio.run(etcd_load(urls, int(30_000 * scale), 20.0))]
    finally:
        for proc in procs:
            stop(proc)


def ratio_lines(figures: list[Figure]) -> list[str]:
    """The target ratios, one line each, with met / not met."""

    def rps(system: str, case: str, pipeline: int) -> float | None:
        for f in figures:
            if (f.system, f.case, f.pipeline) == (system, case, pipeline):
                return f.rps
        return None

    lines = []
    checks = [
        ("crema linearizable GET / Redis GET", "crema linearizable", "GET via leader", "GET", 0.40),
        ("crema local GET / Redis GET", "crema local", "GET via leader", "GET", 0.60),
        ("crema local GET (follower) / Redis GET", "crema local", "GET via follower", "GET", 0.60),
    ]
    for label, system, case, ref, target in checks:
        for pipeline in (1, 16):
            a, b = rps(system, case, pipeline), rps("redis", ref, pipeline)
            if a is not None and b:
                met = "met" if a / b >= target else "NOT met"
                lines.append(f"{label}, P{pipeline}: {a / b:.2f} (target >= {target}: {met})")
    etcd = rps("etcd", "put", 1)
    for case in ("SET via leader", "SET via follower", "SET spread over all nodes"):
        for pipeline in (1, 16):
            a = rps("crema linearizable", case, pipeline)
            if a is not None and etcd:
                met = "met" if a / etcd >= 3 else "NOT met"
                lines.append(f"crema {case} P{pipeline} / etcd put: {a / etcd:.2f}x "
                             f"(target >= 3x: {met})")  # fmt: skip
    if not etcd:
        lines.append("crema SET / etcd put: etcd not measured")
    return lines


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (for the report's header)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown CPU"


def main() -> int:
    """Run every case, print the table and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every request count")
    args = parser.parse_args()
    for tool in ("redis-server", "redis-benchmark"):
        if shutil.which(tool) is None:
            print(f"{tool} not found (Debian packages redis-server, redis-tools)")
            return 1
    began = time.monotonic()
    figures: list[Figure] = []
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {cpu_model()}, "
          f"{os.cpu_count()} CPUs; load average before: {os.getloadavg()}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="crema-resp-bench-") as name:
        tmp = Path(name)
        figures += bench_redis(tmp, args.scale)
        figures += bench_crema(tmp, "linearizable", args.scale)
        figures += bench_crema(tmp, "local", args.scale)
        figures += bench_etcd(tmp, args.scale)
    print(f"redis-benchmark: {CLIENTS} clients, {VALUE_BYTES}-byte values; "
          f"etcd: {ETCD_CLIENTS} asyncio clients over HTTP/JSON, no pipelining\n")  # fmt: skip
    print("| system | case | pipeline | requests/s | p50 ms | p99 ms | leader CPU us/req |")
    print("|---|---|---|---|---|---|---|")
    for f in figures:
        cpu = "" if f.leader_cpu_us is None else f"{f.leader_cpu_us:.0f}"
        print(f"| {f.system} | {f.case} | {f.pipeline} | {f.rps:,.0f} | {f.p50:.2f} "
              f"| {f.p99:.2f} | {cpu} |")  # fmt: skip
    print()
    for line in ratio_lines(figures):
        print(line)
    print(f"\nload average after: {os.getloadavg()}")
    print(f"total run time {time.monotonic() - began:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

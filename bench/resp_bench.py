"""The RESP server under redis-benchmark, against a real redis-server in the same run.

Run: ``.venv/bin/python bench/resp_bench.py [--requests N] [--write]``.
Starts ``redis-server`` and the single-node preview (``python -m
crema.server``: a ``LocalBackend``, no Raft, no replication) on loopback
ports, runs ``redis-benchmark -t set,get -c 50 -d 100`` at pipeline 1 and
16 against each (crema in ``linearizable`` and in ``local`` read mode), and
prints requests/s, p50 and p99 with crema's ratio to Redis. ``--write``
records the table in ``bench/RESULTS_server.md``. Needs Debian's
``redis-server`` and ``redis-tools``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import importlib.util
import io
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

CLIENTS = 50
VALUE_BYTES = 100


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


@contextlib.contextmanager
def process(argv: list[str], port: int) -> Iterator[None]:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def benchmark(port: int, pipeline: int, requests: int) -> dict[str, tuple[float, float, float]]:
    """``{"SET": (rps, p50 ms, p99 ms), "GET": ...}`` from redis-benchmark's CSV output."""
    argv = ["redis-benchmark", "-p", str(port), "-t", "set,get", "-c", str(CLIENTS),
            "-n", str(requests), "-P", str(pipeline), "-d", str(VALUE_BYTES), "--csv"]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=600).stdout
    rows = csv.DictReader(io.StringIO(out))
    return {
        row["test"]: (float(row["rps"]), float(row["p50_latency_ms"]), float(row["p99_latency_ms"]))
        for row in rows
    }


def run(requests: int) -> list[tuple[str, int, str, tuple[float, float, float]]]:
    """Every (server, pipeline, test, figures) measured."""
    results = []
    redis_port = free_port()
    redis_argv = ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                  "--appendonly", "no"]  # fmt: skip
    crema = [sys.executable, "-m", "crema.server", "--port"]
    servers = [("redis", redis_argv, redis_port)]
    for mode in ("linearizable", "local"):
        port = free_port()
        servers.append((f"crema {mode}", [*crema, str(port), "--read-mode", mode], port))
    for name, argv, port in servers:
        with process(argv, port):
            for pipeline in (1, 16):
                n = requests * (4 if pipeline > 1 else 1)
                for test, figures in benchmark(port, pipeline, n).items():
                    results.append((name, pipeline, test, figures))
    return results


def table(results: list[tuple[str, int, str, tuple[float, float, float]]]) -> str:
    reference = {(p, t): f[0] for name, p, t, f in results if name == "redis"}
    lines = ["| server | pipeline | test | requests/s | p50 ms | p99 ms | vs Redis |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, pipeline, test, (rps, p50, p99) in results:
        ratio = rps / reference[(pipeline, test)]
        lines.append(f"| {name} | {pipeline} | {test} | {rps:,.0f} | {p50:.2f} | {p99:.2f} "
                     f"| {ratio:.2f} |")  # fmt: skip
    return "\n".join(lines)


def machine() -> str:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    return "\n".join(lscpu.splitlines()[:10])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=50_000, help="requests per test at -P 1")
    parser.add_argument("--write", action="store_true", help="record in bench/RESULTS_server.md")
    args = parser.parse_args()
    for tool in ("redis-server", "redis-benchmark"):
        if shutil.which(tool) is None:
            print(f"{tool} not found (Debian packages redis-server, redis-tools)")
            return 1
    loop = "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"
    text = table(run(args.requests))
    print(text)
    if args.write:
        date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        body = (
            "# RESP server benchmark\n\n"
            f"`bench/resp_bench.py`, {date}. redis-benchmark, {CLIENTS} clients, "
            f"{VALUE_BYTES}-byte values, {args.requests} requests per test at pipeline 1 "
            f"(4x at pipeline 16). crema is the **single-node preview** "
            f"(`python -m crema.server`, LocalBackend: no Raft, no fsync) on {loop}; "
            "redis-server 7.0 without persistence, in the same run.\n\n"
            f"{text}\n\n## Machine\n\n```\n{machine()}\n```\n"
        )
        Path(__file__).with_name("RESULTS_server.md").write_text(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

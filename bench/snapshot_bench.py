"""Snapshot benchmark: crema's MCRS write / verify / restore against Redis RDB SAVE and load.

Usage::

    .venv/bin/python bench/snapshot_bench.py [--entries 1000000] [--no-redis]

Data: keys ``session:NNNNNNN``, values 100-300 bytes of text, half with a
one-hour TTL. Prints wall and CPU seconds, entries/s, MB/s (of plain body),
file size and compression ratio; the writer's peak RSS for two entry counts
(streamed from a generator, so the data set is not in memory); and, when
``redis-server`` is installed, Redis's ``SAVE`` and restart-load of the same
data in the same run, with crema/Redis ratios (above 1 means crema is faster).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from crema.checkpoint import (
    CheckpointConfig,
    CheckpointManager,
    SnapshotEntry,
    SnapshotInfo,
    SnapshotMetadata,
)

TEXT = b"lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor " * 5
HOUR_MS = 3_600_000


def dataset(count: int, now_ms: int) -> Iterator[tuple[bytes, bytes, int | None]]:
    """The session-cache-shaped data set, generated lazily."""
    for i in range(count):
        start = (i * 7) % 64
        value = TEXT[start : start + 100 + (i * 37) % 201]
        yield b"session:%07d" % i, value, (now_ms + HOUR_MS if i % 2 else None)


class DictTarget:
    """Restore target: a plain dict of key -> entry (value and expiry), like a node's store."""

    def __init__(self) -> None:
        self.data: dict[bytes, SnapshotEntry] = {}

    def restore_entries(self, entries: Iterable[SnapshotEntry]) -> None:
        self.data = {entry.key: entry for entry in entries}


def timed(fn: Callable[[], object]) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds, result)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def report(label: str, wall: float, cpu: float, entries: int, plain_bytes: int) -> None:
    print(
        f"  {label:<28} {wall:7.3f} s wall {cpu:7.3f} s cpu "
        f"{entries / wall / 1e6:6.2f} M entries/s {plain_bytes / wall / 1e6:7.1f} MB/s"
    )


def crema_rounds(count: int, work: Path) -> dict[str, float]:
    """Write, verify and restore with and without compression; returns wall times."""
    now_ms = time.time_ns() // 1_000_000
    data = list(dataset(count, now_ms))
    plain = 8 + sum(16 + len(k) + len(v) for k, v, _ in data)
    results: dict[str, float] = {}
    for compression in (True, False):
        tag = "lz4" if compression else "plain"
        config = CheckpointConfig(work / tag, compression=compression)
        manager = CheckpointManager(config)
        meta = SnapshotMetadata(count, 1, datetime.now(UTC))
        wall, cpu, info = timed(lambda: manager.create_snapshot(meta, data))  # noqa: B023
        assert isinstance(info, SnapshotInfo)
        print(f" {tag}: {info.size / 1e6:.1f} MB on disk, ratio {(plain + 34) / info.size:.2f}x")
        report("write (create_snapshot)", wall, cpu, count, plain)
        results[f"write_{tag}"] = wall
        wall, cpu, _ = timed(lambda: manager.verify_snapshot(info.path))  # noqa: B023
        report("verify", wall, cpu, count, plain)
        results[f"verify_{tag}"] = wall
        target = DictTarget()
        wall, cpu, _ = timed(lambda: manager.restore_from(info.path, target))  # noqa: B023
        assert len(target.data) == count
        report("read+verify+restore to dict", wall, cpu, count, plain)
        results[f"restore_{tag}"] = wall
    return results


WRITER_CHILD = """
import sys, time
from datetime import UTC, datetime
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from snapshot_bench import dataset
from crema.checkpoint import SnapshotMetadata, SnapshotWriter
count = int(sys.argv[1])
meta = SnapshotMetadata(count, 1, datetime.now(UTC))
with SnapshotWriter(Path(sys.argv[2]), meta) as writer:
    writer.write_entries(dataset(count, time.time_ns() // 1_000_000))
status = Path("/proc/self/status").read_text()
print(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")))
"""


def writer_peak_rss_kib(count: int, work: Path) -> int:
    """Peak RSS (VmHWM, KiB) of a process streaming ``count`` generated entries to a snapshot."""
    out = subprocess.run(
        [sys.executable, "-c", WRITER_CHILD, str(count), str(work / f"rss-{count}.snap"),
         str(Path(__file__).parent)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return int(out.stdout.strip())


# -- Redis ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Redis:
    """A redis-server on loopback, driven with raw RESP (no client library needed)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.sock: socket.socket | None = None

    def start(self) -> float:
        """Start (loading dump.rdb if present); returns seconds until it serves."""
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.workdir), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                self.sock = socket.create_connection(("127.0.0.1", self.port))
                if self.command(b"PING") == b"+PONG":
                    return time.perf_counter() - started
                self.sock.close()
            except OSError:
                pass
            time.sleep(0.005)
        raise RuntimeError("redis-server did not start")

    def command(self, *args: bytes) -> bytes:
        assert self.sock is not None
        self.sock.sendall(encode_command(args))
        return self.sock.recv(1 << 16).split(b"\r\n")[0]

    def load(self, entries: Iterable[tuple[bytes, bytes, int | None]]) -> None:
        assert self.sock is not None
        batch: list[bytes] = []
        for key, value, expiry in entries:
            if expiry is None:
                batch.append(encode_command((b"SET", key, value)))
            else:
                batch.append(encode_command((b"SET", key, value, b"PXAT", b"%d" % expiry)))
            if len(batch) == 5000:
                self._send_batch(batch)
        self._send_batch(batch)

    def _send_batch(self, batch: list[bytes]) -> None:
        assert self.sock is not None
        self.sock.sendall(b"".join(batch))
        expected = len(batch) * 5  # "+OK\r\n"
        received = 0
        while received < expected:
            received += len(self.sock.recv(1 << 20))
        batch.clear()

    def stop(self) -> None:
        if self.sock is not None:
            self.sock.close()
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=60)


def encode_command(args: Iterable[bytes]) -> bytes:
    items = list(args)
    out = [b"*%d\r\n" % len(items)]
    for arg in items:
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


def redis_rounds(count: int, work: Path) -> dict[str, float] | None:
    if shutil.which("redis-server") is None:
        print(" redis-server not installed: skipping the Redis comparison")
        return None
    workdir = work / "redis"
    workdir.mkdir()
    redis = Redis(workdir)
    redis.start()
    try:
        redis.load(dataset(count, time.time_ns() // 1_000_000))
        started = time.perf_counter()
        reply = redis.command(b"SAVE")
        save = time.perf_counter() - started
        assert reply == b"+OK", reply
    finally:
        redis.stop()
    rdb = workdir / "dump.rdb"
    print(f" redis: dump.rdb {rdb.stat().st_size / 1e6:.1f} MB")
    restarted = Redis(workdir)
    load = restarted.start()
    keys = restarted.command(b"DBSIZE")
    restarted.stop()
    assert keys == b":%d" % count, keys
    for label, seconds in (("SAVE", save), ("restart + load dump.rdb", load)):
        print(f"  {label:<28} {seconds:7.3f} s wall {count / seconds / 1e6:6.2f} M entries/s")
    return {"save": save, "load": load}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--no-redis", action="store_true")
    args = parser.parse_args(argv)
    version = sys.version.split()[0]
    print(f"snapshot_bench: {args.entries} entries, {os.cpu_count()} CPUs, python {version}")
    work = Path(tempfile.mkdtemp(prefix="crema-bench-"))
    try:
        print("crema (MCRS):")
        crema = crema_rounds(args.entries, work)
        small, large = args.entries // 10, args.entries
        rss_small, rss_large = writer_peak_rss_kib(small, work), writer_peak_rss_kib(large, work)
        print(f" writer peak RSS: {rss_small / 1024:.1f} MiB for {small} entries, "
              f"{rss_large / 1024:.1f} MiB for {large} entries")  # fmt: skip
        redis = None if args.no_redis else redis_rounds(args.entries, work)
        if redis is not None:
            print("ratios crema/Redis (time of Redis / time of crema; > 1 means crema is faster):")
            print(f"  write lz4 vs SAVE:            {redis['save'] / crema['write_lz4']:.2f}")
            print(f"  write plain vs SAVE:          {redis['save'] / crema['write_plain']:.2f}")
            print(f"  restore lz4 vs restart load:  {redis['load'] / crema['restore_lz4']:.2f}")
            print(f"  restore plain vs restart load: {redis['load'] / crema['restore_plain']:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

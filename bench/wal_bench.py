"""Benchmark of the Raft WAL (DiskStorage) against LMDB and SQLite (WAL mode).

Run: ``.venv/bin/python bench/wal_bench.py [--batches N] [--out bench/RESULTS_wal.md]``
(needs the ``bench`` extra: ``pip install -e '.[bench]'``).

Workload: 100-byte entries appended in batches of 1, 10, 100 and 1000; every
batch is made durable before the next one starts (one fsync per batch):

* crema: ``append(batch)`` then ``commit()`` with fsync policy ``always``;
* LMDB: one write transaction per batch (``putmulti``), ``sync=True``
  (the default: the commit fsyncs data and meta pages);
* SQLite: one transaction per batch (``executemany``) with
  ``journal_mode=WAL`` and ``synchronous=FULL`` (the commit fsyncs the WAL).

Entries are built before the clock starts; each store encodes them inside
the timed region. Reported: records/s, p50/p99 latency per batch, and the
ratio crema / peer. Then the time to reopen a 1,000,000-entry WAL. The raw
fsync latency of the disk is measured too, since it bounds everything else.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lmdb

from crema.raft.types import Entry, EntryType, Index, Term
from crema.storage import DiskStorage

BATCH_SIZES = (1, 10, 100, 1000)
ENTRY_BYTES = 100
VALUE_HEAD = struct.Struct("<QB")

Batch = list[Entry]
Writer = Callable[[Batch], None]


@dataclass(frozen=True)
class Result:
    records_per_s: float
    p50_ms: float
    p99_ms: float


def make_batches(batch: int, count: int) -> list[Batch]:
    data = b"x" * ENTRY_BYTES
    return [
        [Entry(Index(lo + k), Term(1), EntryType.NORMAL, data) for k in range(batch)]
        for lo in range(1, batch * count + 1, batch)
    ]


class Timings:
    """Per-batch latencies and total time of one store."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.elapsed = 0.0
        self.records = 0

    def run(self, write: Writer, batches: list[Batch]) -> None:
        clock = time.perf_counter
        start = clock()
        for batch in batches:
            t = clock()
            write(batch)
            self.latencies.append(clock() - t)
        self.elapsed += clock() - start
        self.records += sum(map(len, batches))

    def result(self) -> Result:
        latencies = sorted(self.latencies)
        n = len(latencies)
        return Result(
            records_per_s=self.records / self.elapsed,
            p50_ms=statistics.median(latencies) * 1e3,
            p99_ms=latencies[min(n - 1, int(n * 0.99))] * 1e3,
        )


Opened = tuple[Writer, Callable[[], None]]  # write one batch durably, close


def open_crema(directory: Path, fsync: str = "always") -> Opened:
    wal = DiskStorage.open(directory, fsync=fsync)

    def write(batch: Batch) -> None:
        wal.append(batch)
        wal.commit()

    return write, wal.close


def open_lmdb(directory: Path) -> Opened:
    env = lmdb.open(str(directory), map_size=1 << 34, sync=True, metasync=True)
    pack = VALUE_HEAD.pack

    def write(batch: Batch) -> None:
        with env.begin(write=True) as txn:
            txn.cursor().putmulti(
                [(e.index.to_bytes(8, "big"), pack(e.term, e.type) + e.data) for e in batch]
            )

    return write, env.close


def open_sqlite(directory: Path) -> Opened:
    directory.mkdir()
    conn = sqlite3.connect(directory / "log.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(
        "CREATE TABLE log (idx INTEGER PRIMARY KEY, term INTEGER, type INTEGER, data BLOB)"
    )
    sql = "INSERT OR REPLACE INTO log VALUES (?, ?, ?, ?)"

    def write(batch: Batch) -> None:
        conn.execute("BEGIN")
        conn.executemany(sql, [(e.index, e.term, int(e.type), e.data) for e in batch])
        conn.execute("COMMIT")

    return write, conn.close


STORES: dict[str, Callable[[Path], Opened]] = {
    "crema": open_crema,
    "lmdb": open_lmdb,
    "sqlite": open_sqlite,
    "crema-cpu": lambda d: open_crema(d, fsync="never"),
}


def bench_batch_size(root: Path, batches: list[Batch], rounds: int = 8) -> dict[str, Result]:
    """Every store writes the same batches; they take turns, a slice per round.

    Taking turns gives each store the same share of whatever else the machine
    and its disk are doing, so the ratios are fair even when absolute figures
    drift.
    """
    root.mkdir(parents=True)
    opened = {name: opener(root / name) for name, opener in STORES.items()}
    timings = {name: Timings() for name in STORES}
    names = list(STORES)
    step = max(1, len(batches) // rounds)
    try:
        for r, lo in enumerate(range(0, len(batches), step)):
            chunk = batches[lo : lo + step]
            for name in names[r % len(names) :] + names[: r % len(names)]:
                timings[name].run(opened[name][0], chunk)
    finally:
        for _, close in opened.values():
            close()
    return {name: t.result() for name, t in timings.items()}


def fsync_latency(directory: Path, samples: int = 200) -> tuple[float, float]:
    """p50 and p99 of a 4 KiB append + fsync, in milliseconds."""
    path = directory / "fsync.probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    times = []
    try:
        for _ in range(samples):
            os.write(fd, b"\0" * 4096)
            t = time.perf_counter()
            os.fsync(fd)
            times.append(time.perf_counter() - t)
    finally:
        os.close(fd)
        path.unlink()
    times.sort()
    return statistics.median(times) * 1e3, times[int(samples * 0.99)] * 1e3


def reopen_time(directory: Path, entries: int, batch: int, repeats: int) -> tuple[float, float]:
    """Build an ``entries``-long WAL in batches; return (seconds to reopen, build rate/s)."""
    data = b"x" * ENTRY_BYTES
    t = time.perf_counter()
    with DiskStorage.open(directory, fsync="never") as wal:
        for lo in range(1, entries + 1, batch):
            wal.append(
                [Entry(Index(i), Term(1), EntryType.NORMAL, data) for i in range(lo, lo + batch)]
            )
        wal.commit()
    build_rate = entries / (time.perf_counter() - t)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        wal = DiskStorage.open(directory, fsync="never")
        best = min(best, time.perf_counter() - t)
        assert wal.last_index() == entries
        wal.close()
    return best, build_rate


def machine() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        lines = "\n".join(lscpu.splitlines()[:10])
    except (OSError, subprocess.CalledProcessError):
        lines = platform.processor()
    versions = f"lmdb {lmdb.version()}, sqlite {sqlite3.sqlite_version}"
    return f"{lines}\nPython {platform.python_version()}, {versions}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=400, help="batches per batch size")
    parser.add_argument("--reopen-entries", type=int, default=1_000_000)
    parser.add_argument(
        "--dir", type=Path, default=None, help="scratch directory (on the disk to test)"
    )
    parser.add_argument("--out", type=Path, default=None, help="also write a Markdown report here")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="wal-bench-", dir=args.dir))
    lines: list[str] = []

    def say(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    try:
        p50, p99 = fsync_latency(root)
        say(f"# WAL benchmark ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})")
        say()
        say("```")
        say(machine())
        say("```")
        say()
        say(f"fsync of a 4 KiB append on this disk: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
        say()
        say(
            "| batch | crema rec/s | p50 ms | p99 ms | LMDB rec/s | p50 ms | SQLite rec/s | p50 ms "
            "| crema/LMDB | crema/SQLite | crema CPU-only rec/s |"
        )
        say("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for size in BATCH_SIZES:
            count = max(20, args.batches if size < 1000 else args.batches // 2)
            batches = make_batches(size, count)
            results = bench_batch_size(root / f"batch-{size}", batches)
            c, m, s = results["crema"], results["lmdb"], results["sqlite"]
            cpu = results["crema-cpu"].records_per_s
            say(
                f"| {size} | {c.records_per_s:,.0f} | {c.p50_ms:.2f} | {c.p99_ms:.2f} "
                f"| {m.records_per_s:,.0f} | {m.p50_ms:.2f} "
                f"| {s.records_per_s:,.0f} | {s.p50_ms:.2f} "
                f"| {c.records_per_s / m.records_per_s:.2f}x "
                f"| {c.records_per_s / s.records_per_s:.2f}x "
                f"| {cpu:,.0f} |"
            )
            for sub in root.iterdir():
                if sub.is_dir():
                    shutil.rmtree(sub)
        say()
        n = args.reopen_entries
        for batch in (100, 1):
            seconds, rate = reopen_time(root / f"reopen-{batch}", n, batch, 3 if batch > 1 else 1)
            say(
                f"reopen of a {n:,}-entry WAL written in batches of {batch}: {seconds:.3f} s "
                f"(built at {rate:,.0f} entries/s with fsync never)"
            )
            shutil.rmtree(root / f"reopen-{batch}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.out is not None:
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

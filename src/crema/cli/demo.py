"""``crema demo``: a guided tour of checkpointing on the embedded setup.

It builds a cache-like data set (sessions with TTLs, users without), writes
snapshots through a ``CheckpointManager`` as a node would at successive Raft
indexes, lists, verifies and inspects them with the same code as
``crema snapshot``, corrupts a copy and shows ``verify`` catching it, shows
recovery falling back past a corrupted newest snapshot, and restores while
short TTLs have expired, showing them skipped and the others keeping their
exact absolute expiry.
"""

from __future__ import annotations

import argparse
import random
import shutil
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from crema.checkpoint import (
    CheckpointConfig,
    CheckpointManager,
    SnapshotEntry,
    SnapshotMetadata,
    snapshot_name,
)
from crema.cli import snapshot as snapshot_cli

SHORT_TTL_MS = 1500


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``crema demo`` to the command line."""
    parser = commands.add_parser(
        "demo",
        help="run the local 3-node cluster demo (the README's main job)",
        description="Start a local 3-node cluster (three `crema serve` processes) and tour "
        "it with redis-py. --checkpoints-only runs the earlier checkpointing tour instead.",
    )
    parser.add_argument(
        "--checkpoints-only",
        action="store_true",
        help="run the checkpoint-file tour (no cluster) instead",
    )
    parser.add_argument(
        "--keys",
        type=int,
        default=100_000,
        help="keys the cluster tour writes (default: %(default)s)",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="working directory (default: a temporary directory for the cluster tour, "
        "removed after a successful run; demo-data for --checkpoints-only)",
    )
    parser.add_argument(
        "--entries",
        type=int,
        default=50_000,
        help="entries in the --checkpoints-only data set (default: %(default)s)",
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    if args.checkpoints_only:
        if args.dir is None:
            args.dir = Path("demo-data")
        return run_demo(args)
    from crema.cli.cluster_demo import run_cluster_demo  # noqa: PLC0415 - imports redis

    return run_cluster_demo(args)


class DictCache:
    """The demo's stand-in for a node's store: key -> (value, expiry_ms | None)."""

    def __init__(self) -> None:
        self.data: dict[bytes, tuple[bytes, int | None]] = {}

    def entries(self) -> Iterable[tuple[bytes, bytes, int | None]]:
        return ((k, v, e) for k, (v, e) in self.data.items())

    def restore_entries(self, entries: Iterable[SnapshotEntry]) -> None:
        self.data = {e.key: (e.value, e.expiry_ms) for e in entries}


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _step(title: str) -> None:
    print(f"\n== {title}")


def _fill(cache: DictCache, count: int, rng: random.Random) -> None:
    now = _now_ms()
    for i in range(count):
        kind = i % 4
        if kind == 0:
            cache.data[b"user:%07d" % i] = (b'{"name": "user %d"}' % i, None)
        elif kind == 1:
            cache.data[b"session:%07d" % i] = (rng.randbytes(48).hex().encode(), now + 3_600_000)
        elif kind == 2:
            cache.data[b"otp:%07d" % i] = (b"%06d" % rng.randrange(10**6), now + SHORT_TTL_MS)
        else:
            cache.data[b"page:%07d" % i] = (b"<p>cached page %d</p>" % i * 8, None)


def _checkpoint(manager: CheckpointManager, cache: DictCache, index: int) -> None:
    started = time.perf_counter()
    meta = SnapshotMetadata(index, 1, datetime.now(UTC))
    info = manager.create_snapshot(meta, cache.entries())
    took = (time.perf_counter() - started) * 1000
    print(
        f"snapshot at index {index}: {info.entry_count} entries, "
        f"{info.size / 1024:.0f} KiB, {took:.0f} ms -> {info.path.name}"
    )


def run_demo(args: argparse.Namespace) -> int:
    """Run the tour; returns 0 when every check behaved as expected."""
    work: Path = args.dir
    shutil.rmtree(work, ignore_errors=True)
    checkpoints = work / "checkpoints"
    config = CheckpointConfig(checkpoints).with_max_snapshots(3).with_log_threshold(10_000)
    cache = DictCache()
    manager = CheckpointManager(config, target=cache)
    rng = random.Random(42)

    _step(f"1. A cache-like data set of {args.entries} entries (a quarter with a 1.5 s TTL)")
    _fill(cache, args.entries, rng)
    print(f"{len(cache.data)} entries in memory")

    _step("2. Checkpoints every 10,000 applied entries; max_snapshots=3 keeps the newest three")
    for index in (10_000, 20_000, 30_000, 40_000):
        cache.data[b"counter"] = (str(index).encode(), None)
        _checkpoint(manager, cache, index)

    _step(f"3. crema snapshot list {checkpoints}")
    snapshot_cli.main_list(checkpoints)
    _step(f"4. crema snapshot verify {checkpoints}")
    ok = snapshot_cli.main_verify([checkpoints]) == 0
    latest = manager.latest_snapshot()
    assert latest is not None
    _step(f"5. crema snapshot inspect {latest.path}")
    snapshot_cli.main_inspect(latest.path)

    _step("6. Corrupt a copy (one flipped byte) and verify it")
    copy = work / "corrupted-copy.snap"
    data = bytearray(latest.path.read_bytes())
    data[len(data) // 2] ^= 0x40
    copy.write_bytes(bytes(data))
    ok &= snapshot_cli.main_verify([copy]) == 1
    print("exit status 1: the corruption is caught before any entry is trusted")

    _step("7. Recovery falls back past a corrupted newest snapshot")
    newest = checkpoints / snapshot_name(50_000, 1)
    shutil.copy(copy, newest)
    info, _live = manager.load_latest()
    print(f"load_latest() used index {info.metadata.index}; {newest.name} is now *.broken")
    ok &= info.metadata.index == 40_000 and newest.with_name(newest.name + ".broken").exists()

    _step(f"8. Wait {SHORT_TTL_MS / 1000:.1f} s for the short TTLs, then restore")
    time.sleep(SHORT_TTL_MS / 1000 + 0.1)
    before = dict(cache.data)
    cache.data.clear()
    started = time.perf_counter()
    manager.restore_from(info.path)
    took = (time.perf_counter() - started) * 1000
    skipped = info.entry_count - len(cache.data)
    print(f"restored {len(cache.data)} entries in {took:.0f} ms; skipped {skipped} expired")
    kept_expiry = all(cache.data[k][1] == before[k][1] for k in cache.data)
    print(f"every restored TTL keeps its absolute expiry: {kept_expiry}")
    ok &= kept_expiry and not any(k.startswith(b"otp:") for k in cache.data)

    print(f"\nDone. Try: crema snapshot list {checkpoints}   (files stay in {work}/)")
    return 0 if ok else 1

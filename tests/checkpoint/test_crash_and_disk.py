"""Crash safety (SIGKILL mid-write) and disk faults (read-only, full) on real files."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from crema.checkpoint import CheckpointConfig, CheckpointManager
from crema.errors import SnapshotError
from tests.checkpoint.conftest import metadata
from tests.tmpfs import mounted_tmpfs

WRITER = textwrap.dedent(
    """
    import sys
    from datetime import UTC, datetime
    from crema.checkpoint import SnapshotMetadata, SnapshotWriter
    from crema.checkpoint.manager import snapshot_name
    from pathlib import Path

    directory, index = Path(sys.argv[1]), int(sys.argv[2])
    meta = SnapshotMetadata(index, 1, datetime.now(UTC))
    with SnapshotWriter(directory / snapshot_name(index, 1), meta, chunk_size=4096) as writer:
        for i in range(400_000):
            writer.write_entry(b"session:%07d" % i, b"x" * 200, None)
            if i == 1000:
                print("writing", flush=True)
    print("done", flush=True)
    """
)


def test_sigkill_while_writing_leaves_only_valid_snapshots(tmp_path: Path) -> None:
    manager = CheckpointManager(CheckpointConfig(tmp_path / "ckpt", max_snapshots=100))
    previous = [manager.create_snapshot(metadata(i, 1), [(b"k", b"v%d" % i, None)]) for i in (1, 2)]
    rng = random.Random(1234)
    for attempt in range(6):
        child = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(manager.directory), str(100 + attempt)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "writing"
        time.sleep(rng.uniform(0.0, 0.4))
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        for path in manager.directory.glob("*.snap"):
            manager.verify_snapshot(path)  # a *.snap file is always complete
        for info in previous:
            manager.verify_snapshot(info.path)
    CheckpointManager(manager.config)  # a new manager removes the killed writers' temp files
    assert not list(manager.directory.glob("*.tmp"))
    assert not list(manager.directory.glob(".*"))


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A small tmpfs mounted for the test (root only; skipped where mounting is impossible)."""
    with mounted_tmpfs(tmp_path / "mnt", "512k") as mount_point:
        yield mount_point


def _big_entries(n: int) -> list[tuple[bytes, bytes, int | None]]:
    rng = random.Random(7)
    return [(b"k%d" % i, rng.randbytes(1000), None) for i in range(n)]


def test_full_filesystem_gives_snapshot_error_and_keeps_older(tmpfs: Path) -> None:
    manager = CheckpointManager(CheckpointConfig(tmpfs / "ckpt", compression=False))
    older = manager.create_snapshot(metadata(1, 1), _big_entries(10))
    with pytest.raises(SnapshotError) as err:
        manager.create_snapshot(metadata(2, 1), _big_entries(2000))  # ~2 MB > 512 KiB
    assert isinstance(err.value.__cause__, OSError)
    assert sorted(p.name for p in manager.directory.iterdir()) == [older.path.name]
    manager.verify_snapshot(older.path)


def test_read_only_filesystem_gives_snapshot_error_and_keeps_older(tmpfs: Path) -> None:
    manager = CheckpointManager(CheckpointConfig(tmpfs / "ckpt"))
    older = manager.create_snapshot(metadata(1, 1), _big_entries(10))
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    with pytest.raises(SnapshotError) as err:
        manager.create_snapshot(metadata(2, 1), _big_entries(10))
    assert isinstance(err.value.__cause__, OSError)
    assert sorted(p.name for p in manager.directory.iterdir()) == [older.path.name]
    manager.verify_snapshot(older.path)
    _, entries = manager.load_latest()
    assert len(entries) == 10

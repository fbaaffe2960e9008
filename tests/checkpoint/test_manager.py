"""CheckpointManager: listing, retention, verification, load_latest, restore_from, TTLs."""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crema.checkpoint import (
    CheckpointConfig,
    CheckpointManager,
    SnapshotEntry,
    SnapshotReader,
    snapshot_name,
)
from crema.errors import ConfigError, NoSnapshotError, SnapshotCorruptedError, SnapshotError
from tests.checkpoint.conftest import NOW_MS, metadata


class DictTarget:
    """A RestoreTarget that records what it was given."""

    def __init__(self) -> None:
        self.data: dict[bytes, tuple[bytes, int | None]] = {}
        self.calls = 0

    def restore_entries(self, entries: Iterable[SnapshotEntry]) -> None:
        self.calls += 1
        fresh = {e.key: (e.value, e.expiry_ms) for e in entries}
        self.data = fresh


def _manager(tmp_path: Path, **kwargs: object) -> CheckpointManager:
    return CheckpointManager(CheckpointConfig(tmp_path / "ckpt", **kwargs))  # type: ignore[arg-type]


def _entries(n: int, tag: str = "") -> list[tuple[bytes, bytes, int | None]]:
    return [(f"k{i}".encode(), f"v{i}{tag}".encode(), None) for i in range(n)]


def _corrupt(path: Path, offset: int = -10) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_create_names_files_by_index_and_term(tmp_path: Path) -> None:
    manager = _manager(tmp_path)
    info = manager.create_snapshot(metadata(0x1F, 2), _entries(3))
    assert info.path.name == "snapshot-000000000000001f-0000000000000002.snap"
    assert info.path.name == snapshot_name(31, 2)
    assert info.entry_count == 3
    assert info.size == info.path.stat().st_size
    assert info.compressed


def test_list_is_ordered_by_index_then_term_and_skips_unreadable(tmp_path: Path) -> None:
    manager = _manager(tmp_path, max_snapshots=10)
    for index, term in [(30, 2), (10, 1), (30, 1), (20, 5)]:
        manager.create_snapshot(metadata(index, term), _entries(2))
    (manager.directory / "snapshot-zzz.snap").write_bytes(b"not a snapshot")
    listed = [(i.metadata.index, i.metadata.term) for i in manager.list_snapshots()]
    assert listed == [(10, 1), (20, 5), (30, 1), (30, 2)]
    latest = manager.latest_snapshot()
    assert latest is not None
    assert (latest.metadata.index, latest.metadata.term) == (30, 2)


def test_latest_of_empty_directory_is_none(tmp_path: Path) -> None:
    assert _manager(tmp_path).latest_snapshot() is None
    assert _manager(tmp_path).list_snapshots() == []


def test_retention_keeps_exactly_max_newest_and_ignores_broken(tmp_path: Path) -> None:
    manager = _manager(tmp_path, max_snapshots=3)
    broken = manager.directory / "snapshot-0000000000000001-0000000000000001.snap.broken"
    broken.write_bytes(b"kept for inspection")
    for index in [5, 1, 9, 3, 7, 11]:
        manager.create_snapshot(metadata(index, 1), _entries(1))
        assert len(manager.list_snapshots()) <= 3
    assert [i.metadata.index for i in manager.list_snapshots()] == [7, 9, 11]
    assert broken.exists()


def test_leftover_temp_files_are_removed_on_creation_only(tmp_path: Path) -> None:
    manager = _manager(tmp_path)
    leftover = manager.directory / ".snapshot-0000000000000005-0000000000000001.snap.abc.tmp"
    leftover.write_bytes(b"half written")
    manager.list_snapshots()
    assert leftover.exists(), "listing must not disturb a live writer"
    _manager(tmp_path)
    assert not leftover.exists()


def test_verify_snapshot_reports_reason(tmp_path: Path) -> None:
    manager = _manager(tmp_path)
    info = manager.create_snapshot(metadata(), _entries(50))
    manager.verify_snapshot(info.path)  # no exception: the file is sound
    _corrupt(info.path)
    with pytest.raises(SnapshotCorruptedError) as err:
        manager.verify_snapshot(info.path)
    assert err.value.path == info.path
    assert "CRC mismatch" in err.value.reason
    with pytest.raises(SnapshotError):
        manager.verify_snapshot(tmp_path / "missing.snap")


def test_load_latest_falls_back_past_corrupted_newest(tmp_path: Path) -> None:
    manager = _manager(tmp_path)
    manager.create_snapshot(metadata(10, 1), _entries(5, "old"))
    newest = manager.create_snapshot(metadata(20, 1), _entries(5, "new"))
    _corrupt(newest.path)
    info, entries = manager.load_latest(now=NOW_MS)
    assert info.metadata.index == 10
    assert entries[0].value == b"v0old"
    assert not newest.path.exists()
    assert newest.path.with_name(newest.path.name + ".broken").exists()
    assert [i.metadata.index for i in manager.list_snapshots()] == [10]


def test_load_latest_with_nothing_usable(tmp_path: Path) -> None:
    manager = _manager(tmp_path)
    with pytest.raises(NoSnapshotError):
        manager.load_latest()
    info = manager.create_snapshot(metadata(), _entries(1))
    info.path.write_bytes(b"MCRS garbage that is long enough to have a header....")
    with pytest.raises(NoSnapshotError):
        manager.load_latest()
    assert len(list(manager.directory.glob("*.broken"))) == 1


def test_ttl_expired_entries_skipped_and_live_keep_exact_expiry(tmp_path: Path) -> None:
    manager = _manager(tmp_path)
    entries: list[tuple[bytes, bytes, int | None]] = [
        (b"forever", b"1", None),
        (b"past", b"2", NOW_MS - 1),
        (b"exactly-now", b"3", NOW_MS),
        (b"future", b"4", NOW_MS + 3_600_000),
    ]
    info = manager.create_snapshot(metadata(), entries)
    _, live = manager.load_latest(now=NOW_MS)
    assert live == [
        SnapshotEntry(b"forever", b"1", None),
        SnapshotEntry(b"future", b"4", NOW_MS + 3_600_000),
    ]
    target = DictTarget()
    now = datetime.fromtimestamp(NOW_MS / 1000, UTC)
    manager.restore_from(info.path, target, now=now)
    assert target.data == {b"forever": (b"1", None), b"future": (b"4", NOW_MS + 3_600_000)}
    # An hour and a bit later the future entry is gone too: a restore never extends a TTL.
    manager.restore_from(info.path, target, now=now + timedelta(hours=1, seconds=1))
    assert target.data == {b"forever": (b"1", None)}


def test_restore_from_uses_attached_target_and_requires_one(tmp_path: Path) -> None:
    manager = _manager(tmp_path)
    info = manager.create_snapshot(metadata(), _entries(3))
    with pytest.raises(ConfigError):
        manager.restore_from(info.path)
    target = DictTarget()
    attached = CheckpointManager(manager.config, target=target)
    restored = attached.restore_from(info.path)
    assert restored.metadata == metadata()
    assert sorted(target.data) == [b"k0", b"k1", b"k2"]


def test_corrupted_file_never_reaches_the_target(tmp_path: Path) -> None:
    manager = _manager(tmp_path, compression=False)
    info = manager.create_snapshot(metadata(), _entries(1000))
    _corrupt(info.path, offset=-50)  # damage the last entry only
    target = DictTarget()
    with pytest.raises(SnapshotCorruptedError):
        manager.restore_from(info.path, target)
    assert target.calls == 0


def test_create_snapshot_accepts_snapshot_entries_and_str(tmp_path: Path) -> None:
    manager = _manager(tmp_path)
    expiry = datetime(2031, 5, 1, tzinfo=UTC)
    info = manager.create_snapshot(
        metadata(),
        [SnapshotEntry(b"a", b"1", 5), ("b", "2", expiry), (b"c", b"3", None)],
    )
    with SnapshotReader.open(info.path) as reader:
        got = list(reader.entries())
    assert [e.key for e in got] == [b"a", b"b", b"c"]
    assert got[1].expiry == expiry


def test_failed_create_leaves_previous_snapshots_and_no_temp(tmp_path: Path) -> None:
    manager = _manager(tmp_path)
    first = manager.create_snapshot(metadata(1, 1), _entries(10))

    def exploding() -> Iterable[tuple[bytes, bytes, int | None]]:
        yield b"k", b"v", None
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError):
        manager.create_snapshot(metadata(2, 1), exploding())
    assert sorted(p.name for p in manager.directory.iterdir()) == [first.path.name]
    manager.verify_snapshot(first.path)


def test_directory_is_created_and_unusable_directory_is_snapshot_error(tmp_path: Path) -> None:
    manager = _manager(tmp_path)
    assert manager.directory.is_dir()
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(SnapshotError):
        CheckpointManager(CheckpointConfig(blocker / "sub"))


def test_missing_directory_during_create_is_snapshot_error(tmp_path: Path) -> None:
    manager = _manager(tmp_path)
    os.rmdir(manager.directory)
    with pytest.raises(SnapshotError) as err:
        manager.create_snapshot(metadata(), _entries(1))
    assert isinstance(err.value.__cause__, OSError)

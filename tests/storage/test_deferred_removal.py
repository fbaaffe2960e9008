"""Compaction can leave the unlinking of dead segments to the caller."""

from __future__ import annotations

from pathlib import Path

from crema.raft.types import ConfState, Entry, Index, NodeId, SnapshotMeta, Term
from crema.storage import DiskStorage
from crema.storage.wal import remove_segments


def test_deferred_segment_removal(tmp_path: Path) -> None:
    wal = DiskStorage.open(tmp_path, fsync="never", segment_size=4096)
    wal.defer_removals = True
    for i in range(1, 201):
        wal.append([Entry(Index(i), Term(1), data=b"x" * 100)])
        wal.commit()
    before = sorted(tmp_path.glob("*.wal"))
    assert len(before) > 3
    wal.create_snapshot(SnapshotMeta(Index(190), Term(1), ConfState(frozenset({NodeId(1)}))))
    wal.compact(Index(190))
    removals = wal.take_removals()
    assert removals and all(p.exists() for p in removals)  # left to the caller
    assert wal.take_removals() == []
    assert wal.entries(Index(191), Index(201))[0].index == 191
    remove_segments(removals, tmp_path, durable=False)
    assert not any(p.exists() for p in removals)
    wal.close()
    again = DiskStorage.open(tmp_path, fsync="never")
    assert again.first_index() == 191 and again.last_index() == 200
    again.close()


def test_segments_left_by_a_crash_are_removed_on_open(tmp_path: Path) -> None:
    wal = DiskStorage.open(tmp_path, fsync="never", segment_size=4096)
    wal.defer_removals = True
    for i in range(1, 201):
        wal.append([Entry(Index(i), Term(1), data=b"x" * 100)])
        wal.commit()
    wal.create_snapshot(SnapshotMeta(Index(190), Term(1), ConfState(frozenset({NodeId(1)}))))
    wal.compact(Index(190))
    removals = wal.take_removals()
    wal.close()  # "crash" before the caller unlinked them
    again = DiskStorage.open(tmp_path, fsync="never")
    assert not any(p.exists() for p in removals)
    assert again.first_index() == 191
    again.close()

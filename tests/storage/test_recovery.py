"""Torn tails, corruption, repair and other things found when opening a WAL."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from crema.errors import ConfigError, CorruptLogError, StorageError
from crema.raft.types import HardState, Index, NodeId, SnapshotMeta, Term
from crema.storage import DiskStorage
from crema.storage.segment import SegmentScan, list_segments
from tests.storage.conftest import ents

I = Index  # noqa: E741


def record_offsets(path: Path) -> list[tuple[int, int]]:
    """(start, end) of every valid record of a segment file."""
    scan = SegmentScan(path.read_bytes(), last=True)
    return [(off, off + 16 + len(payload)) for off, _, payload in scan]


def hs(commit: int) -> HardState:
    return HardState(Term(1), NodeId(1), I(commit))


def build(directory: Path) -> Path:
    """A one-segment WAL whose last three records are known; returns the segment."""
    with DiskStorage.open(directory) as s:
        for lo in range(1, 11, 2):
            s.append(ents(lo, lo + 1))
            s.set_hard_state(hs(lo))
        s.sync()
        s.append(ents(11, 13))  # record A
        s.set_hard_state(hs(13))  # record B
        s.append(ents(14, 15))  # record C
    return list_segments(directory)[-1].path


def test_torn_tail_at_every_byte_of_the_final_records(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pristine = tmp_path / "pristine"
    segment = build(pristine)
    offsets = record_offsets(segment)
    (_, end_a), (_, end_b), (_, end_c) = offsets[-3:]
    start_a = offsets[-3][0]
    assert end_c == segment.stat().st_size
    data = segment.read_bytes()
    work = tmp_path / "work"
    for cut in range(start_a, end_c + 1):
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(pristine, work)
        (work / segment.name).write_bytes(data[:cut])
        caplog.clear()
        with caplog.at_level(logging.WARNING), DiskStorage.open(work, fsync="never") as s:
            if cut < end_a:
                expected_last, expected_hs = 10, hs(9)
            elif cut < end_b:
                expected_last, expected_hs = 13, hs(9)
            elif cut < end_c:
                expected_last, expected_hs = 13, hs(13)
            else:
                expected_last, expected_hs = 15, hs(13)
            assert s.last_index() == expected_last, cut
            assert s.initial_state()[0] == expected_hs, cut
            assert s.entries(I(1), I(expected_last + 1)) == ents(1, expected_last)
            torn = cut not in (start_a, end_a, end_b, end_c)
            assert any("torn tail" in r.message for r in caplog.records) == torn, cut
            s.append(ents(expected_last + 1, expected_last + 1, term=2))
        with DiskStorage.open(work, fsync="never") as s:
            assert s.last_index() == expected_last + 1


def test_flipped_byte_before_the_tail_is_corruption(tmp_path: Path) -> None:
    pristine = tmp_path / "pristine"
    segment = build(pristine)
    offsets = record_offsets(segment)
    data = segment.read_bytes()
    work = tmp_path / "work"
    for start, end in offsets[1:-1]:  # every record but the STATE opener and the last
        for pos in range(start, end, 3):
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(pristine, work)
            flipped = bytearray(data)
            flipped[pos] ^= 0x40
            (work / segment.name).write_bytes(bytes(flipped))
            with pytest.raises(CorruptLogError) as info:
                DiskStorage.open(work, fsync="never")
            assert info.value.path == work / segment.name
            assert info.value.offset == start, pos


def test_corruption_in_an_older_segment(tmp_path: Path) -> None:
    with DiskStorage.open(tmp_path, segment_size=4096) as s:
        for lo in range(1, 200, 10):
            s.append(ents(lo, lo + 9, size=100))
    first = list_segments(tmp_path)[0].path
    assert len(list_segments(tmp_path)) > 2
    start, end = record_offsets(first)[-1]  # the last record of a finished segment
    data = bytearray(first.read_bytes())
    data[end - 1] ^= 1
    first.write_bytes(bytes(data))
    with pytest.raises(CorruptLogError) as info:
        DiskStorage.open(tmp_path)
    assert (info.value.path, info.value.offset) == (first, start)


def test_repair_keeps_the_valid_prefix(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with DiskStorage.open(tmp_path, segment_size=4096) as s:
        for lo in range(1, 200, 10):
            s.append(ents(lo, lo + 9, size=100))
    segments = list_segments(tmp_path)
    victim = segments[1].path
    start, _ = record_offsets(victim)[2]
    data = bytearray(victim.read_bytes())
    data[start + 20] ^= 0xFF
    victim.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING), DiskStorage.open(tmp_path, repair=True) as s:
        report = s.repair_report
        assert report is not None
        assert (report.path, report.offset) == (victim, start)
        assert report.dropped_bytes > 0
        assert len(report.quarantined) == len(segments) - 1  # tail of victim + later segments
        assert all(p.exists() and p.name.endswith(".broken") for p in report.quarantined)
        last = s.last_index()
        assert 0 < last < 200
        assert s.entries(I(1), I(last + 1)) == ents(1, last, size=100)
        s.append(ents(last + 1, last + 5))
    assert "WAL repaired" in caplog.text
    with DiskStorage.open(tmp_path) as s:
        assert s.last_index() == last + 5
        assert s.repair_report is None


def test_missing_segment_is_corruption_even_with_repair_for_a_hole(tmp_path: Path) -> None:
    with DiskStorage.open(tmp_path, segment_size=4096) as s:
        for lo in range(1, 200, 10):
            s.append(ents(lo, lo + 9, size=100))
    segments = list_segments(tmp_path)
    segments[2].path.unlink()
    with pytest.raises(CorruptLogError, match="missing"):
        DiskStorage.open(tmp_path)
    segments[0].path.unlink()  # the oldest entries are gone: nothing can repair that
    with pytest.raises(CorruptLogError, match="missing"):
        DiskStorage.open(tmp_path, repair=True)


def test_interrupted_segment_cleanup_is_finished_on_open(tmp_path: Path) -> None:
    with DiskStorage.open(tmp_path, segment_size=4096) as s:
        for lo in range(1, 200, 10):
            s.append(ents(lo, lo + 9, size=100))
        oldest = list_segments(tmp_path)[0].path
        kept = oldest.read_bytes()
        s.create_snapshot(SnapshotMeta(I(150), Term(1)))
        s.compact(I(150))
    # as if the crash hit after the second-oldest segment was removed but not the oldest
    oldest.write_bytes(kept)
    assert list_segments(tmp_path)[1].seq > list_segments(tmp_path)[0].seq + 1
    with DiskStorage.open(tmp_path) as s:
        assert s.first_index() == 151
        assert s.entries(I(151), I(200)) == ents(151, 199, size=100)
    assert not oldest.exists()


def test_compaction_removes_whole_segments(tmp_path: Path) -> None:
    with DiskStorage.open(tmp_path, segment_size=4096) as s:
        for lo in range(1, 200, 10):
            s.append(ents(lo, lo + 9, size=100))
        before = len(list_segments(tmp_path))
        s.create_snapshot(SnapshotMeta(I(150), Term(1)))
        assert s.compact_to_snapshot(trailing=10) == 140
        assert s.compact_to_snapshot(trailing=100) == 140  # never backwards
        after = len(list_segments(tmp_path))
        assert after < before
        assert s.stats().segments == after
    with DiskStorage.open(tmp_path) as s:
        assert s.first_index() == 141
        assert s.entries(I(141), I(200)) == ents(141, 199, size=100)


def test_bad_magic_and_leftover_temp_files(tmp_path: Path) -> None:
    with DiskStorage.open(tmp_path) as s:
        s.append(ents(1, 3))
    (tmp_path / "0000000000000009-0000000000000001.wal.tmp").write_bytes(b"junk")
    (tmp_path / "notes.txt").write_text("not a segment")
    with DiskStorage.open(tmp_path) as s:
        assert s.last_index() == 3
    assert not list(tmp_path.glob("*.tmp"))
    segment = list_segments(tmp_path)[0].path
    segment.write_bytes(b"NOTAWAL!" + segment.read_bytes()[8:])
    with pytest.raises(CorruptLogError) as info:
        DiskStorage.open(tmp_path)
    assert info.value.offset == 0


@pytest.mark.parametrize(
    ("option", "value"),
    [("fsync", "sometimes"), ("segment_size", 100), ("cache_entries", 0), ("batch_interval", 0)],
)
def test_bad_options(tmp_path: Path, option: str, value: object) -> None:
    with pytest.raises(ConfigError) as info:
        DiskStorage.open(tmp_path, **{option: value})  # type: ignore[arg-type]
    assert info.value.field == option


def test_second_open_of_the_same_directory_is_refused(tmp_path: Path) -> None:
    with DiskStorage.open(tmp_path), pytest.raises(StorageError, match="in use"):
        DiskStorage.open(tmp_path)


def test_reads_verify_checksums_again(tmp_path: Path) -> None:
    s = DiskStorage.open(tmp_path, cache_entries=1)
    s.append(ents(1, 5))
    s.append(ents(6, 10))
    s.sync()
    segment = list_segments(tmp_path)[0].path
    start, _ = record_offsets(segment)[1]
    with open(segment, "r+b") as f:
        f.seek(start + 30)
        byte = f.read(1)
        f.seek(start + 30)
        f.write(bytes([byte[0] ^ 1]))
    with pytest.raises(CorruptLogError) as info:
        s.entries(I(1), I(3))
    assert info.value.offset == start
    s.close()


def test_group_commit_reports_durability(tmp_path: Path) -> None:
    now = [0.0]
    seen: list[int] = []
    s = DiskStorage.open(tmp_path, fsync="batch", batch_interval=1.0, clock=lambda: now[0])
    s.on_durable(seen.append)
    s.append(ents(1, 3))
    s.set_hard_state(hs(3))
    assert (s.staged_seq, s.durable_seq) == (2, 0)
    assert s.commit() == 0  # written to the OS, but the time bound has not passed
    assert not s.sync_due()
    now[0] = 1.5
    assert s.sync_due()
    assert s.sync_if_due() == 2
    assert seen == [2]
    assert s.stats().fsyncs == 1
    s.append(ents(4, 4))
    s.close()  # close always makes everything durable
    assert seen == [2, 3]
    with DiskStorage.open(tmp_path, fsync="never") as s2:
        assert s2.last_index() == 4
        s2.append(ents(5, 5))
        assert s2.commit() == 1
        assert s2.stats().fsyncs == 0

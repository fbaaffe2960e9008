"""The active segment's preallocated zeros, fsyncs handed out as tickets, torn writes in place."""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from crema.errors import CorruptLogError
from crema.raft.types import Index
from crema.storage import DiskStorage, fsync_ticket
from crema.storage.segment import SECTOR, SegmentScan, list_segments
from crema.storage.writer import PREALLOCATE_BYTES, _write_at
from tests.storage.conftest import ents
from tests.tmpfs import mounted_tmpfs

I = Index  # noqa: E741


def valid_end(path: Path) -> int:
    scan = SegmentScan(path.read_bytes(), last=True)
    for _ in scan:
        pass
    assert scan.problem is None
    return scan.end


def test_active_segment_is_extended_with_zeros_and_cut_on_close(tmp_path: Path) -> None:
    s = DiskStorage.open(tmp_path)
    s.append(ents(1, 50))
    s.sync()
    segment = list_segments(tmp_path)[-1].path
    data = segment.read_bytes()
    end = valid_end(segment)
    assert len(data) == end + PREALLOCATE_BYTES  # records, then zeros
    assert data.count(0, end) == len(data) - end
    s.close()
    assert segment.stat().st_size == end


def test_a_zero_tail_is_a_clean_end(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # What a crash leaves: records, then the preallocated zeros.
    with DiskStorage.open(tmp_path) as s:
        s.append(ents(1, 20))
    segment = list_segments(tmp_path)[-1].path
    with segment.open("ab") as f:
        f.write(bytes(PREALLOCATE_BYTES + 7))
    with caplog.at_level(logging.WARNING), DiskStorage.open(tmp_path) as s:
        assert s.entries(I(1), I(21)) == ents(1, 20)
        s.append(ents(21, 30))  # written over the zeros, not after them
        s.sync()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    with DiskStorage.open(tmp_path) as s:
        assert s.last_index() == 30
        assert s.entries(I(1), I(31)) == ents(1, 30)


def test_rolling_cuts_the_zeros_off_the_finished_segment(tmp_path: Path) -> None:
    with DiskStorage.open(tmp_path, segment_size=4096) as s:
        for lo in range(1, 200, 10):
            s.append(ents(lo, lo + 9, size=100))
            s.sync()
        segments = list_segments(tmp_path)
        assert len(segments) > 2
        for seg in segments[:-1]:
            assert seg.path.stat().st_size == valid_end(seg.path)
    with DiskStorage.open(tmp_path) as s:
        assert s.entries(I(1), I(200)) == ents(1, 199, size=100)


def torn_in_place(tmp_path: Path, zero_at: int) -> tuple[Path, Path, int]:
    """A WAL whose last record lost one block of a write into preallocated space.

    Returns the WAL directory, its segment and the offset of the damaged
    record; a later (unacknowledged) record after it survived whole.
    """
    wal = tmp_path / "wal"
    with DiskStorage.open(wal) as s:
        s.append(ents(1, 10, size=100))
        s.sync()
        s.append(ents(11, 20, size=3 * SECTOR))  # the record that loses a block
        s.append(ents(21, 21))  # a later record that reached the disk
    segment = list_segments(wal)[-1].path
    scan = SegmentScan(segment.read_bytes(), last=True)
    starts = [offset for offset, _, _ in scan]
    damaged = starts[-2]
    data = bytearray(segment.read_bytes())
    # The lost block keeps what it held before: the synced bytes, then zeros.
    block = damaged + zero_at
    block -= block % SECTOR
    lost = max(block, damaged)
    data[lost : block + SECTOR] = bytes(block + SECTOR - lost)
    segment.write_bytes(bytes(data) + bytes(PREALLOCATE_BYTES))
    return wal, segment, damaged


@pytest.mark.parametrize("zero_at", [0, SECTOR * 2])  # the header's block, a payload block
def test_a_lost_block_of_an_unsynced_write_is_a_torn_tail(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, zero_at: int
) -> None:
    wal, segment, damaged = torn_in_place(tmp_path, zero_at)
    with caplog.at_level(logging.WARNING), DiskStorage.open(wal) as s:
        assert s.last_index() == 10
        assert s.entries(I(1), I(11)) == ents(1, 10, size=100)
        s.append(ents(11, 12, term=2))
    assert any("torn tail" in r.message for r in caplog.records)
    assert segment.stat().st_size > damaged
    with DiskStorage.open(wal) as s:
        assert s.last_index() == 12


def test_a_flipped_bit_without_zeros_is_still_corruption(tmp_path: Path) -> None:
    wal = tmp_path / "wal"
    with DiskStorage.open(wal) as s:
        s.append(ents(1, 10))
        s.append(ents(11, 20))
        s.append(ents(21, 30))
    segment = list_segments(wal)[-1].path
    starts = [offset for offset, _, _ in SegmentScan(segment.read_bytes(), last=True)]
    data = bytearray(segment.read_bytes())
    data[starts[-2] + 20] ^= 0x10
    segment.write_bytes(bytes(data))
    copy = tmp_path / "copy"
    shutil.copytree(wal, copy)
    with pytest.raises(CorruptLogError) as info:
        DiskStorage.open(copy)
    assert info.value.offset == starts[-2]


def test_sync_tickets_make_records_durable_from_another_thread(tmp_path: Path) -> None:
    durable: list[int] = []
    with DiskStorage.open(tmp_path) as s:
        s.on_durable(durable.append)
        fsyncs = s.stats().fsyncs
        s.append(ents(1, 5))
        ticket = s.begin_sync()
        assert ticket is not None and s.durable_seq < ticket.seq
        worker = threading.Thread(target=fsync_ticket, args=(ticket,))
        worker.start()
        s.append(ents(6, 8))  # more records meanwhile: not covered by the ticket
        worker.join()
        assert s.end_sync(ticket) == ticket.seq
        assert durable == [ticket.seq] and s.staged_seq > ticket.seq
        assert s.begin_sync() is not None  # the later records still want an fsync
        assert s.stats().fsyncs == fsyncs + 1


def test_no_ticket_when_nothing_is_staged_or_the_policy_is_never(tmp_path: Path) -> None:
    with DiskStorage.open(tmp_path / "a") as s:
        assert s.begin_sync() is None
    with DiskStorage.open(tmp_path / "b", fsync="never") as s:
        s.append(ents(1, 3))
        assert s.begin_sync() is None
        assert s.durable_seq == s.staged_seq


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs (root only; skipped where mounting is impossible)."""
    with mounted_tmpfs(tmp_path / "mnt", "512k") as mount_point:
        yield mount_point


def test_no_room_to_preallocate_is_not_a_failure(
    small_tmpfs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """On a disk without 1 MiB to spare, records that fit are still written and durable."""
    wal = small_tmpfs / "wal"
    with caplog.at_level(logging.WARNING), DiskStorage.open(wal) as s:
        s.append(ents(1, 100, size=1000))  # about 100 KB: fits, its zeros do not
        s.sync()
        s.append(ents(101, 150, size=1000))
        s.sync()
        segment = list_segments(wal)[-1].path
        assert segment.stat().st_size == valid_end(segment)  # no partial zeros left
    assert any("no room to preallocate" in r.message for r in caplog.records)
    with DiskStorage.open(wal) as s:
        assert s.entries(I(1), I(151)) == ents(1, 150, size=1000)


def test_a_full_disk_fails_the_write_and_abandon_keeps_what_was_durable(small_tmpfs: Path) -> None:
    """ENOSPC mid-append: the error surfaces, staging still works, the synced prefix survives."""
    wal = small_tmpfs / "wal"
    s = DiskStorage.open(wal)
    s.append(ents(1, 100, size=1000))
    s.sync()
    index = 101
    with pytest.raises(OSError) as failed:
        for _ in range(1000):  # bounded: 1 MB more than the disk holds
            s.append(ents(index, index + 9, size=1000))
            s.sync()
            index += 10
    assert failed.value.errno == 28  # ENOSPC
    durable = index - 1  # every batch before the failing one was synced
    s.append(ents(index, index, size=10))  # staging is not wedged by the failed write
    s.abandon()  # nothing staged is written; the files and the lock are released
    with DiskStorage.open(wal) as again:
        assert int(again.last_index()) >= durable
        assert again.entries(I(1), I(durable + 1)) == [
            *ents(1, 100, size=1000),
            *ents(101, durable, size=1000),
        ]


def test_a_failed_write_leaves_no_view_of_the_staging_buffer(tmp_path: Path) -> None:
    """The error (kept with its traceback, as a failed node keeps it) pins no buffer view."""
    buf = bytearray(b"x" * 100)
    fd = os.open(tmp_path / "ro", os.O_RDONLY | os.O_CREAT)
    try:
        with pytest.raises(OSError) as failed:
            _write_at(fd, buf, 0)
    finally:
        os.close(fd)
    buf += b"more"  # a live memoryview of buf would make this a BufferError
    assert len(buf) == 104 and failed.value.errno is not None

"""MCRS v1 round trips, interoperability with an independent implementation, values."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crema.checkpoint import SnapshotEntry, SnapshotMetadata, SnapshotReader, SnapshotWriter
from crema.checkpoint.format import (
    crc32_combine,
    datetime_to_ms,
    decode_header,
    encode_header,
)
from tests.checkpoint import mcrs_reference
from tests.checkpoint.conftest import NOW_MS, metadata, write_snapshot


def _repeat(pattern: bytes, size: int) -> bytes:
    return (pattern * (size // len(pattern) + 1))[:size]


# Large keys and values (up to 1 MiB) repeat a short random pattern, so that
# hypothesis need not draw a megabyte of entropy for each.
big = st.builds(_repeat, st.binary(min_size=1, max_size=32), st.integers(1000, 1 << 20))
keys = st.binary(max_size=64) | big
values = st.binary(max_size=300) | big
expiries = st.none() | st.integers(min_value=1, max_value=2**64 - 1)
entry_lists = st.lists(st.tuples(keys, values, expiries), max_size=12)

slow = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@slow
@given(entries=entry_lists, compression=st.booleans(), chunk=st.sampled_from([1, 100, 1 << 20]))
def test_round_trip_through_crema_and_reference(
    tmp_path: Path,
    entries: list[tuple[bytes, bytes, int | None]],
    compression: bool,
    chunk: int,
) -> None:
    path = tmp_path / "s.snap"
    with SnapshotWriter(path, metadata(), compression=compression, chunk_size=chunk) as writer:
        for key, value, expiry in entries:
            writer.write_entry(key, value, expiry)
    expected = [SnapshotEntry(k, v, e) for k, v, e in entries]
    with SnapshotReader.open(path) as reader:
        reader.verify()
        assert reader.entry_count == len(entries)
        assert reader.compressed is compression
        assert reader.metadata() == metadata()
        assert list(reader.entries()) == expected
    index, term, ts, compressed, decoded = mcrs_reference.decode(path.read_bytes())
    assert (index, term, ts, compressed) == (7, 3, NOW_MS, compression)
    assert decoded == [(k, v, e or 0) for k, v, e in entries]


@slow
@given(entries=entry_lists, compression=st.booleans(), frames=st.integers(1, 4))
def test_reads_files_written_by_the_reference(
    tmp_path: Path,
    entries: list[tuple[bytes, bytes, int | None]],
    compression: bool,
    frames: int,
) -> None:
    stored = [(k, v, e or 0) for k, v, e in entries]
    path = tmp_path / "ref.snap"
    path.write_bytes(
        mcrs_reference.encode(9, 4, NOW_MS, stored, compressed=compression, frames=frames)
    )
    with SnapshotReader.open(path) as reader:
        reader.verify()
        assert reader.metadata() == metadata(9, 4)
        assert list(reader.entries()) == [SnapshotEntry(k, v, e) for k, v, e in entries]


def test_str_keys_and_datetime_expiry(tmp_path: Path) -> None:
    expiry = datetime(2030, 1, 1, tzinfo=UTC)
    path = tmp_path / "s.snap"
    with SnapshotWriter(path, metadata()) as writer:
        writer.write_entry("clé", "valeur", expiry)
        writer.write_entry(b"k", b"v", 0)
    with SnapshotReader.open(path) as reader:
        got = list(reader.entries())
    assert got[0] == SnapshotEntry("clé".encode(), b"valeur", datetime_to_ms(expiry))
    assert got[0].expiry == expiry
    assert got[1].expiry_ms is None


@pytest.mark.parametrize(
    ("key", "value", "expiry", "error"),
    [
        (1, b"v", None, TypeError),
        (b"k", None, None, TypeError),
        (b"k", b"v", -1, ValueError),
        (b"k", b"v", 2**64, ValueError),
        (b"k", b"v", True, TypeError),
        (b"k", b"v", datetime(2030, 1, 1), ValueError),
        (b"k", b"v", 1.5, TypeError),
    ],
)
def test_write_entry_rejects_bad_arguments(
    tmp_path: Path, key: object, value: object, expiry: object, error: type[Exception]
) -> None:
    with SnapshotWriter(tmp_path / "s.snap", metadata()) as writer, pytest.raises(error):
        writer.write_entry(key, value, expiry)  # type: ignore[arg-type]


def test_file_name_appears_only_when_finished(tmp_path: Path) -> None:
    path = tmp_path / "s.snap"
    writer = SnapshotWriter(path, metadata(), chunk_size=1)
    writer.write_entry(b"k", b"v" * 1000)
    assert not path.exists()
    assert next(p.name for p in tmp_path.iterdir()).endswith(".tmp")
    writer.finish()
    assert path.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["s.snap"]


def test_abort_and_exception_leave_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s.snap"
    with pytest.raises(RuntimeError), SnapshotWriter(path, metadata()) as writer:
        writer.write_entry(b"k", b"v")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    writer.abort()  # idempotent


def test_header_round_trip_and_metadata_normalisation() -> None:
    local = timezone(timedelta(hours=2))
    meta = SnapshotMetadata(2**64 - 1, 5, datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=local))
    assert meta.timestamp.tzinfo == UTC
    assert meta.timestamp.microsecond == 123000
    header = decode_header(encode_header(meta, True))
    assert header.metadata == meta
    assert header.compressed is True


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((-1, 0, datetime(2026, 1, 1, tzinfo=UTC)), ValueError),
        ((0, 2**64, datetime(2026, 1, 1, tzinfo=UTC)), ValueError),
        ((0, 0, datetime(2026, 1, 1)), ValueError),
        ((0, 0, datetime(1960, 1, 1, tzinfo=UTC)), ValueError),
        (("1", 0, datetime(2026, 1, 1, tzinfo=UTC)), TypeError),
    ],
)
def test_metadata_validation(args: tuple[object, object, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        SnapshotMetadata(*args)  # type: ignore[arg-type]


def test_entry_ttl_helpers() -> None:
    entry = SnapshotEntry(b"k", b"v", NOW_MS + 1500)
    assert not entry.is_expired(NOW_MS)
    assert entry.is_expired(NOW_MS + 1500)  # at expiry counts as expired
    assert entry.remaining_ttl(NOW_MS) == timedelta(milliseconds=1500)
    assert entry.remaining_ttl(NOW_MS + 10_000) == timedelta(0)
    now = datetime.fromtimestamp(NOW_MS / 1000, UTC)
    assert entry.remaining_ttl(now) == timedelta(milliseconds=1500)
    forever = SnapshotEntry(b"k", b"v", None)
    assert forever.expiry is None
    assert not forever.is_expired()
    assert forever.remaining_ttl() is None
    assert SnapshotEntry(b"k", b"v", 1).is_expired()  # 1970 is in the past by the real clock


@given(a=st.binary(max_size=200), b=st.binary(max_size=5000))
def test_crc32_combine_matches_zlib(a: bytes, b: bytes) -> None:
    assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)


def test_empty_snapshot(tmp_path: Path) -> None:
    for compression in (True, False):
        path = write_snapshot(tmp_path / f"e{compression}.snap", [], compression=compression)
        with SnapshotReader.open(path) as reader:
            reader.verify()
            assert reader.entry_count == 0
            assert list(reader.entries()) == []
        assert mcrs_reference.decode(path.read_bytes())[4] == []

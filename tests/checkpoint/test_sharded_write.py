"""Writing a sharded store view: the C merge encoder, its checks, and canonical LZ4 chunks."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crema.cache import CacheStateMachine
from crema.cache.commands import Delete, Expire, Set
from crema.checkpoint import SnapshotReader, SnapshotWriter
from crema.checkpoint import format as fmt
from crema.checkpoint.writer import ShardedEntries
from tests.checkpoint.conftest import metadata

if TYPE_CHECKING:
    from crema.checkpoint._mcrs import ShardMerge

T = 1_000_000

commands = st.lists(
    st.tuples(st.sampled_from(["set", "ttl", "del", "expire"]), st.integers(0, 30), st.binary()),
    max_size=80,
)


def _machine(ops: list[tuple[str, int, bytes]]) -> CacheStateMachine:
    sm = CacheStateMachine()
    for index, (op, n, value) in enumerate(ops, start=1):
        key = b"k%d" % n
        if op == "set":
            sm.apply(index, 1, Set(key, value, T))
        elif op == "ttl":
            sm.apply(index, 1, Set(key, value, T, expiry_ms=T + 100 + n))
        elif op == "expire":
            sm.apply(index, 1, Expire(key, T + 5_000, T))
        else:
            sm.apply(index, 1, Delete((key,), T))
    return sm


def _write(path: Path, entries: object, compression: bool, chunk_size: int) -> bytes:
    with SnapshotWriter(path, metadata(), compression=compression, chunk_size=chunk_size) as w:
        w.write_entries(entries)  # type: ignore[arg-type]
    assert w.info is not None
    assert w.info.entry_count == w.entry_count
    return path.read_bytes()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=commands, compression=st.booleans(), chunk=st.sampled_from([1, 64, 1 << 20]))
def test_view_writes_the_same_file_as_its_entries(
    tmp_path: Path, ops: list[tuple[str, int, bytes]], compression: bool, chunk: int
) -> None:
    sm = _machine(ops)
    view = sm.entries_view()
    assert isinstance(view, ShardedEntries)
    from_view = _write(tmp_path / "a.snap", view, compression, chunk)
    entries = list(view)
    from_list = _write(tmp_path / "b.snap", entries, compression, chunk)
    assert from_view == from_list
    with SnapshotReader.open(tmp_path / "a.snap") as reader:
        assert [tuple(e) for e in reader.entries()] == entries


def test_chunks_are_cut_at_fixed_offsets(tmp_path: Path) -> None:
    entries = [(b"key-%d" % n, b"v" * (n % 300), None) for n in range(3000)]
    batched = _write(tmp_path / "a.snap", entries, True, 4096)
    path = tmp_path / "b.snap"
    with SnapshotWriter(path, metadata(), compression=True, chunk_size=4096) as writer:
        for key, value, expiry in entries:  # one entry at a time: other split points
            writer.write_entry(key, value, expiry)
    assert path.read_bytes() == batched


Table = dict[bytes, tuple[bytes, int | None, int]]


def _merge(tables: tuple[Table, ...]) -> ShardMerge:
    if not fmt.accelerated():
        pytest.skip("accelerator not in use on this path")
    return fmt.shard_merger(tables)


def test_merge_takes_slices_in_seq_order() -> None:
    tables: tuple[Table, ...] = (
        {b"a": (b"1", None, 1), b"c": (b"3", 7, 3)},
        {},
        {b"b": (b"2", None, 2)},
    )
    merger = _merge(tables)
    slices = []
    while data := merger.encode(1, 1 << 20):
        slices.append(data)
        assert merger.count == len(slices)
    expected = [(b"a", b"1", 0), (b"b", b"2", 0), (b"c", b"3", 7)]
    assert slices == [fmt.encode_entry(*e) for e in expected]
    assert merger.encode(10, 10) == b""


def test_merge_stops_a_slice_at_max_bytes() -> None:
    tables: tuple[Table, ...] = ({b"k%d" % n: (b"v" * 100, None, n) for n in range(1, 11)},)
    merger = _merge(tables)
    first = merger.encode(100, 150)  # two entries of 118 bytes pass 150
    assert len(first) == 2 * (2 + 100 + 16) and merger.count == 2


@pytest.mark.parametrize(
    ("tables", "error"),
    [
        (({b"a": (b"1", None, 2), b"b": (b"2", None, 1)},), RuntimeError),  # not in seq order
        (({b"a": (b"1", None)},), TypeError),
        (({"a": (b"1", None, 1)},), TypeError),
        (({b"a": ("1", None, 1)},), TypeError),
        (({b"a": (b"1", -5, 1)},), OverflowError),
        (({b"a": (b"1", "x", 1)},), TypeError),
    ],
)
def test_merge_rejects_malformed_tables(
    tables: tuple[dict[object, object], ...], error: type
) -> None:
    with pytest.raises(error):
        merger = _merge(tables)  # type: ignore[arg-type]
        merger.encode(10, 1 << 20)


def test_merge_notices_a_table_that_changed() -> None:
    table: Table = {b"k%d" % n: (b"v", None, n) for n in range(1, 6)}
    merger = _merge((table,))
    assert merger.encode(1, 1 << 20)
    table[b"new"] = (b"v", None, 99)
    with pytest.raises(RuntimeError, match="changed"):
        merger.encode(1, 1 << 20)


def test_merge_of_no_tables_is_empty() -> None:
    assert _merge(()).encode(5, 5) == b""

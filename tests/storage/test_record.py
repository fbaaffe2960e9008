"""Round trips of the WAL record codecs; flipped and cut bytes never decode as data."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crema.errors import CorruptLogError
from crema.raft.types import (
    ConfState,
    Entry,
    EntryType,
    HardState,
    Index,
    NodeId,
    SnapshotMeta,
    Term,
)
from crema.storage import DiskStorage, record
from crema.storage.record import RecordKind, SegmentState
from crema.storage.segment import SegmentScan, segment_file_name

KINDS = {int(k) for k in RecordKind}

ids = st.frozensets(st.integers(0, 2**32).map(NodeId), max_size=5)
confs = st.builds(lambda v, lr: ConfState(v, lr - v), ids, ids)
u63 = st.integers(0, 2**63 - 1)
hard_states = st.builds(HardState, u63.map(Term), st.none() | u63.map(NodeId), u63.map(Index))
metas = st.builds(SnapshotMeta, u63.map(Index), u63.map(Term), confs)


@st.composite
def batches(draw: st.DrawFn) -> list[Entry]:
    first = draw(st.integers(1, 2**62))
    items = draw(
        st.lists(
            st.tuples(u63, st.sampled_from(EntryType), st.binary(max_size=64)),
            min_size=1,
            max_size=20,
        )
    )
    return [Entry(Index(first + k), Term(t), ty, d) for k, (t, ty, d) in enumerate(items)]


@given(batches())
def test_entries_round_trip(entries: list[Entry]) -> None:
    payload = record.encode_entries(entries)
    assert record.decode_entries(payload) == entries
    assert record.entries_span(payload) == (entries[0].index, len(entries))
    assert list(record.entry_terms(payload, len(entries))) == [e.term for e in entries]


@given(hard_states, confs, metas, u63)
def test_small_records_round_trip(
    hs: HardState, conf: ConfState, meta: SnapshotMeta, n: int
) -> None:
    assert record.decode_hard_state(record.encode_hard_state(hs)) == hs
    assert record.decode_conf_state(record.encode_conf_state(conf)) == conf
    assert record.decode_snapshot(record.encode_snapshot(meta)) == meta
    assert record.decode_compact(record.encode_compact(Index(n), Term(n // 2))) == (n, n // 2)
    state = SegmentState(n % 1000, hs, conf, meta, Index(n), Term(n), Index(n))
    assert record.decode_state(record.encode_state(state)) == state


def segment_bytes(entries: list[Entry], hs: HardState) -> tuple[bytes, list[bytes]]:
    payloads = [record.encode_entries(entries), record.encode_hard_state(hs)]
    frames = [
        record.frame(RecordKind.ENTRIES, payloads[0]),
        record.frame(RecordKind.HARD_STATE, payloads[1]),
        record.frame(RecordKind.ENTRIES, payloads[0]),
    ]
    return record.file_header() + b"".join(frames), [payloads[0], payloads[1], payloads[0]]


@settings(max_examples=150)
@given(batches(), hard_states, st.data())
def test_flipped_or_cut_bytes_never_decode_as_data(
    entries: list[Entry], hs: HardState, data: st.DataObject
) -> None:
    raw, payloads = segment_bytes(entries, hs)
    assert [bytes(p) for _, _, p in SegmentScan(raw, last=True)] == payloads
    pos = data.draw(st.integers(record.FILE_HEADER_SIZE, len(raw) - 1))
    bit = data.draw(st.integers(0, 7))
    damaged = bytearray(raw)
    damaged[pos] ^= 1 << bit
    scan = SegmentScan(bytes(damaged), last=False)
    good = [bytes(p) for _, _, p in scan]
    assert scan.problem is not None and not scan.problem.torn
    assert good == payloads[: len(good)]  # a valid prefix, never altered data
    cut = data.draw(st.integers(record.FILE_HEADER_SIZE, len(raw) - 1))
    scan = SegmentScan(raw[:cut], last=True)
    good = [bytes(p) for _, _, p in scan]
    assert good == payloads[: len(good)]
    assert scan.end <= cut
    assert scan.problem is None or scan.problem.torn


entries_like = st.builds(
    lambda count, tail: (RecordKind.ENTRIES, struct.pack("<QI", 1, count) + tail),
    st.integers(1, 4),
    st.binary(max_size=80),
)
any_record = st.tuples(
    st.sampled_from(list(RecordKind)) | st.integers(0, 255), st.binary(max_size=80)
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(entries_like | any_record, max_size=4), st.booleans())
def test_checksummed_garbage_is_refused_with_a_typed_error(
    tmp_path_factory: pytest.TempPathFactory, records: list[tuple[int, bytes]], with_state: bool
) -> None:
    """Records that pass their CRCs but hold nonsense never crash the decoders."""
    body = b"".join(record.frame(RecordKind(k) if k in KINDS else k, p) for k, p in records)  # type: ignore[arg-type]
    if with_state:
        state = SegmentState(
            1, HardState(), ConfState(), SnapshotMeta(), Index(0), Term(0), Index(0)
        )
        body = record.frame(RecordKind.STATE, record.encode_state(state)) + body
    directory = tmp_path_factory.mktemp("garbage")
    path = directory / segment_file_name(1, 1)
    path.write_bytes(record.file_header() + body)
    try:
        with DiskStorage.open(directory, fsync="never") as wal:
            wal.entries(wal.first_index(), Index(wal.last_index() + 1))
    except CorruptLogError as exc:
        assert exc.path == path

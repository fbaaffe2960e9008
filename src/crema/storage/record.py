"""WAL record framing and payload codecs (pure functions, no I/O).

A segment file is a 16-byte file header followed by records. Every record is
a 16-byte header and a payload::

    offset  size  field
    0       4     payload length (little-endian u32)
    4       1     record kind (RecordKind)
    5       3     reserved, zero
    8       4     CRC32 of the payload
    12      4     CRC32 of header bytes 0..12

The header has its own checksum so that a damaged length is never trusted:
a record whose header checks out but whose payload runs past the end of the
file was torn by a crash; a header that fails its checksum in front of
valid-looking bytes is corruption.

Payloads are ``struct``-packed (entries, hard state, compaction) or
``msgpack`` arrays of integers (membership, snapshot metadata, segment
state). Entries are stored column-wise so that recovery reads the terms of a
whole batch with one C-level call, without building ``Entry`` objects.
"""

from __future__ import annotations

import enum
import struct
import sys
import zlib
from array import array
from dataclasses import dataclass
from typing import Any

import msgpack

from crema.raft.types import (
    ConfState,
    Entry,
    EntryType,
    HardState,
    Index,
    NodeId,
    SnapshotMeta,
    Term,
    entry_unchecked,
)

FILE_MAGIC = b"CREMAWAL"
FILE_VERSION = 1
FILE_HEADER = struct.Struct("<8sII")  # magic, version, reserved
FILE_HEADER_SIZE = FILE_HEADER.size

HEADER = struct.Struct("<IB3xII")  # length, kind, reserved, payload crc, header crc
HEADER_SIZE = HEADER.size
_HEADER_HEAD = struct.Struct("<IB3xI")  # the part the header CRC covers

MAX_PAYLOAD = 256 * 1024 * 1024
"""Upper bound on a payload length read from disk (checked before allocating)."""

_ENTRIES_HEAD = struct.Struct("<QI")  # first index, count
_ONE_ENTRY = struct.Struct("<QIQBI")  # the same layout for a single entry
_HARD_STATE = struct.Struct("<QqQ")  # term, vote (-1: none), commit
_COMPACT = struct.Struct("<QQ")  # index, term
_TYPES = tuple(EntryType)
_LITTLE = sys.byteorder == "little"


class RecordKind(enum.IntEnum):
    """What a record carries."""

    STATE = 1
    """Segment opener: the full non-entry state when the segment was created."""
    ENTRIES = 2
    """A batch of consecutive entries; it supersedes any entry at or after its first index."""
    HARD_STATE = 3
    CONF_STATE = 4
    SNAPSHOT = 5
    """``create_snapshot``: a newer snapshot exists; no entry is dropped."""
    RESTORE = 6
    """``apply_snapshot``: the whole log is discarded and restarts after the snapshot."""
    COMPACT = 7
    """Entries up to an index (whose term is kept) are dropped."""


class PayloadError(ValueError):
    """A payload passed its CRC but does not decode (a bug or a foreign file)."""


@dataclass(frozen=True, slots=True)
class SegmentState:
    """Everything but the entries, as of a segment's creation."""

    seq: int
    hard_state: HardState
    conf_state: ConfState
    snapshot: SnapshotMeta
    compact_index: Index
    compact_term: Term
    last_index: Index


# -- framing -----------------------------------------------------------------


def frame(kind: RecordKind, payload: bytes) -> bytes:
    """One framed record: header followed by ``payload``."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"record payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    head = _HEADER_HEAD.pack(len(payload), kind, zlib.crc32(payload))
    return head + zlib.crc32(head).to_bytes(4, "little") + payload


def file_header() -> bytes:
    """The 16 bytes every segment file starts with."""
    return FILE_HEADER.pack(FILE_MAGIC, FILE_VERSION, 0)


def check_file_header(data: bytes | memoryview) -> str | None:
    """Why ``data`` does not start with a valid file header, or None if it does."""
    if len(data) < FILE_HEADER_SIZE:
        return "file shorter than its header"
    magic, version, _ = FILE_HEADER.unpack_from(data, 0)
    if magic != FILE_MAGIC:
        return "bad magic (not a crema WAL segment)"
    if version != FILE_VERSION:
        return f"unsupported WAL version {version}"
    return None


def header_ok(data: bytes | memoryview, offset: int) -> bool:
    """Whether the record header at ``offset`` passes its checksum."""
    expected = int.from_bytes(data[offset + 12 : offset + 16], "little")
    return zlib.crc32(data[offset : offset + 12]) == expected


# -- entries -----------------------------------------------------------------


def encode_entries(entries: list[Entry]) -> bytes:
    """Column-wise payload of a batch of consecutive entries."""
    n = len(entries)
    if n == 1:  # the common case of a lightly loaded leader
        e = entries[0]
        return _ONE_ENTRY.pack(e.index, 1, e.term, e.type, len(e.data)) + e.data
    head = _ENTRIES_HEAD.pack(entries[0].index, n)
    terms = struct.pack(f"<{n}Q", *[e.term for e in entries])
    types = bytes([e.type for e in entries])
    datas = [e.data for e in entries]
    lengths = struct.pack(f"<{n}I", *map(len, datas))
    return b"".join((head, terms, types, lengths, *datas))


def entries_span(payload: bytes | memoryview) -> tuple[int, int]:
    """First index and count of an entries payload, checking the columns fit."""
    if len(payload) < _ENTRIES_HEAD.size:
        raise PayloadError("entries payload shorter than its header")
    first, count = _ENTRIES_HEAD.unpack_from(payload, 0)
    if first < 1 or count < 1 or _ENTRIES_HEAD.size + 13 * count > len(payload):
        raise PayloadError(f"bad entries header (first {first}, count {count})")
    return first, count


def entry_terms(payload: bytes | memoryview, count: int) -> array[int]:
    """The terms column of an entries payload, without decoding the entries."""
    terms = array("Q")
    start = _ENTRIES_HEAD.size
    terms.frombytes(payload[start : start + 8 * count])
    if not _LITTLE:  # pragma: no cover - big-endian hosts
        terms.byteswap()
    return terms


def decode_entries(payload: bytes | memoryview) -> list[Entry]:
    """Every entry of an entries payload."""
    first, n = entries_span(payload)
    pos = _ENTRIES_HEAD.size
    terms = struct.unpack_from(f"<{n}Q", payload, pos)
    pos += 8 * n
    types = bytes(payload[pos : pos + n])
    pos += n
    lengths = struct.unpack_from(f"<{n}I", payload, pos)
    pos += 4 * n
    if pos + sum(lengths) != len(payload):
        raise PayloadError("entry lengths do not add up to the payload size")
    data = bytes(payload[pos:])
    out: list[Entry] = []
    append = out.append
    at = 0
    try:
        for k in range(n):
            end = at + lengths[k]
            # first >= 1 (entries_span) and terms are unsigned: nothing to check.
            append(entry_unchecked(first + k, terms[k], _TYPES[types[k]], data[at:end]))
            at = end
    except IndexError as exc:
        raise PayloadError(f"unknown entry type in {bytes(types)!r}") from exc
    return out


# -- small records -------------------------------------------------------------


def encode_hard_state(hs: HardState) -> bytes:
    """Payload of a HARD_STATE record."""
    return _HARD_STATE.pack(hs.term, -1 if hs.vote is None else hs.vote, hs.commit)


def decode_hard_state(payload: bytes | memoryview) -> HardState:
    """Inverse of :func:`encode_hard_state`."""
    if len(payload) != _HARD_STATE.size:
        raise PayloadError(f"hard state payload of {len(payload)} bytes")
    term, vote, commit = _HARD_STATE.unpack(payload)
    return HardState(Term(term), None if vote < 0 else NodeId(vote), Index(commit))


def encode_compact(index: Index, term: Term) -> bytes:
    """Payload of a COMPACT record."""
    return _COMPACT.pack(index, term)


def decode_compact(payload: bytes | memoryview) -> tuple[Index, Term]:
    """Inverse of :func:`encode_compact`."""
    if len(payload) != _COMPACT.size:
        raise PayloadError(f"compact payload of {len(payload)} bytes")
    index, term = _COMPACT.unpack(payload)
    return Index(index), Term(term)


def _conf_list(conf: ConfState) -> list[list[int]]:
    return [sorted(conf.voters), sorted(conf.learners)]


def _ints(value: Any) -> list[int]:
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    ):
        raise PayloadError(f"expected a list of node ids, got {value!r}")
    return value


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise PayloadError(f"expected a non-negative integer, got {value!r}")
    return value


def _conf_from(value: Any) -> ConfState:
    if not isinstance(value, list) or len(value) != 2:
        raise PayloadError(f"bad membership {value!r}")
    voters = frozenset(NodeId(v) for v in _ints(value[0]))
    learners = frozenset(NodeId(v) for v in _ints(value[1]))
    try:
        return ConfState(voters, learners)
    except ValueError as exc:
        raise PayloadError(str(exc)) from exc


def _unpack(payload: bytes | memoryview, length: int) -> list[Any]:
    try:
        value = msgpack.unpackb(bytes(payload), raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise PayloadError(f"undecodable payload: {exc}") from exc
    if not isinstance(value, list) or len(value) != length:
        raise PayloadError(f"expected an array of {length}, got {value!r}")
    return value


def encode_conf_state(conf: ConfState) -> bytes:
    """Payload of a CONF_STATE record."""
    return bytes(msgpack.packb(_conf_list(conf)))


def decode_conf_state(payload: bytes | memoryview) -> ConfState:
    """Inverse of :func:`encode_conf_state`."""
    return _conf_from(_unpack(payload, 2))


def encode_snapshot(meta: SnapshotMeta) -> bytes:
    """Payload of a SNAPSHOT or RESTORE record."""
    return bytes(msgpack.packb([meta.index, meta.term, _conf_list(meta.conf_state)]))


def decode_snapshot(payload: bytes | memoryview) -> SnapshotMeta:
    """Inverse of :func:`encode_snapshot`."""
    index, term, conf = _unpack(payload, 3)
    return SnapshotMeta(Index(_int(index)), Term(_int(term)), _conf_from(conf))


def encode_state(state: SegmentState) -> bytes:
    """Payload of a STATE record."""
    hs = state.hard_state
    snap = state.snapshot
    return bytes(
        msgpack.packb(
            [
                state.seq,
                [hs.term, -1 if hs.vote is None else hs.vote, hs.commit],
                _conf_list(state.conf_state),
                [snap.index, snap.term, _conf_list(snap.conf_state)],
                [state.compact_index, state.compact_term],
                state.last_index,
            ]
        )
    )


def decode_state(payload: bytes | memoryview) -> SegmentState:
    """Inverse of :func:`encode_state`."""
    seq, hs, conf, snap, compact, last = _unpack(payload, 6)
    if not (isinstance(hs, list) and len(hs) == 3 and isinstance(hs[1], int)):
        raise PayloadError(f"bad hard state {hs!r}")
    if not (isinstance(snap, list) and len(snap) == 3):
        raise PayloadError(f"bad snapshot {snap!r}")
    if not (isinstance(compact, list) and len(compact) == 2):
        raise PayloadError(f"bad compaction point {compact!r}")
    vote = hs[1]
    return SegmentState(
        seq=_int(seq),
        hard_state=HardState(
            Term(_int(hs[0])), None if vote < 0 else NodeId(vote), Index(_int(hs[2]))
        ),
        conf_state=_conf_from(conf),
        snapshot=SnapshotMeta(Index(_int(snap[0])), Term(_int(snap[1])), _conf_from(snap[2])),
        compact_index=Index(_int(compact[0])),
        compact_term=Term(_int(compact[1])),
        last_index=Index(_int(last)),
    )

"""The MCRS snapshot file format, version 1 (layer L0: bytes in, values out).

Layout (all integers little-endian; see ``docs/snapshot-format.md``)::

    0   4  magic "MCRS"
    4   1  version = 1
    5   1  flags: bit 0 = body is LZ4-frame compressed; bits 1..7 must be 0
    6   8  raft_index
    14  8  raft_term
    22  8  timestamp, Unix ms
    30  n  body (plain, or one or more concatenated LZ4 frames)
    30+n 4 CRC32 of bytes [0, 30+n)

Plain body: ``entry_count u64`` then per entry ``key_len u32, key,
value_len u32, value, expiry u64`` (absolute Unix ms, 0 = none). Nothing may
follow the last entry.

Invariants kept here:

* Nothing in this module allocates according to a length field read from
  input: the body decoder only slices bytes that have actually arrived.
* Every malformed input raises :class:`FormatError` with a short reason; the
  file layer turns it into ``SnapshotCorruptedError`` with the path.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from crema.checkpoint._mcrs import ShardMerge

MAGIC = b"MCRS"
VERSION = 1
FLAG_LZ4 = 0x01
RESERVED_FLAGS = 0xFE
HEADER = struct.Struct("<4sBBQQQ")
HEADER_SIZE = HEADER.size  # 30
CRC = struct.Struct("<I")
CRC_SIZE = CRC.size
MIN_FILE_SIZE = HEADER_SIZE + CRC_SIZE  # 34: header and CRC around an empty body
COUNT = struct.Struct("<Q")
U32 = struct.Struct("<I")
U64 = struct.Struct("<Q")
MAX_U32 = 0xFFFF_FFFF
MAX_U64 = 0xFFFF_FFFF_FFFF_FFFF
ENTRY_OVERHEAD = 4 + 4 + 8  # key_len, value_len, expiry

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_accel: ModuleType | None
try:  # the optional C inner loops (src/crema/checkpoint/_mcrs.c); same results, faster
    from crema.checkpoint import _mcrs as _accel
except ImportError:  # pragma: no cover - depends on the build
    _accel = None


def accelerated() -> bool:
    """Whether the C accelerator of the body codec is in use."""
    return _accel is not None


class FormatError(ValueError):
    """Malformed MCRS data; ``reason`` says what is wrong in a few words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --------------------------------------------------------------------------
# Time helpers: the format stores Unix milliseconds.
# --------------------------------------------------------------------------

Now = datetime | int


def datetime_to_ms(value: datetime) -> int:
    """Unix milliseconds of an aware datetime (sub-millisecond part truncated).

    Raises:
        ValueError: ``value`` is naive.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"expected an aware datetime, got naive {value!r}")
    return (value - _EPOCH) // timedelta(milliseconds=1)


def ms_to_datetime(ms: int) -> datetime:
    """Aware UTC datetime for Unix milliseconds.

    Raises:
        OverflowError: ``ms`` is outside the range of ``datetime``.
    """
    try:
        return _EPOCH + timedelta(milliseconds=ms)
    except OverflowError:
        raise
    except ValueError as exc:  # pragma: no cover - timedelta raises OverflowError
        raise OverflowError(str(exc)) from exc


def now_to_ms(now: Now) -> int:
    """Normalise a ``now`` argument (aware datetime or Unix ms) to Unix ms."""
    if isinstance(now, bool):
        raise TypeError("now must be an aware datetime or Unix milliseconds, not bool")
    if isinstance(now, int):
        return now
    if isinstance(now, datetime):
        return datetime_to_ms(now)
    raise TypeError(f"now must be an aware datetime or Unix milliseconds, got {now!r}")


# --------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SnapshotMetadata:
    """Where a snapshot sits in the Raft log, and when it was taken.

    Attributes:
        index: index of the last log entry the snapshot includes.
        term: term of the entry at ``index``.
        timestamp: creation time, an aware UTC datetime. The file stores
            milliseconds, so the value is truncated to the millisecond.
    """

    index: int
    term: int
    timestamp: datetime

    def __post_init__(self) -> None:
        for name in ("index", "term"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {value!r}")
            if not 0 <= value <= MAX_U64:
                raise ValueError(f"{name} must fit in a u64, got {value}")
        if not isinstance(self.timestamp, datetime):
            raise TypeError(f"timestamp must be a datetime, got {self.timestamp!r}")
        ms = datetime_to_ms(self.timestamp)
        if not 0 <= ms <= MAX_U64:
            raise ValueError(f"timestamp before the Unix epoch: {self.timestamp}")
        object.__setattr__(self, "timestamp", ms_to_datetime(ms))

    @property
    def timestamp_ms(self) -> int:
        """The timestamp in Unix milliseconds, as stored."""
        return datetime_to_ms(self.timestamp)


class SnapshotEntry(NamedTuple):
    """One cache entry in a snapshot (immutable).

    Attributes:
        key: the key bytes.
        value: the value bytes.
        expiry_ms: absolute expiry in Unix milliseconds, or None (a stored 0).
    """

    key: bytes
    value: bytes
    expiry_ms: int | None

    @property
    def expiry(self) -> datetime | None:
        """The absolute expiry as an aware UTC datetime, or None."""
        return None if self.expiry_ms is None else ms_to_datetime(self.expiry_ms)

    def is_expired(self, now: Now | None = None) -> bool:
        """Whether the entry has expired at ``now`` (expiry at or before ``now``)."""
        if self.expiry_ms is None:
            return False
        return self.expiry_ms <= _resolve_now(now)

    def remaining_ttl(self, now: Now | None = None) -> timedelta | None:
        """Time left until expiry: None without expiry, ``timedelta(0)`` once expired."""
        if self.expiry_ms is None:
            return None
        left = self.expiry_ms - _resolve_now(now)
        return timedelta(milliseconds=max(left, 0))


def _resolve_now(now: Now | None) -> int:
    # The one clock read of this module: the documented default of the entry's
    # convenience methods when a caller passes no ``now``. Codec paths never call it.
    if now is None:
        return datetime_to_ms(datetime.now(UTC))
    return now_to_ms(now)


# --------------------------------------------------------------------------
# Header
# --------------------------------------------------------------------------


class Header(NamedTuple):
    """The decoded fixed-size header."""

    metadata: SnapshotMetadata
    compressed: bool


def encode_header(metadata: SnapshotMetadata, compressed: bool) -> bytes:
    """The 30 header bytes for ``metadata``."""
    flags = FLAG_LZ4 if compressed else 0
    return HEADER.pack(MAGIC, VERSION, flags, metadata.index, metadata.term, metadata.timestamp_ms)


def decode_header(data: bytes) -> Header:
    """Decode and check the 30 header bytes.

    Raises:
        FormatError: short data, bad magic, unknown version, reserved flag
            bits set, or a timestamp outside the range of ``datetime``.
    """
    if len(data) < HEADER_SIZE:
        raise FormatError(f"truncated: header is {len(data)} of {HEADER_SIZE} bytes")
    magic, version, flags, index, term, timestamp_ms = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise FormatError(f"bad magic {magic!r} (expected {MAGIC!r})")
    if version != VERSION:
        raise FormatError(f"unsupported version {version} (expected {VERSION})")
    if flags & RESERVED_FLAGS:
        raise FormatError(f"reserved flag bits set (flags 0x{flags:02x})")
    try:
        timestamp = ms_to_datetime(timestamp_ms)
    except OverflowError:
        raise FormatError(f"timestamp {timestamp_ms} ms is out of range") from None
    return Header(SnapshotMetadata(index, term, timestamp), bool(flags & FLAG_LZ4))


# --------------------------------------------------------------------------
# Entries
# --------------------------------------------------------------------------


def expiry_to_ms(expiry: int | datetime | None) -> int:
    """Normalise an expiry argument to the stored u64 (0 = none).

    Raises:
        TypeError: not None, an int or a datetime.
        ValueError: negative, beyond u64, or a naive datetime.
    """
    if expiry is None:
        return 0
    if isinstance(expiry, bool):
        raise TypeError("expiry must be None, Unix milliseconds or an aware datetime, not bool")
    if isinstance(expiry, int):
        ms = expiry
    elif isinstance(expiry, datetime):
        ms = datetime_to_ms(expiry)
    else:
        raise TypeError(f"expiry must be None, Unix ms or an aware datetime, got {expiry!r}")
    if not 0 <= ms <= MAX_U64:
        raise ValueError(f"expiry {ms} ms does not fit the format (0 .. 2**64-1)")
    return ms


def to_bytes(name: str, value: bytes | str) -> bytes:
    """Keys and values are bytes, or str encoded as UTF-8."""
    if isinstance(value, bytes):
        data = value
    elif isinstance(value, str):
        data = value.encode("utf-8")
    elif isinstance(value, bytearray | memoryview):
        data = bytes(value)
    else:
        raise TypeError(f"{name} must be bytes or str, got {type(value).__name__}")
    if len(data) > MAX_U32:
        raise ValueError(f"{name} of {len(data)} bytes exceeds the format's 4 GiB limit")
    return data


def encode_entry(key: bytes, value: bytes, expiry_ms: int) -> bytes:
    """One encoded body entry (inputs already normalised)."""
    return b"".join((U32.pack(len(key)), key, U32.pack(len(value)), value, U64.pack(expiry_ms)))


def encode_batch(items: list[object]) -> bytes | None:
    """Encode many ``(bytes, bytes, int | None)`` tuples at once with the accelerator.

    Returns None when the accelerator is not built or an item has another
    shape; the caller then takes the pure-Python path, which normalises or
    rejects it.
    """
    return None if _accel is None else _accel.encode(items)


def shard_merger(tables: tuple[dict[bytes, tuple[bytes, int | None, int]], ...]) -> ShardMerge:
    """The accelerator's write-order encoder of a store view's tables.

    Raises:
        RuntimeError: the accelerator is not built (check :func:`accelerated`).
        TypeError: a table holds an entry of another shape.
    """
    if _accel is None:
        raise RuntimeError("the C accelerator is not built")
    merger: ShardMerge = _accel.ShardMerge(tables)
    return merger


class BodyDecoder:
    """Incremental decoder of a plain body: feed bytes, get entries.

    ``body_size``, when known (an uncompressed file), lets a length field
    that runs past the end be reported at once instead of at :meth:`finish`.
    """

    def __init__(self, body_size: int | None = None) -> None:
        self._buf = b""
        self._pos = 0
        self._consumed = 0  # bytes of the body before self._buf
        self._body_size = body_size
        self.entry_count: int | None = None
        self.entries_seen = 0

    def feed(
        self, data: bytes, *, build: bool = True, live_after_ms: int | None = None
    ) -> list[SnapshotEntry]:
        """Add ``data``; return the entries completed by it.

        Args:
            data: the next bytes of the plain body.
            build: when False, only check the structure and return nothing
                (cheaper: no entry objects are made).
            live_after_ms: when given, leave out entries whose expiry is at
                or before this Unix ms time (they are still checked).

        Raises:
            FormatError: a length field runs past the known body size, or
                bytes follow the last entry.
        """
        if self._pos:
            self._consumed += self._pos
            self._buf = self._buf[self._pos :] + data
            self._pos = 0
        else:
            self._buf += data
        if self.entry_count is None:
            if len(self._buf) < COUNT.size:
                return []
            (self.entry_count,) = COUNT.unpack_from(self._buf)
            self._pos = COUNT.size
        out: list[SnapshotEntry] = []
        live_after = -1 if live_after_ms is None else live_after_ms
        if _accel is not None:
            out = self._run_accelerated(build, live_after)
        elif build:
            self._parse(out, live_after)
        else:
            self._walk()
        if self.entries_seen == self.entry_count and self._pos < len(self._buf):
            raise FormatError(f"{len(self._buf) - self._pos} trailing bytes after the last entry")
        return out

    def _run_accelerated(self, build: bool, live_after: int) -> list[SnapshotEntry]:
        assert _accel is not None and self.entry_count is not None
        remaining = self.entry_count - self.entries_seen
        out: list[SnapshotEntry] = []
        if build:
            out, pos, seen, need = _accel.parse(
                self._buf, self._pos, remaining, live_after, SnapshotEntry
            )
        else:
            pos, seen, need = _accel.walk(self._buf, self._pos, remaining)
        self._pos = pos
        self.entries_seen += seen
        if need:
            self._check_fits(need)
        return out

    def _parse(self, out: list[SnapshotEntry], live_after_ms: int) -> None:
        # The hot loop of every restore: locals only, one tuple per entry.
        buf, pos, end = self._buf, self._pos, len(self._buf)
        assert self.entry_count is not None
        remaining = self.entry_count - self.entries_seen
        append = out.append
        unpack32, unpack64 = U32.unpack_from, U64.unpack_from
        new, cls = tuple.__new__, SnapshotEntry
        seen = 0
        while seen < remaining and pos + 4 <= end:
            (klen,) = unpack32(buf, pos)
            kend = pos + 4 + klen
            if kend + 4 > end:
                self._check_fits(kend + 12)
                break
            (vlen,) = unpack32(buf, kend)
            vend = kend + 4 + vlen
            if vend + 8 > end:
                self._check_fits(vend + 8)
                break
            (expiry,) = unpack64(buf, vend)
            if expiry == 0:
                append(new(cls, (buf[pos + 4 : kend], buf[kend + 4 : vend], None)))
            elif expiry > live_after_ms:
                append(new(cls, (buf[pos + 4 : kend], buf[kend + 4 : vend], expiry)))
            pos = vend + 8
            seen += 1
        self._pos = pos
        self.entries_seen += seen

    def _walk(self) -> None:
        buf, pos, end = self._buf, self._pos, len(self._buf)
        assert self.entry_count is not None
        remaining = self.entry_count - self.entries_seen
        unpack32 = U32.unpack_from
        seen = 0
        while seen < remaining and pos + 4 <= end:
            kend = pos + 4 + unpack32(buf, pos)[0]
            if kend + 4 > end:
                self._check_fits(kend + 12)
                break
            vend = kend + 4 + unpack32(buf, kend)[0]
            if vend + 8 > end:
                self._check_fits(vend + 8)
                break
            pos = vend + 8
            seen += 1
        self._pos = pos
        self.entries_seen += seen

    def _check_fits(self, needed_in_buf: int) -> None:
        if self._body_size is not None and self._consumed + needed_in_buf > self._body_size:
            raise FormatError(
                f"entry {self.entries_seen} has a length field that runs past the end of the body"
            )

    def finish(self) -> None:
        """Check that the body ended exactly after the last entry.

        Raises:
            FormatError: the body ended early or has trailing bytes.
        """
        if self.entry_count is None:
            raise FormatError("body ends before the entry count")
        if self.entries_seen < self.entry_count:
            raise FormatError(
                f"body ends early: {self.entries_seen} of {self.entry_count} entries present"
            )
        if self._pos < len(self._buf):
            raise FormatError(f"{len(self._buf) - self._pos} trailing bytes after the last entry")


def iter_plain_body(body: bytes) -> Iterator[SnapshotEntry]:
    """Decode a complete plain body held in memory (for tests and small files)."""
    decoder = BodyDecoder(len(body))
    yield from decoder.feed(body)
    decoder.finish()


# --------------------------------------------------------------------------
# CRC32 of a concatenation, from the CRCs of its parts
# --------------------------------------------------------------------------
# The entry count sits at the start of the body but is known only once the
# last entry is written, so the writer checksums the header and the count
# separately from the entries and joins the two CRCs (zlib's crc32_combine,
# by squaring the GF(2) operator that appends zero bits).

_CRC_POLY = 0xEDB88320


def _gf2_times(matrix: list[int], vector: int) -> int:
    total = 0
    row = 0
    while vector:
        if vector & 1:
            total ^= matrix[row]
        vector >>= 1
        row += 1
    return total


def _gf2_square(matrix: list[int]) -> list[int]:
    return [_gf2_times(matrix, matrix[n]) for n in range(32)]


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """CRC32 of ``a + b`` given ``crc32(a)``, ``crc32(b)`` and ``len(b)``."""
    if len2 <= 0:
        return crc1
    odd = [_CRC_POLY] + [1 << n for n in range(31)]  # operator for one zero bit
    even = _gf2_square(odd)  # two zero bits
    odd = _gf2_square(even)  # four zero bits
    while True:
        even = _gf2_square(odd)
        if len2 & 1:
            crc1 = _gf2_times(even, crc1)
        len2 >>= 1
        if not len2:
            break
        odd = _gf2_square(even)
        if len2 & 1:
            crc1 = _gf2_times(odd, crc1)
        len2 >>= 1
        if not len2:
            break
    return crc1 ^ crc2

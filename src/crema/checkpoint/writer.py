"""Streaming writer of MCRS snapshot files (layer L1).

The file appears at its final path only when complete: entries stream into
a temporary file in the same directory, which is fsynced, renamed over the
final name and followed by an fsync of the directory. Memory use does not
grow with the number of entries: entries are buffered up to ``chunk_size``
bytes, then (LZ4-compressed and) written.

The entry count opens the body but is known only at the end, so the writer
leaves room for it and fills it in at :meth:`SnapshotWriter.finish`: 8 bytes
in a plain body, a separate fixed-size LZ4 frame in a compressed one (the
format allows several concatenated frames). The CRC of the entries is kept
running and joined with the CRC of the header and count by ``crc32_combine``,
so nothing is read back.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from datetime import datetime
from itertools import islice
from pathlib import Path
from types import TracebackType
from typing import Protocol, runtime_checkable

import lz4.frame

from crema.checkpoint.format import (
    CRC,
    HEADER_SIZE,
    MAX_U32,
    MAX_U64,
    U32,
    U64,
    SnapshotEntry,
    SnapshotMetadata,
    accelerated,
    crc32_combine,
    encode_batch,
    encode_header,
    expiry_to_ms,
    shard_merger,
    to_bytes,
)
from crema.checkpoint.info import SnapshotInfo
from crema.errors import SnapshotError

DEFAULT_CHUNK_SIZE = 1 << 20
TEMP_SUFFIX = ".tmp"
_COUNT_FRAME_SIZE = len(lz4.frame.compress(bytes(8)))
_BATCH = 1024  # entries encoded per call of the accelerator
MERGE_ENTRIES = 2048
"""Entries a :class:`ShardedEntries` source encodes per C call (about 1 ms holding the GIL)."""


@runtime_checkable
class ShardedEntries(Protocol):
    """A store view split in tables, each iterating in ascending write sequence number.

    ``shard_tables()`` returns dicts ``key -> (value, expiry_ms | None, seq)``
    that do not change while the snapshot is written; merged by ``seq`` they
    are the snapshot's entries in order. The writer encodes such a source in
    C, a slice at a time, when the accelerator is built (else it iterates it).
    """

    def shard_tables(self) -> tuple[dict[bytes, tuple[bytes, int | None, int]], ...]:
        """The tables of the view."""
        ...


EntryLike = SnapshotEntry | tuple[bytes | str, bytes | str, int | datetime | None]
"""What a writer accepts: a ``SnapshotEntry`` or a ``(key, value, expiry)`` tuple."""


def fsync_directory(directory: Path) -> None:
    """fsync a directory so that a rename or unlink in it is durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SnapshotWriter:
    """Writes one snapshot file, entry by entry.

    Use as a context manager: :meth:`finish` runs on success and
    :meth:`abort` on an exception::

        with SnapshotWriter(path, metadata) as writer:
            for key, value, expiry in cache.entries():
                writer.write_entry(key, value, expiry)
        # writer.info describes the finished file

    Raises:
        SnapshotError: the temporary file cannot be created (missing parent
            directory, permission denied, disk full, ...). The OS error is
            attached as ``__cause__``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        metadata: SnapshotMetadata,
        *,
        compression: bool = True,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        self.path = Path(path)
        self.metadata = metadata
        self.compression = compression
        self.info: SnapshotInfo | None = None
        self._chunk_size = max(chunk_size, 1)
        self._parts: list[bytes] = []
        self._buffered = 0
        self._count = 0
        self._crc = 0  # CRC of everything after the count (frame)
        self._tail_len = 0
        self._closed = False
        self._compressor = lz4.frame.LZ4FrameCompressor() if compression else None
        try:
            fd, temp = tempfile.mkstemp(
                dir=self.path.parent, prefix=f".{self.path.name}.", suffix=TEMP_SUFFIX
            )
        except OSError as exc:
            raise SnapshotError(f"cannot create a snapshot in {self.path.parent}: {exc}") from exc
        self._fd = fd
        self._temp = Path(temp)
        self._offset = HEADER_SIZE + (_COUNT_FRAME_SIZE if compression else 8)
        if self._compressor is not None:
            self._emit(self._compressor.begin())

    # -- writing ------------------------------------------------------------

    def write_entry(
        self, key: bytes | str, value: bytes | str, expiry: int | datetime | None = None
    ) -> None:
        """Append one entry.

        Args:
            key: bytes, or str encoded as UTF-8.
            value: bytes, or str encoded as UTF-8.
            expiry: None, absolute Unix ms (0 means none) or an aware datetime.

        Raises:
            TypeError, ValueError: an argument of the wrong type or range.
            SnapshotError: writing failed; the writer is aborted.
        """
        if self._closed:
            raise SnapshotError("write_entry() on a finished or aborted writer", self.path)
        k = key if type(key) is bytes and len(key) <= MAX_U32 else to_bytes("key", key)
        v = value if type(value) is bytes and len(value) <= MAX_U32 else to_bytes("value", value)
        e = expiry if type(expiry) is int and 0 <= expiry <= MAX_U64 else expiry_to_ms(expiry)
        parts = self._parts
        parts.append(U32.pack(len(k)))
        parts.append(k)
        parts.append(U32.pack(len(v)))
        parts.append(v)
        parts.append(U64.pack(e))
        self._count += 1
        self._buffered += len(k) + len(v) + 16
        if self._buffered >= self._chunk_size:
            self._flush_chunk()

    def write_entries(self, entries: Iterable[EntryLike]) -> None:
        """Append many entries: ``SnapshotEntry`` objects or ``(key, value, expiry)`` tuples.

        Same rules as :meth:`write_entry`, with a faster loop for the common
        case of bytes keys and values and int-or-None expiries.
        """
        if self._closed:
            raise SnapshotError("write_entries() on a finished or aborted writer", self.path)
        tables = getattr(entries, "shard_tables", None)
        if tables is not None and accelerated():
            self._write_merged(tables())
        elif accelerated():
            self._write_batches(iter(entries))
        else:
            self._write_python(entries)

    def _write_merged(self, tables: tuple[dict[bytes, tuple[bytes, int | None, int]], ...]) -> None:
        """Encode a :class:`ShardedEntries` source in write order, in short C slices.

        Each slice holds the GIL about a millisecond; compression, the CRC
        and the file writes release it, so a writer thread leaves the event
        loop room to run.
        """
        merger = shard_merger(tables)
        limit, base = self._chunk_size, self._count
        while data := merger.encode(MERGE_ENTRIES, limit):
            self._parts.append(data)
            self._count = base + merger.count
            self._buffered += len(data)
            if self._buffered >= limit:
                self._flush_chunk()

    def _write_batches(self, entries: Iterator[EntryLike]) -> None:
        """Encode batches in C; a batch with an unusual item takes the Python path."""
        while batch := list(islice(entries, _BATCH)):
            data = encode_batch(batch)  # type: ignore[arg-type]
            if data is None:
                self._write_python(batch)
                continue
            self._parts.append(data)
            self._count += len(batch)
            self._buffered += len(data)
            if self._buffered >= self._chunk_size:
                self._flush_chunk()

    def _write_python(self, entries: Iterable[EntryLike]) -> None:
        parts = self._parts
        extend = parts.extend
        pack32, pack64 = U32.pack, U64.pack
        limit = self._chunk_size
        buffered = self._buffered
        count = 0
        for k, v, e in entries:
            if type(k) is bytes and type(v) is bytes and len(k) <= MAX_U32 >= len(v):
                key, value = k, v
            else:
                key, value = to_bytes("key", k), to_bytes("value", v)
            if e is None:
                expiry = 0
            elif type(e) is int and 0 <= e <= MAX_U64:
                expiry = e
            else:
                expiry = expiry_to_ms(e)
            klen, vlen = len(key), len(value)
            extend((pack32(klen), key, pack32(vlen), value, pack64(expiry)))
            count += 1
            buffered += klen + vlen + 16
            if buffered >= limit:
                self._count += count
                count = 0
                self._flush_chunk()
                buffered = self._buffered
        self._count += count
        self._buffered = buffered

    def _flush_chunk(self, final: bool = False) -> None:
        """Compress and write the buffered bytes in pieces of exactly ``chunk_size``.

        LZ4's output depends on how its input is split between calls, so the
        pieces are cut at fixed offsets of the plain body, whatever path
        encoded the entries: the same entries always give the same file.
        Less than a piece stays buffered, except at the end (``final``).
        """
        data = b"".join(self._parts)
        self._parts.clear()
        size = self._chunk_size
        cut = len(data) if final else len(data) - len(data) % size
        if cut < len(data):
            self._parts.append(data[cut:])
        self._buffered = len(data) - cut
        view = memoryview(data)
        for start in range(0, cut, size):
            piece = view[start : min(start + size, cut)]
            self._emit(piece if self._compressor is None else self._compressor.compress(piece))

    def _emit(self, data: bytes | memoryview) -> None:
        if not data:
            return
        self._crc = zlib.crc32(data, self._crc)
        self._tail_len += len(data)
        try:
            view = memoryview(data)
            while view:
                written = os.pwrite(self._fd, view, self._offset)
                self._offset += written
                view = view[written:]
        except OSError as exc:
            self._fail(exc)

    def _fail(self, exc: OSError) -> None:
        self.abort()
        raise SnapshotError(f"cannot write snapshot {self.path}: {exc}", self.path) from exc

    # -- completion ---------------------------------------------------------

    def finish(self) -> SnapshotInfo:
        """Complete the file: count, CRC, fsync, rename, fsync the directory.

        Returns:
            The :class:`SnapshotInfo` of the finished file.

        Raises:
            SnapshotError: an I/O error; the temporary file is removed. Only
                a failed fsync of the directory after the rename leaves the
                (complete, verified-by-construction) file at ``path``.
        """
        if self._closed:
            if self.info is not None:
                return self.info
            raise SnapshotError("finish() on an aborted writer", self.path)
        self._flush_chunk(final=True)
        if self._compressor is not None:
            self._emit(self._compressor.flush())
        head = encode_header(self.metadata, self.compression) + self._encode_count()
        crc = crc32_combine(zlib.crc32(head), self._crc, self._tail_len)
        self._emit(CRC.pack(crc))
        try:
            os.pwrite(self._fd, head, 0)
            os.fsync(self._fd)
            os.close(self._fd)
            self._closed = True
            os.replace(self._temp, self.path)
            fsync_directory(self.path.parent)
        except OSError as exc:
            self._fail(exc)
        self.info = SnapshotInfo(
            path=self.path,
            metadata=self.metadata,
            size=self._offset,
            entry_count=self._count,
            compressed=self.compression,
        )
        return self.info

    def _encode_count(self) -> bytes:
        count = U64.pack(self._count)
        if not self.compression:
            return count
        frame: bytes = lz4.frame.compress(count)
        if len(frame) != _COUNT_FRAME_SIZE:  # pragma: no cover - lz4 stores 8 bytes raw
            raise RuntimeError(f"LZ4 count frame is {len(frame)} bytes, not {_COUNT_FRAME_SIZE}")
        return frame

    def abort(self) -> None:
        """Discard the file being written. Safe to call more than once."""
        if not self._closed:
            self._closed = True
            with contextlib.suppress(OSError):
                os.close(self._fd)
        if self.info is None:
            with contextlib.suppress(FileNotFoundError):
                self._temp.unlink()

    @property
    def entry_count(self) -> int:
        """Entries written so far."""
        return self._count

    def __enter__(self) -> SnapshotWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.finish()
        else:
            self.abort()

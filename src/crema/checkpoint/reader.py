"""Streaming reader of MCRS snapshot files (layer L1).

Order of trust, as in the checkpointing guide: the header is checked on
open; the CRC of the whole file is checked before the first entry is handed
out; only then is the body decompressed and decoded. Memory use is constant
in the number of entries: the file is read in chunks and LZ4 output is
bounded per call.
"""

from __future__ import annotations

import contextlib
import gc
import os
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType

import lz4.frame

from crema.checkpoint.format import (
    COUNT,
    CRC,
    CRC_SIZE,
    HEADER_SIZE,
    MIN_FILE_SIZE,
    BodyDecoder,
    FormatError,
    Header,
    Now,
    SnapshotEntry,
    SnapshotMetadata,
    decode_header,
    now_to_ms,
)
from crema.checkpoint.info import SnapshotInfo
from crema.errors import SnapshotCorruptedError, SnapshotError

READ_SIZE = 1 << 20
MAX_DECOMPRESSED_CHUNK = 4 << 20
_LZ4_ERRORS = (RuntimeError, ValueError, EOFError)

Progress = Callable[[int, int], None]
"""Called as ``progress(bytes_since_last_call, total_bytes)`` while a file is processed.

A full pass reads the file twice (CRC, then decode), so the total is twice the size."""


class SnapshotReader:
    """An open snapshot file; create with :meth:`open`.

    Example::

        with SnapshotReader.open(path) as reader:
            print(reader.metadata().index, reader.entry_count)
            for entry in reader.entries():
                ...
    """

    def __init__(self, path: Path, fd: int, header: Header, size: int, entry_count: int) -> None:
        self.path = path
        self._fd = fd
        self._header = header
        self.size = size
        self.entry_count = entry_count

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> SnapshotReader:
        """Open ``path`` and check its header and entry count (not yet the CRC).

        Raises:
            SnapshotError: the file is missing or unreadable.
            SnapshotCorruptedError: the header or entry count is malformed.
        """
        path = Path(path)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError as exc:
            raise SnapshotError(f"{path}: no such snapshot file", path) from exc
        except OSError as exc:
            raise SnapshotError(f"{path}: cannot open: {exc.strerror}", path) from exc
        reader: SnapshotReader | None = None
        try:
            size = os.fstat(fd).st_size
            if size < MIN_FILE_SIZE:
                raise FormatError(f"truncated: {size} bytes, a snapshot has at least 34")
            header = decode_header(os.pread(fd, HEADER_SIZE, 0))
            reader = cls(path, fd, header, size, 0)
            reader.entry_count = reader._read_entry_count()
        except (FormatError, OSError) as exc:
            if reader is not None:
                reader.close()
            else:
                os.close(fd)
            if isinstance(exc, FormatError):
                raise SnapshotCorruptedError(path, exc.reason) from None
            raise SnapshotError(f"{path}: cannot read: {exc}", path) from exc
        return reader

    # -- properties ---------------------------------------------------------

    def metadata(self) -> SnapshotMetadata:
        """Index, term and timestamp from the header."""
        return self._header.metadata

    @property
    def compressed(self) -> bool:
        """Whether the body is LZ4-compressed."""
        return self._header.compressed

    def info(self) -> SnapshotInfo:
        """A :class:`SnapshotInfo` for this file."""
        return SnapshotInfo(
            self.path, self.metadata(), self.size, self.entry_count, self.compressed
        )

    # -- checks -------------------------------------------------------------

    def verify(self, progress: Progress | None = None) -> None:
        """Check the CRC and the full structure of the body.

        Raises:
            SnapshotCorruptedError: what is wrong, as ``reason``.
            SnapshotError: an I/O error.
        """
        with self._translate_errors():
            self._check_crc(progress)
            decoder = BodyDecoder(self._plain_size_hint())
            for chunk in self._plain_chunks(progress):
                decoder.feed(chunk, build=False)
            decoder.finish()

    def entries(
        self, progress: Progress | None = None, *, live_at: Now | None = None
    ) -> Iterator[SnapshotEntry]:
        """Yield the entries in file order, after checking the CRC of the whole file.

        Args:
            progress: called as bytes are processed.
            live_at: when given (aware datetime or Unix ms), leave out entries
                whose expiry is at or before it.

        Raises:
            SnapshotCorruptedError: the CRC or the structure is wrong (the CRC
                is checked before the first entry is yielded).
            SnapshotError: an I/O error.
        """
        with self._translate_errors():
            self._check_crc(progress)
            decoder = BodyDecoder(self._plain_size_hint())
            live_after = None if live_at is None else now_to_ms(live_at)
            for chunk in self._plain_chunks(progress):
                yield from decoder.feed(chunk, live_after_ms=live_after)
            decoder.finish()

    def plain_body_size(self, progress: Progress | None = None) -> int:
        """Size of the body once decompressed (streams through LZ4 without decoding).

        Raises:
            SnapshotCorruptedError: the LZ4 stream is malformed.
        """
        with self._translate_errors():
            return sum(len(chunk) for chunk in self._plain_chunks(progress))

    def read_all(
        self, progress: Progress | None = None, *, live_at: Now | None = None
    ) -> list[SnapshotEntry]:
        """All entries (or those live at ``live_at``) as a list, fully checked.

        The same checks as :meth:`entries`, without a generator step per
        entry: the fast path of restores, which hold every entry anyway.
        """
        out: list[SnapshotEntry] = []
        with self._translate_errors(), gc_paused():
            self._check_crc(progress)
            decoder = BodyDecoder(self._plain_size_hint())
            live_after = None if live_at is None else now_to_ms(live_at)
            for chunk in self._plain_chunks(progress):
                out.extend(decoder.feed(chunk, live_after_ms=live_after))
            decoder.finish()
        return out

    def _translate_errors(self) -> _ErrorTranslator:
        return _ErrorTranslator(self.path)

    def _plain_size_hint(self) -> int | None:
        return None if self.compressed else self.size - HEADER_SIZE - CRC_SIZE

    def _check_crc(self, progress: Progress | None) -> None:
        end = self.size - CRC_SIZE
        crc = 0
        for data in self._read_range(0, end):
            crc = zlib.crc32(data, crc)
            if progress is not None:
                progress(len(data), 2 * end)
        (stored,) = CRC.unpack(self._pread(CRC_SIZE, end))
        if crc != stored:
            raise FormatError(f"CRC mismatch: stored 0x{stored:08x}, computed 0x{crc:08x}")

    def _pread(self, size: int, offset: int) -> bytes:
        data = os.pread(self._fd, size, offset)
        if len(data) != size:
            raise FormatError("truncated: the file shrank while being read")
        return data

    def _read_range(self, start: int, end: int, size: int = READ_SIZE) -> Iterator[bytes]:
        offset = start
        while offset < end:
            data = self._pread(min(size, end - offset), offset)
            offset += len(data)
            yield data

    def _plain_chunks(
        self, progress: Progress | None = None, read_size: int = READ_SIZE
    ) -> Iterator[bytes]:
        """The plain body in chunks, decompressing (any number of) LZ4 frames."""
        end = self.size - CRC_SIZE
        raw = self._read_range(HEADER_SIZE, end, read_size)
        if not self.compressed:
            for data in raw:
                if progress is not None:
                    progress(len(data), 2 * end)
                yield data
            return
        decompressor = lz4.frame.LZ4FrameDecompressor()
        in_frame = False
        for data in raw:
            if progress is not None:
                progress(len(data), 2 * end)
            pending = data
            while True:
                try:
                    out = decompressor.decompress(pending, max_length=MAX_DECOMPRESSED_CHUNK)
                except _LZ4_ERRORS as exc:
                    raise FormatError(f"LZ4 error: {exc}") from None
                in_frame = in_frame or bool(pending)
                pending = b""
                if out:
                    yield out
                if decompressor.eof:
                    pending = decompressor.unused_data
                    decompressor = lz4.frame.LZ4FrameDecompressor()
                    in_frame = False
                    if not pending:
                        break
                elif decompressor.needs_input:
                    break
        if in_frame:
            raise FormatError("LZ4 error: the last frame is truncated")

    def _read_entry_count(self) -> int:
        head = b""
        for chunk in self._plain_chunks(read_size=64 << 10):
            head += chunk
            if len(head) >= COUNT.size:
                break
        if len(head) < COUNT.size:
            raise FormatError("truncated: the body ends before the entry count")
        count: int = COUNT.unpack_from(head)[0]
        return count

    # -- lifetime -----------------------------------------------------------

    def close(self) -> None:
        """Close the file. Safe to call more than once."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> SnapshotReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many acyclic objects.

    A restore creates millions of tuples and bytes, none in a cycle; each
    batch of allocations would otherwise set off collections that traverse
    every object built so far (about 40% of a restore's CPU time).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class _ErrorTranslator:
    """Turns format and OS errors inside a read into the public snapshot errors."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(exc, FormatError):
            raise SnapshotCorruptedError(self.path, exc.reason) from None
        if isinstance(exc, OSError):
            raise SnapshotError(f"{self.path}: cannot read: {exc}", self.path) from exc

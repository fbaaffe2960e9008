"""One client connection: read, parse, run commands in order, write replies (layer L2).

Rules:

* One read loop per connection. Each read is fed to the
  :class:`~crema.server.resp_parser.RequestParser`; every complete command
  in it (a pipelined batch) runs in order, and the replies of the batch are
  written together, then drained (output backpressure). Replies are flushed
  early when they pass :data:`FLUSH_BYTES`, so output buffered per
  connection stays bounded whatever the batch asks for.
* Input is bounded by the parser's limits (checked on headers, before the
  payload is buffered) and by reading at most :data:`READ_SIZE` bytes at a
  time; nothing is read while a batch runs.
* A protocol violation gets ``-ERR Protocol error: ...`` (after the replies of
  the commands before it) and the connection is closed. QUIT replies ``+OK``
  then closes.
* :meth:`Connection.stop` lets a batch in progress finish and flush, then
  closes; an idle connection is closed at once. Closing is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from crema.errors import ProtocolError
from crema.server.commands import dispatch
from crema.server.resp_parser import (
    DEFAULT_MAX_BULK_LEN,
    DEFAULT_MAX_INLINE_LEN,
    DEFAULT_MAX_MULTIBULK_LEN,
    RequestParser,
)
from crema.server.resp_reply import ErrorReply, encode_reply
from crema.server.session import Session

__all__ = ["FLUSH_BYTES", "READ_SIZE", "Connection", "ParserLimits"]

log = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
"""Bytes read from the socket at a time."""

FLUSH_BYTES = 256 * 1024
"""Replies buffered at most before they are written and drained mid-batch."""


@dataclass(frozen=True, slots=True)
class ParserLimits:
    """Request limits for each connection's parser (see :class:`RequestParser`)."""

    max_bulk_len: int = DEFAULT_MAX_BULK_LEN
    max_multibulk_len: int = DEFAULT_MAX_MULTIBULK_LEN
    max_inline_len: int = DEFAULT_MAX_INLINE_LEN


def _peer(writer: asyncio.StreamWriter, name: str) -> str:
    info = writer.get_extra_info(name)
    if isinstance(info, tuple) and len(info) >= 2:
        host = f"[{info[0]}]" if ":" in str(info[0]) else str(info[0])
        return f"{host}:{info[1]}"
    return ""


class Connection:
    """Serves one client until it disconnects, QUITs, breaks the protocol or the server stops.

    Args:
        session: the connection's state (registered with the server).
        reader: the stream to read requests from.
        writer: the stream to write replies to.
        limits: ``RequestParser`` keyword limits.
    """

    def __init__(
        self,
        session: Session,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        limits: ParserLimits | None = None,
    ) -> None:
        self.session = session
        self._reader = reader
        self._writer = writer
        limits = limits or ParserLimits()
        self._parser = RequestParser(
            max_bulk_len=limits.max_bulk_len,
            max_multibulk_len=limits.max_multibulk_len,
            max_inline_len=limits.max_inline_len,
        )
        self._busy = False
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    @staticmethod
    def addresses(writer: asyncio.StreamWriter) -> tuple[str, str]:
        """The peer's and the local ``host:port`` of a connection."""
        return _peer(writer, "peername"), _peer(writer, "sockname")

    async def run(self) -> None:
        """Serve the connection until it ends; always closes it and unregisters the session."""
        self._task = asyncio.current_task()
        try:
            await self._serve()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            if not self._stopping:
                raise
        except Exception:  # a bug: log it, drop this client, keep the server
            log.exception("connection %d failed", self.session.id)
        finally:
            await self._close()

    def stop(self) -> None:
        """Close after the batch in progress (at once when idle)."""
        self._stopping = True
        if not self._busy and self._task is not None and not self._task.done():
            self._task.cancel()

    async def _serve(self) -> None:
        stats = self.session.server.stats
        while not self._stopping:
            data = await self._reader.read(READ_SIZE)
            if not data:
                return
            stats.net_input_bytes += len(data)
            self._parser.feed(data)
            self._busy = True
            try:
                keep_open = await self._run_batch()
            finally:
                self._busy = False
            if not keep_open:
                return

    async def _run_batch(self) -> bool:
        """Run every complete command received; returns False once the connection must close."""
        session = self.session
        session.begin_batch()
        out: list[bytes] = []
        size = 0
        keep_open = True
        while True:
            try:
                args = self._parser.next_command()
            except ProtocolError as exc:
                session.server.stats.error_replies += 1
                out.append(encode_reply(ErrorReply("ERR", str(exc))))
                keep_open = False
                break
            if args is None:
                break
            reply = await dispatch(session, args)
            if session.silent:
                keep_open = False
                break
            data = encode_reply(reply, session.protocol)
            out.append(data)
            size += len(data)
            if session.closing:
                keep_open = False
                break
            if size >= FLUSH_BYTES:
                await self._write(out)
                out, size = [], 0
        await self._write(out)
        return keep_open

    async def _write(self, out: list[bytes]) -> None:
        if not out:
            return
        data = b"".join(out) if len(out) > 1 else out[0]
        self.session.server.stats.net_output_bytes += len(data)
        self._writer.write(data)
        await self._writer.drain()

    async def _close(self) -> None:
        self.session.close()
        writer = self._writer
        if writer.is_closing():
            return
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 1.0)

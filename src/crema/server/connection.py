"""One client connection: parse requests, run commands in order, write replies (layer L2).

Rules:

* The connection is an :class:`asyncio.Protocol`. Bytes go to the
  :class:`~crema.server.resp_parser.RequestParser`; the commands of a read (a
  pipelined batch) run in arrival order and their replies are written
  together. Replies are flushed early once they pass :data:`FLUSH_BYTES`.
* A command that needs no await (a read in ``local`` mode or with a read
  barrier already satisfied, PING, INFO, ...; see
  :func:`~crema.server.commands.dispatch.runs_at_once`) runs straight from the
  socket callback. The first command that must await the backend (a write, a
  linearizable read) starts a task, which then runs every remaining command
  in order; no other command of the connection runs until it is done.
* Bounded: while a task runs, input beyond :data:`MAX_PENDING_INPUT` bytes
  pauses reading; when the transport's write buffer is full
  (``pause_writing``), commands stop until it drains. The parser's limits
  bound any single request.
* A protocol violation gets ``-ERR Protocol error: ...`` after the replies of
  the commands before it, then the connection closes. QUIT replies ``+OK``
  and closes; SHUTDOWN closes without a reply.
* :meth:`Connection.stop` stops reading, lets the commands already received
  finish and their replies go out, then closes. Closing is idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass
from typing import Any, cast

from crema.errors import ProtocolError
from crema.server.commands.dispatch import prepare, run, runs_at_once
from crema.server.resp_parser import (
    DEFAULT_MAX_BULK_LEN,
    DEFAULT_MAX_INLINE_LEN,
    DEFAULT_MAX_MULTIBULK_LEN,
    RequestParser,
)
from crema.server.resp_reply import ErrorReply, Reply, encode_reply
from crema.server.session import ServerState, Session

__all__ = ["FLUSH_BYTES", "MAX_PENDING_INPUT", "Connection", "ParserLimits"]

log = logging.getLogger(__name__)

FLUSH_BYTES = 256 * 1024
"""Replies buffered at most before they are handed to the transport mid-batch."""

MAX_PENDING_INPUT = 1024 * 1024
"""Bytes received while a task runs, beyond which reading pauses until it is done."""

_MAX_CLIENTS_REPLY = b"-ERR max number of clients reached\r\n"


@dataclass(frozen=True, slots=True)
class ParserLimits:
    """Request limits for each connection's parser (see :class:`RequestParser`)."""

    max_bulk_len: int = DEFAULT_MAX_BULK_LEN
    max_multibulk_len: int = DEFAULT_MAX_MULTIBULK_LEN
    max_inline_len: int = DEFAULT_MAX_INLINE_LEN

    def parser(self) -> RequestParser:
        """A new parser with these limits."""
        return RequestParser(
            max_bulk_len=self.max_bulk_len,
            max_multibulk_len=self.max_multibulk_len,
            max_inline_len=self.max_inline_len,
        )


class _Yield:
    """Awaitable that hands what a hand-started coroutine yielded to the running task."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, None, None]:
        yield self.value


async def _finish(coro: Coroutine[Any, Any, Reply], yielded: Any) -> Reply:
    """Finish, inside a task, a coroutine started by hand that suspended on ``yielded``."""
    while True:
        try:
            await _Yield(yielded)
        except BaseException as exc:  # cancellation: deliver it where the coroutine waits
            try:
                yielded = coro.throw(exc)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            continue
        try:
            yielded = coro.send(None)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]


def _address(info: object) -> str:
    if isinstance(info, tuple) and len(info) >= 2:
        host = f"[{info[0]}]" if ":" in str(info[0]) else str(info[0])
        return f"{host}:{info[1]}"
    return ""


class Connection(asyncio.Protocol):
    """Serves one client until it disconnects, QUITs, breaks the protocol or the server stops.

    Args:
        state: the server's shared state.
        limits: the parser limits.
        on_closed: called once when the connection is gone.
    """

    def __init__(
        self,
        state: ServerState,
        limits: ParserLimits,
        on_closed: Callable[[Connection], None],
    ) -> None:
        self._state = state
        self._parser = limits.parser()
        self._on_closed = on_closed
        self._transport: asyncio.Transport | None = None
        self.session: Session | None = None
        self._task: asyncio.Task[None] | None = None
        self._out: list[bytes] = []
        self._out_size = 0
        self._pending_input = 0
        self._reading_paused = False
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._closing = False  # take no more commands; close once the task is done
        self._eof = False
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # ---------------------------------------------------------------- events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._transport = transport
        state = self._state
        state.stats.connections_received += 1
        if len(state.clients) >= state.max_clients:
            state.stats.rejected_connections += 1
            self._closing = True
            transport.write(_MAX_CLIENTS_REPLY)
            transport.close()
            return
        addr = _address(transport.get_extra_info("peername"))
        laddr = _address(transport.get_extra_info("sockname"))
        self.session = Session.open(state, addr, laddr)

    def data_received(self, data: bytes) -> None:
        session = self.session
        if self._closing or session is None:
            return
        self._state.stats.net_input_bytes += len(data)
        self._parser.feed(data)
        session.ticket = self._state.barrier.ticket()  # a later ticket is always safe
        session.last_active = time.monotonic()
        if self._task is None:
            self._serve_now(session)
        else:
            self._pending_input += len(data)
            if self._pending_input > MAX_PENDING_INPUT:
                self._pause_reading()

    def eof_received(self) -> bool:
        self._eof = True
        return self._task is not None  # keep the socket half-open until the task is done

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_drain(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        if self.session is not None:
            self.session.close()
        self._wake_drain(ConnectionResetError("connection lost"))
        if not self.closed.done():
            self.closed.set_result(None)
        self._on_closed(self)

    # -------------------------------------------------------------- control

    def stop(self) -> None:
        """Stop reading; close once the commands already received are done."""
        self._pause_reading()
        if self._task is None:
            self._close()
        else:
            self._closing = True

    def abort(self) -> None:
        """Close at once, dropping buffered replies, and cancel the running task."""
        if self._task is not None:
            self._task.cancel()
        if self._transport is not None:
            self._transport.abort()

    # ------------------------------------------------------------- commands

    def _serve_now(self, session: Session) -> None:
        """Run commands from the socket callback while they need no await; a task takes the rest."""
        parser = self._parser
        while not self._write_paused:
            try:
                args = parser.next_command()
            except ProtocolError as exc:
                self._protocol_error(exc)
                return
            if args is None:
                self._flush()
                if self._eof:
                    self._close()
                return
            spec = prepare(session, args)
            if isinstance(spec, ErrorReply):
                reply: Reply = spec
            elif not runs_at_once(session, spec):
                self._start_task(run(session, spec, args))
                return
            else:
                coro = run(session, spec, args)
                try:
                    yielded = coro.send(None)
                except StopIteration as stop:
                    reply = stop.value
                else:
                    self._start_task(_finish(coro, yielded))
                    return
            if not self._reply(session, reply):
                return
        self._start_task(None)  # the write buffer is full: continue once it drains

    def _start_task(self, first: Coroutine[Any, Any, Reply] | None) -> None:
        self._flush()
        self._pending_input = 0
        self._task = asyncio.get_running_loop().create_task(self._serve_task(first))

    async def _serve_task(self, first: Coroutine[Any, Any, Reply] | None) -> None:
        session = self.session
        assert session is not None
        try:
            if first is None or self._reply(session, await first):
                await self._serve_async(session)
        except (ConnectionError, asyncio.CancelledError):
            self._close()
        except Exception:  # a bug: log it, drop this client, keep the server
            log.exception("connection %d failed", session.id)
            self._close()
        finally:
            self._task = None
            self._flush()
            if self._closing or self._eof:
                self._close()
            elif self._reading_paused:
                self._reading_paused = False
                if self._transport is not None:
                    self._transport.resume_reading()

    async def _serve_async(self, session: Session) -> None:
        """Run every command received, in order, awaiting each (inside the task)."""
        parser = self._parser
        while True:
            if self._write_paused:
                self._flush()
                await self._drain()
            try:
                args = parser.next_command()
            except ProtocolError as exc:
                self._protocol_error(exc)
                return
            if args is None:
                return
            spec = prepare(session, args)
            reply = spec if isinstance(spec, ErrorReply) else await run(session, spec, args)
            if not self._reply(session, reply):
                return

    # --------------------------------------------------------------- output

    def _reply(self, session: Session, reply: Reply) -> bool:
        """Queue a reply; returns False once the connection must close (QUIT, SHUTDOWN)."""
        if session.silent:
            self._close()
            return False
        data = encode_reply(reply, session.protocol)
        self._out.append(data)
        self._out_size += len(data)
        if session.closing:
            self._close()
            return False
        if self._out_size >= FLUSH_BYTES:
            self._flush()
        return True

    def _protocol_error(self, exc: ProtocolError) -> None:
        self._state.stats.error_replies += 1
        self._out.append(encode_reply(ErrorReply("ERR", str(exc))))
        self._close()

    def _flush(self) -> None:
        if not self._out:
            return
        data = b"".join(self._out) if len(self._out) > 1 else self._out[0]
        self._out.clear()
        self._out_size = 0
        transport = self._transport
        if transport is not None and not transport.is_closing():
            self._state.stats.net_output_bytes += len(data)
            transport.write(data)

    async def _drain(self) -> None:
        if not self._write_paused:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._drain_waiter = waiter
        await waiter

    def _wake_drain(self, exc: Exception | None) -> None:
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            if exc is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(exc)

    def _pause_reading(self) -> None:
        if not self._reading_paused and self._transport is not None:
            self._reading_paused = True
            if not self._transport.is_closing():
                self._transport.pause_reading()

    def _close(self) -> None:
        """Flush what is queued and close (idempotent)."""
        self._closing = True
        self._flush()
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.close()

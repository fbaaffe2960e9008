"""One client connection: parse requests, run commands, write replies in order (layer L2).

Rules:

* The connection is an :class:`asyncio.Protocol`. Bytes go to the
  :class:`~crema.server.resp_parser.RequestParser`; commands run in arrival
  order from the socket callback, and their replies are written in that
  order, together per read. Replies are flushed early past :data:`FLUSH_BYTES`.
* A command's coroutine is stepped by hand, without a task: when it awaits
  a future (a write's result, a read barrier), the connection resumes it
  from that future's done callback. Only a coroutine that awaits something
  else (``asyncio.sleep(0)``, ...) is finished by a task.
* Pipelined writes: a write is submitted and the next command is taken at
  once, without waiting for the write's result; up to
  :data:`MAX_INFLIGHT_WRITES` writes per connection are in flight, then the
  connection stops reading its socket until one finishes. The backend
  applies one connection's submissions in order. Any other command (a read,
  PING, ...) first waits for the connection's writes in flight to finish,
  so a connection reads its own writes. A write that could not be
  submitted at once (no leader known) blocks every later command until it
  is done (see :func:`~crema.server.commands.common.execute`).
* A plain ``GET key`` with nothing in flight before it is served inline,
  without the dispatcher's layers (its counters are the same): at once in
  ``local`` mode or when its read barrier is already satisfied, else parked
  with a callback on the read barrier (no future, no task). A run of them
  at the start of the bytes read, with nothing else pending, is served by
  the optional C helper before the parser sees those bytes (see :mod:`crema.server.plain`).
* A non-write command that suspends (a linearizable read waiting for its
  barrier) blocks later commands until it is done.
* Bounded: while commands wait, input beyond :data:`MAX_PENDING_INPUT` bytes
  pauses reading; when the transport's write buffer is full
  (``pause_writing``), commands stop until it drains.
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
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

from crema.errors import ProtocolError
from crema.server.commands.dispatch import prepare, run
from crema.server.commands.table import CommandSpec
from crema.server.plain import GET_NAMES, GET_RUN_START, SET_NAMES, SET_START, PlainCommands
from crema.server.resp_parser import (
    DEFAULT_MAX_BULK_LEN,
    DEFAULT_MAX_INLINE_LEN,
    DEFAULT_MAX_MULTIBULK_LEN,
    RequestParser,
)
from crema.server.resp_reply import ErrorReply, Reply, encode_reply
from crema.server.session import ServerState, Session
from crema.server.slots import Slot, finish

__all__ = ["FLUSH_BYTES", "MAX_INFLIGHT_WRITES", "MAX_PENDING_INPUT", "Connection", "ParserLimits"]

log = logging.getLogger(__name__)

FLUSH_BYTES = 256 * 1024
"""Replies buffered at most before they are handed to the transport mid-batch."""

MAX_PENDING_INPUT = 1024 * 1024
"""Bytes received while commands wait, beyond which reading pauses."""

MAX_INFLIGHT_WRITES = 1024
"""Writes of one connection in flight at most; then it stops reading until one finishes."""

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


def _address(info: object) -> str:
    if isinstance(info, tuple) and len(info) >= 2:
        host = f"[{info[0]}]" if ":" in str(info[0]) else str(info[0])
        return f"{host}:{info[1]}"
    return ""


class Connection(PlainCommands, asyncio.Protocol):
    """Serves one client until it disconnects, QUITs, breaks the protocol or the server stops.

    Args:
        state: the server's shared state.
        limits: the parser limits.
        on_closed: called once when the connection is gone.
        on_opened: called when the connection is made (over TLS: once the
            handshake succeeded; a failed handshake never opens it).
    """

    def __init__(
        self,
        state: ServerState,
        limits: ParserLimits,
        on_closed: Callable[[Connection], None],
        on_opened: Callable[[Connection], None] | None = None,
    ) -> None:
        self._state = state
        self.flush_bytes = FLUSH_BYTES
        self._parser = limits.parser()
        usable = limits.max_multibulk_len >= 2 and limits.max_bulk_len >= 3  # "*2", "$3 GET"
        self._max_get_key = limits.max_bulk_len if usable else -1
        usable = limits.max_multibulk_len >= 3 and limits.max_bulk_len >= 3  # "*3", "$3 SET"
        self._max_set_bulk = limits.max_bulk_len if usable else -1
        self._held_input: list[bytes] | None = None  # see PlainCommands._serve_get_runs
        self._held_size = 0
        self._on_closed = on_closed
        self._on_opened = on_opened
        self._transport: asyncio.Transport | None = None
        self.session: Session | None = None
        self._slots: deque[Slot] = deque()  # commands whose replies are not out yet
        self._writes = 0  # writes in flight
        self._blocker: Slot | None = None  # a suspended command later ones wait for
        self._held: tuple[CommandSpec, list[bytes]] | None = None  # waits for the writes
        self._stalled = False  # commands stopped before the input was used up
        self._wakeup_scheduled = False
        self._out: list[bytes] = []
        self._out_size = 0
        self._reading_paused = False
        self._write_paused = False
        self._closing = False  # take no more commands
        self._close_when_idle = False  # close once the commands received are done
        self._eof = False
        self._dead = False  # the transport is gone: drop every result
        self._loop = asyncio.get_running_loop()  # kept: each lookup costs a getpid() call
        self.closed: asyncio.Future[None] = self._loop.create_future()

    # ---------------------------------------------------------------- events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._transport = transport
        if self._on_opened is not None:
            self._on_opened(self)
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
        session.ticket = self._state.barrier.ticket()  # a later ticket is always safe
        session.last_active = time.monotonic()
        parser = self._parser
        if self._held_input is not None:  # behind a run of GETs waiting for its barrier
            self._hold(data)
            if self._held_size > MAX_PENDING_INPUT:
                self._pause_reading()
            return
        if not (self._stalled or self._slots or self._write_paused) and parser.idle:
            if data.startswith(GET_RUN_START):  # else the C helper would take nothing
                used = self._serve_get_runs(session, data)  # a run of plain GETs, in C
                if used < 0:
                    return  # held until its read barrier completes
                if used:
                    data = data[used:]
            elif data.startswith(SET_START) and self._serve_set_request(session, data):
                if self._out:
                    self._flush()  # an error reply given at once
                return
        parser.feed(data)
        if not self._stalled:
            self._serve(session)
        elif self._parser.buffered > MAX_PENDING_INPUT:
            self._pause_reading()

    def eof_received(self) -> bool:
        self._eof = True
        return self._busy()  # keep the socket half-open until the replies are out

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._stalled and self.session is not None and not self._dead:
            self._serve(self.session)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._dead = True
        if self.session is not None:
            self.session.close()
        for slot in self._slots:
            if slot.task is not None:
                slot.task.cancel()
            elif slot.coro is not None and not slot.done:
                slot.coro.close()
        self._slots.clear()
        if not self.closed.done():
            self.closed.set_result(None)
        self._on_closed(self)

    # -------------------------------------------------------------- control

    def stop(self) -> None:
        """Stop reading; close once the commands already received are done."""
        self._pause_reading()
        self._close_when_idle = True
        if not self._busy():
            self._close()

    def abort(self) -> None:
        """Close at once, dropping buffered replies and the commands in flight."""
        if self._transport is not None:
            self._transport.abort()

    def _busy(self) -> bool:
        """Whether commands received are still running or waiting to run."""
        return bool(self._slots) or self._stalled

    # ------------------------------------------------------------- commands

    def _serve(self, session: Session) -> None:  # noqa: PLR0912 - the hot loop, kept inline
        """Run commands from the callback until the input is used up or one must wait."""
        self._stalled = True
        parser = self._parser
        while not (self._write_paused or self._closing):
            if (
                self._blocker is not None
                or self._held is not None
                or self._writes >= MAX_INFLIGHT_WRITES
                or session.retrying
            ) and self._must_wait():  # the checks first: nothing to wait for, mostly
                break
            held = self._held
            if held is not None:
                self._held = None
                self._start(session, held[0], held[1])
                continue
            try:
                args = parser.next_command()
            except ProtocolError as exc:
                self._protocol_error(exc)
                break
            if args is None:
                self._stalled = False
                break
            if len(args) == 2 and args[0] in GET_NAMES and self._plain_get(session, args[1]):
                continue
            if len(args) == 3 and args[0] in SET_NAMES and self._plain_set(session, args):
                continue
            spec = prepare(session, args)
            if isinstance(spec, ErrorReply):
                self._emit(session, spec)
            elif spec.writes and not spec.blocking:
                self._start(session, spec, args)
            elif self._writes:
                self._held = (spec, args)
            else:
                self._start(session, spec, args)
        if self._out:
            self._flush()
        if self._reading_paused and not self._stalled:
            self._resume_reading()
        if self._eof or self._close_when_idle:
            self._maybe_close()

    def _must_wait(self) -> bool:
        """Whether the next command must wait: for a suspended one, or for writes in flight."""
        if self._blocker is not None or (self.session is not None and self.session.retrying):
            return True
        if self._writes >= MAX_INFLIGHT_WRITES:
            self._pause_reading()  # backpressure: the client's writes wait in its socket
            return True
        return self._held is not None and self._writes > 0  # a read waits for the writes

    def _start(self, session: Session, spec: CommandSpec, args: list[bytes]) -> None:
        """Run one command until it finishes or suspends (then it takes a slot)."""
        write = spec.writes and not spec.blocking
        session.serial_write = False
        coro = run(session, spec, args)
        try:
            yielded = coro.send(None)
        except StopIteration as stop:
            self._emit(session, stop.value)
            return
        except Exception:  # a bug: log it, drop this client, keep the server
            log.exception("connection %d failed", session.id)
            self._close()
            return
        slot = Slot(coro, write)
        self._slots.append(slot)
        if write:
            self._writes += 1
        if not write or session.serial_write:
            self._blocker = slot
        self._suspend(slot, yielded)

    def _suspend(self, slot: Slot, yielded: Any) -> None:
        if getattr(yielded, "_asyncio_future_blocking", None) is not None:
            yielded._asyncio_future_blocking = False  # as a task would: we wait for it
            yielded.add_done_callback(partial(self._resume, slot))
            return
        assert slot.coro is not None  # anything else: let a task finish the coroutine
        task = asyncio.get_running_loop().create_task(finish(slot.coro, yielded))
        slot.task = task
        task.add_done_callback(partial(self._task_done, slot))

    def _resume(self, slot: Slot, fut: asyncio.Future[Any]) -> None:
        if self._dead:
            if not fut.cancelled():
                fut.exception()  # retrieved: nobody is left to see it
            return
        coro = slot.coro
        assert coro is not None
        try:
            yielded = coro.send(None)
        except StopIteration as stop:
            self._complete(slot, stop.value)
            return
        except asyncio.CancelledError:  # what it awaited was cancelled (shutdown)
            self._close()
            return
        except Exception:  # a bug: log it, drop this client, keep the server
            log.exception("connection %d failed", self.session.id if self.session else 0)
            self._close()
            return
        self._suspend(slot, yielded)

    def _task_done(self, slot: Slot, task: asyncio.Task[Reply]) -> None:
        if self._dead or task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("connection failed", exc_info=exc)
            self._close()
            return
        self._complete(slot, task.result())

    def _complete(self, slot: Slot, reply: Reply) -> None:
        """A suspended command finished: send the replies now in order, go on serving.

        While other writes are in flight, this waits for the end of the loop
        turn: writes that commit together finish in one turn, and their
        replies then go out in one socket write instead of one each.
        """
        slot.done, slot.reply, slot.coro = True, reply, None
        if slot.write:
            self._writes -= 1
        if self._blocker is slot:
            self._blocker = None
        if self._writes:
            if not self._wakeup_scheduled:
                self._wakeup_scheduled = True
                self._loop.call_soon(self._wakeup)
            return
        self._wakeup()

    def _wakeup(self) -> None:
        """Send the replies that are ready, in order; go on serving."""
        self._wakeup_scheduled = False
        if self._dead:
            return
        session = self.session
        assert session is not None
        slots = self._slots
        while slots and slots[0].done:
            if not self._reply(session, slots.popleft().reply):
                return
        if self._stalled and not self._closing:
            self._serve(session)
        else:
            if self._out:
                self._flush()
            if self._eof or self._close_when_idle:
                self._maybe_close()

    # --------------------------------------------------------------- output

    def _emit(self, session: Session, reply: Reply) -> None:
        """The reply of a command that finished at once: now, or behind the slots before it."""
        if self._slots:
            slot = Slot(None, False)
            slot.done, slot.reply = True, reply
            self._slots.append(slot)
        else:
            self._reply(session, reply)

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
        """Reply the error after the replies before it, then close."""
        self._state.stats.error_replies += 1
        self._closing = self._close_when_idle = True
        self._stalled = False
        self._held = None
        assert self.session is not None
        self._emit(self.session, ErrorReply("ERR", str(exc)))

    def _maybe_close(self) -> None:
        if (self._eof or self._close_when_idle) and not self._busy():
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

    def _pause_reading(self) -> None:
        if not self._reading_paused and self._transport is not None:
            self._reading_paused = True
            if not self._transport.is_closing():
                self._transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._reading_paused and not (self._closing or self._close_when_idle):
            self._reading_paused = False
            if self._transport is not None and not self._transport.is_closing():
                self._transport.resume_reading()

    def _close(self) -> None:
        """Flush what is queued and close (idempotent)."""
        self._closing = True
        self._flush()
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.close()

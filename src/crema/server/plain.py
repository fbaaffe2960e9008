"""Plain ``GET key`` and ``SET key value`` without the dispatcher's layers (layer L2).

Most requests in a cache are one of these two. :class:`PlainCommands` (a
mixin of :class:`~crema.server.connection.Connection`) serves them with the
same results, counters and latency histogram as the command handlers, but
without looking the command up or running its coroutines:

* a GET that may read now (``local`` mode, or its read barrier satisfied)
  is answered at once, together with every plain GET parsed right after it;
* better still, a run of such GETs at the start of the bytes just received
  (nothing else pending on the connection) is served by the optional C
  helper ``crema.server._getrun`` before the parser sees those bytes: same
  replies and counters, without building a command list per request. When
  such a run must wait for its read barrier, the bytes are held back
  unparsed (later bytes behind them) and served the same way once it
  completes;
* a linearizable GET parks on the read barrier (a callback, no future);
* a SET is submitted to the backend and answered from its future's
  callback; bytes that are exactly one plain SET (a client at pipeline 1)
  are parsed by the C helper instead of the parser. If it is refused before
  it was proposed and the connection sent no write after it, it is sent
  again through ``execute`` (which waits for a leader), and the connection
  starts nothing else meanwhile.

Anything else (options, another spelling, a client not authenticated yet)
goes through the dispatcher.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import deque
from functools import partial
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final, cast

from crema.cache.commands import Set, SetCondition, set_unchecked
from crema.cache.results import Result
from crema.cache.store import SHARDS, Entry
from crema.errors import CremaError, ProposalDroppedError
from crema.server.commands.common import may_retry, result_reply
from crema.server.commands.dispatch import error_reply
from crema.server.resp_parser import RequestParser
from crema.server.resp_reply import ErrorReply, Reply, encode_reply
from crema.server.session import ServerState, Session
from crema.server.slots import Slot

__all__ = [
    "GET_NAMES",
    "GET_RUN_MAX",
    "GET_RUN_START",
    "SET_NAMES",
    "SET_START",
    "PlainCommands",
    "accelerated",
]

_getrun: ModuleType | None
try:  # runs of plain GETs served in C (src/crema/server/_getrun.c); same results without it
    from crema.server import _getrun
except ImportError:  # pragma: no cover - depends on the build
    _getrun = None


def accelerated() -> bool:
    """Whether runs of plain GETs are served by the C helper."""
    return _getrun is not None


GET_RUN_MAX: Final = 1024
"""Plain GETs served per call of the C helper at most (it holds the GIL meanwhile)."""

GET_RUN_START: Final = b"*2\r\n$3\r\n"
"""How every request the C helper serves starts (``*2``, then a 3-byte command name)."""

SET_START: Final = b"*3\r\n$3\r\n"
"""How a request the C helper parses as a plain SET starts."""

GET_NAMES = frozenset((b"GET", b"get", b"Get"))
"""Spellings of GET served by :meth:`PlainCommands._plain_get` (others: the dispatcher)."""
SET_NAMES = frozenset((b"SET", b"set", b"Set"))
"""Spellings of SET served by :meth:`PlainCommands._plain_set`."""

_ALWAYS = SetCondition.ALWAYS
_NO_SHARDS: Final[list[dict[bytes, Entry]]] = [{} for _ in range(SHARDS)]
"""Empty shards: the C helper then only checks that a complete plain GET comes first."""
_ALL: Final = sys.maxsize  # no bound on a run's count but the helper's own per call


async def _retry_set(
    connection: PlainCommands, session: Session, command: Set, started: float
) -> Reply:
    """A plain SET sent again through ``execute`` (which waits for a leader and retries)."""
    session.retrying += 1
    try:
        result = await session.server.backend.execute(command)
    except CremaError as exc:
        reply: Reply = error_reply(exc)
    else:
        reply = result_reply(result)
    finally:
        session.retrying -= 1
    session.server.stats.write_latency.observe(time.perf_counter() - started)
    connection._count("set", type(reply) is ErrorReply)
    return reply


class PlainCommands:
    """The plain GET and SET paths of a connection (see the module docstring)."""

    _state: ServerState
    _parser: RequestParser
    _slots: deque[Slot]
    _writes: int
    _blocker: Slot | None
    _out: list[bytes]
    _out_size: int
    _dead: bool
    _write_paused: bool
    _reading_paused: bool
    _eof: bool
    _closing: bool
    _stalled: bool
    _held_input: list[bytes] | None  # bytes held back behind a run of GETs waiting to read
    _held_size: int
    session: Session | None
    flush_bytes: int
    _max_get_key: int  # longest key the C helper may take (the parser's bulk limit), -1: none
    _max_set_bulk: int  # longest SET key or value the C helper may take, -1: none

    if TYPE_CHECKING:  # provided by Connection

        def _reply(self, session: Session, reply: Reply) -> bool: ...
        def _emit(self, session: Session, reply: Reply) -> None: ...
        def _complete(self, slot: Slot, reply: Reply) -> None: ...
        def _resume(self, slot: Slot, fut: asyncio.Future[Any]) -> None: ...
        def _flush(self) -> None: ...
        def _serve(self, session: Session) -> None: ...

    def _plain_get(self, session: Session, key: bytes) -> bool:
        """Serve ``GET key`` inline if nothing is in flight; whether it was."""
        if self._slots or not session.authenticated:
            return False
        if session.read_mode == "local" or self._state.barrier.satisfied(session.ticket):
            self._get_run(session, key)
        else:
            self._get_later(session, key)
        return True

    def _serve_get_runs(self, session: Session, data: bytes) -> int:
        """Serve the plain GETs at the start of ``data`` in C; how many bytes they took.

        The caller makes sure nothing else is pending: no command in flight
        or waiting, no bytes held, the parser holding no partial request.
        Serves only where :meth:`_plain_get` would serve at once
        (authenticated; ``local`` mode or the read barrier satisfied), with
        the same replies and counters. Whatever the helper does not take
        (another command, an incomplete or unusual request) is left for the
        parser. Bytes that start with a complete plain GET whose barrier is
        not satisfied yet park as :meth:`_get_later` would, but held back
        unparsed (returns -1; later bytes go behind them, see :meth:`_hold`),
        so that the run can be served in C once the barrier completes (checked
        against empty shards: no lookup).
        """
        accel = _getrun
        if accel is None or self._max_get_key < 0 or not session.authenticated:
            return 0
        if session.read_mode == "local" or self._state.barrier.satisfied(session.ticket):
            return self._c_gets(session, data, 0, _ALL)
        first, _, count, _ = accel.get_run(data, 0, _NO_SHARDS, 0, 2, self._max_get_key, 1, 1)
        if not count:
            return 0  # not a complete plain GET first: the parser's path decides
        slot = Slot(None, False)
        self._slots.append(slot)
        self._blocker = slot
        self._stalled = True
        self._held_input = [data]
        self._held_size = len(data)
        reader = partial(self._got_run_barrier, slot, first, time.perf_counter())
        self._state.barrier.when_ready(session.ticket, reader)
        return -1

    def _serve_set_request(self, session: Session, data: bytes) -> bool:
        """Submit ``data`` when it is exactly one plain SET, parsed in C; whether it was.

        The caller makes sure nothing is pending (as for :meth:`_serve_get_runs`).
        Otherwise (other bytes, no C helper, the write cannot be sent at once)
        nothing happened and the parser takes ``data``.
        """
        accel = _getrun
        if accel is None or self._max_set_bulk < 0:
            return False
        request = accel.set_request(data, self._max_set_bulk)
        return request is not None and self._plain_set(session, [b"SET", *request])

    def _hold(self, data: bytes) -> None:
        """Keep ``data`` behind the bytes held for a run of GETs waiting for its barrier."""
        assert self._held_input is not None
        self._held_input.append(data)
        self._held_size += len(data)

    def _got_run_barrier(
        self, slot: Slot, first: int, started: float, exc: BaseException | None
    ) -> None:
        """The barrier of a held run completed: serve it as :meth:`_got_barrier` would."""
        if self._dead:
            return
        session = self.session
        assert session is not None and self._held_input is not None
        self._state.stats.read_wait.observe(time.perf_counter() - started)
        held, self._held_input = self._held_input, None
        self._held_size = 0
        data = held[0] if len(held) == 1 else b"".join(held)
        assert self._slots[0] is slot and len(self._slots) == 1
        self._slots.clear()
        self._blocker = None
        if exc is None:
            # The GETs of the first chunk all came with the barrier's ticket; those of
            # later chunks only if the session's newest ticket is satisfied too.
            used = self._c_gets(session, data, 0, _ALL if len(held) == 1 else 1, True)
            if used == len(data) and not (self._eof or self._closing or self._reading_paused):
                self._stalled = False  # all served: what _serve would do now
                self._flush()
                return
            if (
                len(held) > 1
                and not self._write_paused
                and (session.read_mode == "local" or self._state.barrier.satisfied(session.ticket))
            ):
                used = self._c_gets(session, data, used, _ALL)  # what _serve would run next
        else:
            self._count("get", True)
            err = error_reply(exc) if isinstance(exc, CremaError) else ErrorReply("ERR", str(exc))
            self._reply(session, err)
            used = first
        self._parser.feed(data[used:])
        self._serve(session)

    def _shards(self) -> list[dict[bytes, Entry]]:
        """The store's shard dicts (replaced by a clear: fetched for each use)."""
        return self._state.backend.state_machine.live_shards()

    def _c_gets(
        self, session: Session, data: bytes, offset: int, most: int, shared: bool = False
    ) -> int:
        """Serve up to ``most`` plain GETs from ``data[offset:]`` in C; the offset after them.

        ``shared``: called by a reader of the read barrier's round being finished,
        which the round's other readers may share the clock and shards with.
        """
        accel = _getrun
        assert accel is not None
        state = self._state
        view = state.barrier.scratch if shared else None
        if view is None:
            view = (state.backend.clock_ms(), self._shards())
            if shared:
                state.barrier.scratch = view
        now, shards = cast("tuple[int, list[dict[bytes, Entry]]]", view)
        protocol = session.protocol
        flush_bytes = self.flush_bytes
        out = self._out
        served = hits = 0
        while served < most:
            used, reply, count, hit = accel.get_run(
                data,
                offset,
                shards,
                now,
                protocol,
                self._max_get_key,
                min(GET_RUN_MAX, most - served),
                flush_bytes,
            )
            if not count:
                break
            offset += used
            served += count
            hits += hit
            out.append(reply)
            self._out_size += len(reply)
            if self._out_size >= flush_bytes:
                self._flush()
            elif count < GET_RUN_MAX:
                break  # stopped at something else (or at most): the parser takes it
            if self._write_paused:
                break  # as the parser's path: nothing more until the transport drains
        if served:
            stats = state.stats
            stats.commands_processed += served
            stats.calls["get"] = stats.calls.get("get", 0) + served
            stats.keyspace_hits += hits
            stats.keyspace_misses += served - hits
            session.last_command = "get"
        return offset

    def _plain_set(self, session: Session, args: list[bytes]) -> bool:
        """Submit ``SET key value`` without the dispatcher's layers; whether it was.

        What the SET handler would do (same command, counters and latency
        histogram), with the result awaited by a callback. False when the
        write cannot be sent at once: the dispatcher then runs it (and waits).
        """
        if not session.authenticated:
            return False
        state = self._state
        backend = state.backend
        command = set_unchecked(args[1], args[2], backend.clock_ms(), None, _ALWAYS, False, False)
        started = time.perf_counter()
        try:
            fut = backend.submit(command)
        except CremaError as exc:  # e.g. too large: refused before it was proposed
            self._count("set", True)
            self._emit(session, error_reply(exc))
            return True
        if fut is None:
            return False
        if fut.done():
            if not fut.cancelled() and isinstance(fut.exception(), ProposalDroppedError):
                return False  # not sent: the dispatcher runs it (and retries)
            self._emit(session, self._set_reply(started, fut))
            return True
        slot = Slot(None, True)
        self._slots.append(slot)
        self._writes += 1
        session.write_seq += 1
        fut.add_done_callback(partial(self._set_done, slot, started, command, session.write_seq))
        return True

    def _set_done(
        self, slot: Slot, started: float, command: Set, seq: int, fut: asyncio.Future[Result]
    ) -> None:
        session = self.session
        if self._dead or session is None:
            if not fut.cancelled():
                fut.exception()  # retrieved: nobody is left to see it
            return
        exc = None if fut.cancelled() else fut.exception()
        if isinstance(exc, ProposalDroppedError) and may_retry(session, seq):
            # Refused before it was proposed, and the connection sent no write
            # since: send it again (waiting for a leader), holding later ones back.
            slot.coro = _retry_set(self, session, command, started)
            self._resume(slot, fut)
            return
        self._complete(slot, self._set_reply(started, fut))

    def _set_reply(self, started: float, fut: asyncio.Future[Result]) -> Reply:
        """The reply of a plain SET whose future is done (its counters and latency noted)."""
        stats = self._state.stats
        stats.write_latency.observe(time.perf_counter() - started)
        cancelled = fut.cancelled()
        exc = None if cancelled else fut.exception()
        if cancelled or exc is not None:
            self._count("set", True)
            if isinstance(exc, CremaError):
                return error_reply(exc)
            return ErrorReply("ERR", "write cancelled" if exc is None else str(exc))
        stats.commands_processed += 1  # self._count("set", False), inline
        calls = stats.calls
        calls["set"] = calls.get("set", 0) + 1
        if self.session is not None:
            self.session.last_command = "set"
        return result_reply(fut.result())

    def _count(self, name: str, failed: bool) -> None:
        """Count a command served without the dispatcher, as :func:`run` would."""
        stats = self._state.stats
        stats.commands_processed += 1
        stats.calls[name] = stats.calls.get(name, 0) + 1
        if failed:
            stats.error_replies += 1
            stats.failed_calls[name] = stats.failed_calls.get(name, 0) + 1
        if self.session is not None:
            self.session.last_command = name

    def _get_run(self, session: Session, key: bytes) -> None:
        """Serve ``GET key`` and every plain GET parsed right after it, in one go."""
        state = self._state
        backend = state.backend
        sm = backend.state_machine
        now = backend.clock_ms()
        parsed = self._parser.parsed
        out = self._out
        protocol = session.protocol
        null = encode_reply(None, protocol)
        hits = misses = size = 0
        while True:
            value = sm.get(key, now)
            if value is None:
                misses += 1
                data = null
            else:
                hits += 1
                data = (
                    b"$%d\r\n%s\r\n" % (len(value), value)
                    if type(value) is bytes
                    else encode_reply(value, protocol)
                )
            out.append(data)
            size += len(data)
            if not parsed or size >= self.flush_bytes:
                break
            args = parsed[0]
            if len(args) != 2 or args[0] not in GET_NAMES:
                break
            key = parsed.popleft()[1]
        stats = state.stats
        stats.commands_processed += hits + misses
        stats.calls["get"] = stats.calls.get("get", 0) + hits + misses
        stats.keyspace_hits += hits
        stats.keyspace_misses += misses
        session.last_command = "get"
        self._out_size += size
        if self._out_size >= self.flush_bytes:
            self._flush()

    def _get(self, session: Session, key: bytes) -> Reply:
        """A plain GET that may read now: what dispatching it would do, without the layers."""
        state = self._state
        stats = state.stats
        stats.commands_processed += 1
        calls = stats.calls
        calls["get"] = calls.get("get", 0) + 1
        session.last_command = "get"
        backend = state.backend
        value = backend.state_machine.get(key, backend.clock_ms())
        if value is None:
            stats.keyspace_misses += 1
        else:
            stats.keyspace_hits += 1
        return value

    def _get_later(self, session: Session, key: bytes) -> None:
        """A plain linearizable GET: park it until its read barrier completes (no coroutine)."""
        slot = Slot(None, False)
        self._slots.append(slot)
        self._blocker = slot
        reader = partial(self._got_barrier, slot, key, time.perf_counter())
        self._state.barrier.when_ready(session.ticket, reader)

    def _got_barrier(
        self, slot: Slot, key: bytes, started: float, exc: BaseException | None
    ) -> None:
        if self._dead:
            return
        session = self.session
        assert session is not None
        stats = self._state.stats
        stats.read_wait.observe(time.perf_counter() - started)
        if exc is None:
            self._complete(slot, self._get(session, key))
            return
        self._count("get", True)
        reply = error_reply(exc) if isinstance(exc, CremaError) else ErrorReply("ERR", str(exc))
        self._complete(slot, reply)

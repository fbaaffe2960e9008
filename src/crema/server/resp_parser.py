"""Sans-I/O parser for RESP client requests: bytes in, commands out.

A request is either a *multibulk* array of bulk strings (``*2\\r\\n$3\\r\\nGET
\\r\\n$1\\r\\na\\r\\n``) or an *inline* line typed in telnet (``GET a\\r\\n``).
Like Redis (``processInputBuffer`` in ``networking.c``), the first byte of a
request decides: ``*`` is multibulk, anything else is inline.

Rules, all as Redis 7.0 applies them:

* Limits are checked on the header, before the payload is buffered: a bulk
  longer than ``max_bulk_len`` or an array longer than ``max_multibulk_len``
  is refused as soon as its length line arrives; a length line or inline
  line that has no end within ``max_inline_len`` bytes is refused too. So
  memory stays below about ``max_bulk_len`` plus one read whatever arrives.
* Array elements must be bulk strings (``$``); nesting, ``+``, ``:`` and
  RESP3 types are protocol errors. ``*0`` and ``*-1`` are skipped.
* The two bytes after a bulk payload are skipped unchecked, and a header
  line ends at ``\\r`` with the next byte skipped, as in Redis.
* A NUL byte before the end of a header or inline line hides the line end
  (Redis searches with ``strchr``), so the parser waits for more data.
* After a :class:`~crema.errors.ProtocolError` the parser is dead: the
  requests before the bad one are still returned, then every call raises the
  same error; the server replies and closes.

Two engines give identical results. The pure-Python one does all the
validation. The ``hiredis`` one (used when installed) parses runs of complete
requests in C and is checked cheaply: every element must start with ``$``
where a canonical encoding puts it. Anything else (an incomplete request at
the end of the buffer or one longer than a 64 KiB slice, an inline request,
an aggregate header with a 3+ digit count, a hiredis error, a failed check)
is handed to the pure engine at that request's first byte, which then
decides exactly as Redis would.
"""

from __future__ import annotations

import re
from collections import deque
from typing import Any

from crema.errors import ConfigError, ProtocolError
from crema.server.inline import split_inline_args

_hiredis: Any
try:  # pragma: no cover - exercised by whichever is installed
    import hiredis as _hiredis
except ImportError:  # pragma: no cover
    _hiredis = None

__all__ = [
    "DEFAULT_MAX_BULK_LEN",
    "DEFAULT_MAX_INLINE_LEN",
    "DEFAULT_MAX_MULTIBULK_LEN",
    "HIREDIS_AVAILABLE",
    "RequestParser",
]

HIREDIS_AVAILABLE: bool = _hiredis is not None

DEFAULT_MAX_BULK_LEN = 512 * 1024 * 1024  # Redis proto-max-bulk-len
DEFAULT_MAX_MULTIBULK_LEN = 1024 * 1024  # Redis < 7 limit; 7.x allows INT_MAX
DEFAULT_MAX_INLINE_LEN = 64 * 1024  # Redis PROTO_INLINE_MAX_SIZE

_STAR = 0x2A
_DOLLAR = 0x24
_LONG_MAX = 2**63 - 1
# hiredis preallocates a list for every aggregate header it reads, nested ones
# included, before we can check the request. So data with a header of 100+
# elements goes to the pure engine (matches inside payloads only cost speed),
# and hiredis gets at most one slice beyond the request in progress: at most
# about 70 bytes of lists per byte of one slice, a few MB, whatever arrives.
_HIREDIS_GATE = re.compile(rb"[*~>|%][0-9-]{3}")
_HIREDIS_SLICE = 64 * 1024
# Bytes around a bulk of each small size: "$", the digits, CRLF, payload CRLF.
_OVERHEAD = [5 + len(str(size)) for size in range(4096)]
# Redis string2ll: optional '-', no leading zeros, no '+', no spaces.
_LL_RE = re.compile(rb"(?:0|-?[1-9][0-9]{0,18})\Z")


def _string2ll(raw: bytes | bytearray) -> int | None:
    """Parse like Redis's ``string2ll``; None when Redis would refuse it."""
    if _LL_RE.match(raw) is None:
        return None
    value = int(raw)
    if not -_LONG_MAX - 1 <= value <= _LONG_MAX:
        return None
    return value


def _error_char(byte: int) -> str:
    # addReplyErrorFormat turns CR and LF into spaces.
    return " " if byte in (0x0D, 0x0A) else chr(byte)


class RequestParser:
    """Incremental parser for client requests.

    Feed it bytes as they arrive and take commands out, h11 style::

        parser.feed(data)
        while (command := parser.next_command()) is not None:
            handle(command)  # a list of bytes: [b"SET", b"k", b"v"]

    Args:
        max_bulk_len: longest bulk string accepted (Redis proto-max-bulk-len).
        max_multibulk_len: most elements in one request array.
        max_inline_len: longest inline request line, and longest wait for the
            end of a length line.
        use_hiredis: ``None`` uses hiredis when installed, ``False`` forces the
            pure-Python engine, ``True`` requires hiredis.

    Raises:
        ConfigError: a limit is not positive, or hiredis is required but
            missing.
    """

    __slots__ = (
        "_args",
        "_buf",
        "_bulklen",
        "_error",
        "_fed",
        "_max_bulk",
        "_max_inline",
        "_max_multibulk",
        "_multibulk",
        "_overhead",
        "_pos",
        "_pure_until",
        "_reader",
        "_ready",
        "_use_hiredis",
    )

    def __init__(
        self,
        *,
        max_bulk_len: int = DEFAULT_MAX_BULK_LEN,
        max_multibulk_len: int = DEFAULT_MAX_MULTIBULK_LEN,
        max_inline_len: int = DEFAULT_MAX_INLINE_LEN,
        use_hiredis: bool | None = None,
    ) -> None:
        for name, value in (
            ("max_bulk_len", max_bulk_len),
            ("max_multibulk_len", max_multibulk_len),
            ("max_inline_len", max_inline_len),
        ):
            if value < 1:
                raise ConfigError(name, f"must be positive, got {value}")
        if use_hiredis and not HIREDIS_AVAILABLE:
            raise ConfigError("use_hiredis", "hiredis is not installed")
        self._max_bulk = max_bulk_len
        self._max_multibulk = max_multibulk_len
        self._max_inline = max_inline_len
        self._use_hiredis = HIREDIS_AVAILABLE if use_hiredis is None else use_hiredis
        self._buf = bytearray()
        self._pos = 0  # first byte of the next request (or of the partial one)
        self._reader: Any = None  # hiredis.Reader fed from _buf[_pos:_fed]
        self._fed = 0
        self._pure_until = -1  # the pure engine owns requests starting before this
        self._multibulk = 0  # elements still to read in the current request
        self._bulklen = -1  # length of the bulk being read, -1 if unknown
        self._args: list[bytes] = []
        self._error: ProtocolError | None = None
        self._ready: deque[list[bytes]] = deque()  # read by hiredis, not yet returned
        # shared unless a tiny bulk limit must cut the fast path's table short
        self._overhead = (
            _OVERHEAD if max_bulk_len >= len(_OVERHEAD) else _OVERHEAD[: max_bulk_len + 1]
        )

    @property
    def uses_hiredis(self) -> bool:
        """Whether the hiredis engine is in use."""
        return self._use_hiredis

    @property
    def parsed(self) -> deque[list[bytes]]:
        """Commands already parsed, in order, that :meth:`next_command` returns next.

        A caller may ``popleft()`` the ones it takes (to serve a run of
        commands in one go); anything else is the parser's business.
        """
        return self._ready

    @property
    def idle(self) -> bool:
        """Whether the parser holds nothing: the next byte fed starts a new request."""
        return (
            self._pos >= len(self._buf)
            and self._multibulk == 0
            and not self._ready
            and self._error is None
        )

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as commands."""
        held = sum(len(a) for a in self._args)
        held += sum(len(a) for command in self._ready for a in command)
        return len(self._buf) - self._pos + held

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append received bytes. An empty ``data`` is ignored.

        Args:
            data: bytes read from the connection.
        """
        pos = self._pos
        if pos:
            buf = self._buf
            if pos >= len(buf):
                buf.clear()
            elif pos < 65536 and pos * 2 < len(buf):
                buf += data
                return
            else:
                del buf[:pos]
            self._fed -= pos
            self._pure_until -= pos
            self._pos = 0
        self._buf += data

    def next_command(self) -> list[bytes] | None:  # noqa: PLR0911
        """Return the next complete command, or None until more bytes arrive.

        Returns:
            The command's arguments (never empty), or None.

        Raises:
            ProtocolError: the input is not valid RESP; the parser is dead.
        """
        ready = self._ready
        if ready:
            return ready.popleft()
        if self._error is not None:
            raise self._error
        try:
            while True:
                pos = self._pos
                buf = self._buf
                if pos >= len(buf):
                    return None
                if (
                    self._use_hiredis
                    and self._multibulk == 0
                    and pos >= self._pure_until
                    and buf[pos] == _STAR
                ):
                    self._drain_hiredis()
                    if ready:
                        return ready.popleft()
                    if self._reader is not None:
                        return None  # hiredis consumed everything
                    # else: the pure engine takes the request at self._pos
                progressed = self._next_pure()
                if ready:
                    return ready.popleft()
                if not progressed:
                    return None
        except ProtocolError as exc:
            self._error = exc
            self._reader = None
            if ready:  # requests before the bad one are still served
                return ready.popleft()
            raise

    # ------------------------------------------------------------------
    # hiredis engine
    # ------------------------------------------------------------------

    def _feed_hiredis(self, pos: int) -> bool:
        """Feed hiredis the next slice of the buffer (the request in progress starts at ``pos``).

        Returns False, with ``_reader`` unset, when the slice holds an aggregate
        header with a 3+ digit count: hiredis preallocates such lists even
        nested, so the pure engine takes the data up to that point.
        """
        buf = self._buf
        fed = self._fed
        if fed >= len(buf):
            return True
        end = min(len(buf), fed + _HIREDIS_SLICE)
        start = max(pos, fed - 8)  # overlap: a header may straddle two slices
        window = bytes(buf[start:end])
        match = _HIREDIS_GATE.search(window)
        if match is not None:
            self._pure_until = start + match.start() + 1
            self._reader = None
            return False
        self._reader.feed(window[fed - start :] if fed > start else window)
        self._fed = end
        return True

    def _drain_hiredis(self) -> None:  # noqa: PLR0912 - the hot loop, kept inline
        """Queue every request hiredis can read; unset ``_reader`` to hand over."""
        buf = self._buf
        reader = self._reader
        if reader is None:
            reader = self._reader = _hiredis.Reader()
            self._fed = self._pos
        if not self._feed_hiredis(self._pos):
            return
        append = self._ready.append
        gets = reader.gets
        overhead = self._overhead
        fast_count = min(10, self._max_multibulk + 1)  # one-digit counts within the limit
        pos = self._pos
        while True:
            try:
                frame = gets()
            except Exception:  # hiredis.ProtocolError and friends
                self._reader = None
                break
            if frame is False:
                if self._fed < len(buf) and self._fed - pos < _HIREDIS_SLICE:
                    if self._feed_hiredis(pos):
                        continue
                    break  # the gate handed over to the pure engine
                if pos < self._fed:
                    # A partial request at the end of the data, or one longer
                    # than a slice: the pure engine buffers it without rescans.
                    self._reader = None
                break
            # Inline fast check (the hot loop): every element must start with
            # "$" where a canonical encoding puts it. A "$" there means hiredis
            # read a bulk, so the element is bytes (or None for $-1, a TypeError).
            end = -1
            if type(frame) is list and 0 < len(frame) < fast_count:
                end = pos + 4
                try:
                    for arg in frame:
                        if buf[end] != _DOLLAR:
                            end = -1
                            break
                        end += (size := len(arg)) + overhead[size]
                except (IndexError, TypeError):
                    end = self._verify(frame, pos)
            else:
                end = self._verify(frame, pos)
            if end < 0:
                self._reader = None
                break
            pos = end
            if frame:
                append(frame)
        self._pos = pos

    def _verify(self, frame: object, pos: int) -> int:
        """End of ``frame`` (read by hiredis at ``pos``) if canonical, else -1."""
        if type(frame) is not list:
            return -1  # None for *-1: the pure engine skips it exactly
        count = len(frame)
        if count > self._max_multibulk:
            return -1
        buf = self._buf
        start = pos
        pos += 3 + len(str(count))
        if count == 0:
            return pos if buf[start + 1] == 0x30 else -1
        for arg in frame:
            if type(arg) is not bytes or pos >= len(buf) or buf[pos] != _DOLLAR:
                return -1
            size = len(arg)
            if size > self._max_bulk:
                return -1
            pos += size + 5 + len(str(size))
        return pos

    # ------------------------------------------------------------------
    # pure engine (mirrors processMultibulkBuffer / processInlineBuffer)
    # ------------------------------------------------------------------

    def _next_pure(self) -> bool:
        """Queue the next request(s) in ``_ready``; returns whether input was consumed."""
        if self._multibulk == 0 and self._buf[self._pos] != _STAR:
            return self._next_inline()
        return self._next_multibulk()

    def _wait_for_line(self, start: int, too_big: str) -> None:
        """No line end yet at ``start``: refuse if waiting longer is over the limit."""
        if len(self._buf) - start > self._max_inline:
            raise ProtocolError(f"Protocol error: {too_big}")

    def _next_inline(self) -> bool:
        buf = self._buf
        pos = self._pos
        newline = buf.find(b"\n", pos)
        if newline < 0 or buf.find(b"\0", pos, newline) >= 0:
            self._wait_for_line(pos, "too big inline request")
            return False
        end = newline
        if end > pos and buf[end - 1] == 0x0D:
            end -= 1
        args = split_inline_args(bytes(buf[pos:end]))
        if args is None:
            raise ProtocolError("Protocol error: unbalanced quotes in request")
        self._pos = newline + 1
        if args:
            self._ready.append(args)
        return True

    def _next_multibulk(self) -> bool:  # noqa: PLR0912, PLR0915 - the hot loop, kept inline
        """Read multibulk requests while they are complete and this engine owns them."""
        buf = self._buf
        pos = self._pos
        n = len(buf)
        append = self._ready.append
        max_bulk = self._max_bulk
        stop_at = self._pure_until if self._use_hiredis else n + 1
        remaining = self._multibulk
        args = self._args
        bulklen = self._bulklen
        progressed = False
        while True:
            if remaining == 0:
                if pos >= n or buf[pos] != _STAR:
                    break
                cr = buf.find(b"\r", pos)
                if cr < 0 or buf.find(b"\0", pos, cr) >= 0:
                    self._save(pos, 0, -1, [])
                    self._wait_for_line(pos, "too big mbulk count string")
                    return progressed
                if cr + 1 >= n:
                    break
                digits = buf[pos + 1 : cr]
                if (
                    digits.isdigit()
                    and len(digits) < 19
                    and (digits[0] != 0x30 or len(digits) == 1)
                ):
                    count: int | None = int(digits)
                else:
                    count = _string2ll(digits)
                if count is None or count > self._max_multibulk:
                    raise ProtocolError("Protocol error: invalid multibulk length")
                pos = cr + 2
                progressed = True
                if count <= 0:
                    continue
                remaining = count
                args = []
            while remaining:
                if bulklen == -1:
                    cr = buf.find(b"\r", pos)
                    if cr < 0 or buf.find(b"\0", pos, cr) >= 0:
                        self._save(pos, remaining, -1, args)
                        self._wait_for_line(pos, "too big bulk count string")
                        return progressed
                    if cr + 1 >= n:
                        self._save(pos, remaining, -1, args)
                        return progressed
                    if buf[pos] != _DOLLAR:
                        got = _error_char(buf[pos])
                        raise ProtocolError(f"Protocol error: expected '$', got '{got}'")
                    digits = buf[pos + 1 : cr]
                    if (
                        digits.isdigit()
                        and len(digits) < 19
                        and (digits[0] != 0x30 or len(digits) == 1)
                    ):
                        size: int | None = int(digits)
                    else:
                        size = _string2ll(digits)
                    if size is None or size < 0 or size > max_bulk:
                        raise ProtocolError("Protocol error: invalid bulk length")
                    pos = cr + 2
                    bulklen = size
                    progressed = True
                if n - pos < bulklen + 2:
                    self._save(pos, remaining, bulklen, args)
                    return progressed
                args.append(bytes(buf[pos : pos + bulklen]))
                pos += bulklen + 2
                bulklen = -1
                remaining -= 1
            append(args)
            if pos >= stop_at:
                break  # hiredis takes over from here
        self._save(pos, 0, -1, [])
        return progressed

    def _save(self, pos: int, remaining: int, bulklen: int, args: list[bytes]) -> None:
        """Remember where a partial multibulk request stands."""
        self._pos = pos
        self._multibulk = remaining
        self._bulklen = bulklen
        self._args = args

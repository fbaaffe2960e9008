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
* After a :class:`~crema.errors.ProtocolError` the parser is dead: every later
  call raises the same error; the server replies and closes.

Two engines give identical results. The pure-Python one does all the
validation. The ``hiredis`` one (used when installed) parses runs of complete
requests in C and is checked cheaply: every element must be ``bytes``, sit at
the position a canonical encoding puts it, and start with ``$``. Anything
else (an incomplete request at the end of the buffer, an inline request, a
header with a large count, a hiredis error, a failed check) is handed to the
pure engine at that request's first byte, which then decides exactly as
Redis would.
"""

from __future__ import annotations

import re
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
# An aggregate header with a 6+ digit count anywhere in data fed to hiredis
# would make it preallocate a big list; such data goes to the pure engine.
# Matches inside payloads only cost speed, never correctness.
_HIREDIS_GATE = re.compile(rb"[*~>|%][0-9-]{6}")
# Redis string2ll: optional '-', no leading zeros, no '+', no spaces.
_LL_RE = re.compile(rb"(?:0|-?[1-9][0-9]{0,18})\Z")
_DIGITS = [len(str(n)) for n in range(10)]  # width of a length < 10


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
        "_pos",
        "_pure_until",
        "_reader",
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

    @property
    def uses_hiredis(self) -> bool:
        """Whether the hiredis engine is in use."""
        return self._use_hiredis

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as commands."""
        return len(self._buf) - self._pos + sum(len(a) for a in self._args)

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

    def next_command(self) -> list[bytes] | None:
        """Return the next complete command, or None until more bytes arrive.

        Returns:
            The command's arguments (never empty), or None.

        Raises:
            ProtocolError: the input is not valid RESP; the parser is dead.
        """
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
                    command = self._next_hiredis()
                    if command is not None:
                        return command
                    if self._reader is not None:
                        return None  # hiredis consumed everything
                    # else: fall through to the pure engine at self._pos
                command, done = self._next_pure()
                if command is not None:
                    return command
                if not done:
                    return None
        except ProtocolError as exc:
            self._error = exc
            self._reader = None
            raise

    # ------------------------------------------------------------------
    # hiredis engine
    # ------------------------------------------------------------------

    def _next_hiredis(self) -> list[bytes] | None:
        """One request via hiredis; None with ``_reader`` unset hands over."""
        buf = self._buf
        if self._reader is None:
            self._reader = _hiredis.Reader()
            self._fed = self._pos
        if self._fed < len(buf):
            chunk = bytes(buf[self._fed :])
            match = _HIREDIS_GATE.search(chunk)
            if match is not None:
                self._pure_until = self._fed + match.start() + 1
                self._reader = None
                return None
            self._reader.feed(chunk)
            self._fed = len(buf)
        while True:
            try:
                frame = self._reader.gets()
            except Exception:  # hiredis.ProtocolError and friends
                self._reader = None
                return None
            if frame is False:
                if self._pos < self._fed:
                    self._reader = None  # partial request: pure engine takes it
                return None
            end = self._verify(frame)
            if end < 0:
                self._reader = None
                return None
            self._pos = end
            if frame:
                return frame  # type: ignore[no-any-return]

    def _verify(self, frame: object) -> int:  # noqa: PLR0911
        """End of ``frame`` in the buffer if hiredis read a canonical request, else -1."""
        if frame is None:  # *-N: let the pure engine skip it exactly
            return -1
        if type(frame) is not list:
            return -1
        count = len(frame)
        if count > self._max_multibulk:
            return -1
        buf = self._buf
        pos = self._pos + 3 + (_DIGITS[count] if count < 10 else len(str(count)))
        if count == 0:
            return pos if buf[self._pos + 1] == 0x30 else -1
        max_bulk = self._max_bulk
        limit = len(buf)
        for arg in frame:
            if type(arg) is not bytes:
                return -1
            size = len(arg)
            if size > max_bulk or pos >= limit or buf[pos] != _DOLLAR:
                return -1
            pos += size + 5 + (_DIGITS[size] if size < 10 else len(str(size)))
        return pos

    # ------------------------------------------------------------------
    # pure engine (mirrors processMultibulkBuffer / processInlineBuffer)
    # ------------------------------------------------------------------

    def _next_pure(self) -> tuple[list[bytes] | None, bool]:
        """Advance by one request; returns (command, progressed)."""
        if self._multibulk == 0 and self._buf[self._pos] != _STAR:
            return self._next_inline()
        return self._next_multibulk()

    def _line_end(self, start: int, char: bytes, too_big: str) -> int:
        """Index of ``char`` ending the line at ``start``, or -1 to wait."""
        buf = self._buf
        end = buf.find(char, start)
        if end >= 0:
            nul = buf.find(b"\0", start, end)
            if nul >= 0:
                end = -1
        if end < 0 and len(buf) - start > self._max_inline:
            raise ProtocolError(f"Protocol error: {too_big}")
        return end

    def _next_inline(self) -> tuple[list[bytes] | None, bool]:
        pos = self._pos
        newline = self._line_end(pos, b"\n", "too big inline request")
        if newline < 0:
            return None, False
        end = newline
        if end > pos and self._buf[end - 1] == 0x0D:
            end -= 1
        args = split_inline_args(bytes(self._buf[pos:end]))
        if args is None:
            raise ProtocolError("Protocol error: unbalanced quotes in request")
        self._pos = newline + 1
        return (args or None), True

    def _next_multibulk(self) -> tuple[list[bytes] | None, bool]:
        buf = self._buf
        pos = self._pos
        if self._multibulk == 0:
            cr = self._line_end(pos, b"\r", "too big mbulk count string")
            if cr < 0 or cr + 1 >= len(buf):
                return None, False
            count = _string2ll(buf[pos + 1 : cr])
            if count is None or count > self._max_multibulk:
                raise ProtocolError("Protocol error: invalid multibulk length")
            pos = self._pos = cr + 2
            if count <= 0:
                return None, True
            self._multibulk = count
            self._args = []
        args = self._args
        while self._multibulk:
            if self._bulklen == -1:
                cr = self._line_end(pos, b"\r", "too big bulk count string")
                if cr < 0 or cr + 1 >= len(buf):
                    return None, False
                if buf[pos] != _DOLLAR:
                    got = _error_char(buf[pos])
                    raise ProtocolError(f"Protocol error: expected '$', got '{got}'")
                size = _string2ll(buf[pos + 1 : cr])
                if size is None or size < 0 or size > self._max_bulk:
                    raise ProtocolError("Protocol error: invalid bulk length")
                pos = self._pos = cr + 2
                self._bulklen = size
            size = self._bulklen
            if len(buf) - pos < size + 2:
                return None, False
            args.append(bytes(buf[pos : pos + size]))
            pos = self._pos = pos + size + 2
            self._bulklen = -1
            self._multibulk -= 1
        self._args = []
        return args, True

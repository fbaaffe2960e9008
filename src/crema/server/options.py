"""Command options with Redis 7's validation: SET, the EXPIRE family, SCAN.

Pure functions over a command's raw ``bytes`` arguments that return frozen
option values, or raise :class:`~crema.errors.CommandError` with Redis 7.0's
exact reply. Options are read as C strings (up to a NUL byte), as Redis does.
Relative expiries take ``now_ms`` from the caller (the leader's stamp), never
from a clock.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass

from crema.errors import CommandError
from crema.server.args import (
    LLONG_MAX,
    ULONG_MAX,
    cstr,
    expire_time_error,
    parse_int,
    syntax_error,
    text,
)

__all__ = [
    "Condition",
    "ExpireCondition",
    "ExpiryKind",
    "ScanOptions",
    "SetOptions",
    "parse_expire_options",
    "parse_expire_time",
    "parse_scan_cursor",
    "parse_scan_options",
    "parse_set_expire",
    "parse_set_options",
]

_CURSOR_RE = re.compile(rb"[+-]?[0-9]+\Z")


# --------------------------------------------------------------------------
# SET
# --------------------------------------------------------------------------


class ExpiryKind(enum.Enum):
    """How a SET expiry argument is to be read."""

    EX = "EX"  # relative seconds
    PX = "PX"  # relative milliseconds
    EXAT = "EXAT"  # absolute unix seconds
    PXAT = "PXAT"  # absolute unix milliseconds


class Condition(enum.Enum):
    """A write condition: only if the key does not exist / exists."""

    NX = "NX"
    XX = "XX"


@dataclass(frozen=True, slots=True)
class SetOptions:
    """The options of ``SET key value [...]`` once validated.

    Attributes:
        expiry: which expiry option was given, or None.
        expiry_value: the number as the client gave it (seconds or ms).
        expire_at_ms: the absolute expiry in unix milliseconds, or None.
        condition: NX, XX or None.
        keepttl: KEEPTTL was given.
        get: GET was given (reply with the old value).
    """

    expiry: ExpiryKind | None = None
    expiry_value: int | None = None
    expire_at_ms: int | None = None
    condition: Condition | None = None
    keepttl: bool = False
    get: bool = False


_SET_FLAGS = {b"NX", b"XX", b"GET", b"KEEPTTL", b"EX", b"PX", b"EXAT", b"PXAT"}


def parse_set_options(options: Sequence[bytes], now_ms: int) -> SetOptions:
    """Parse the options after ``SET key value`` as Redis 7.0 does.

    Args:
        options: the arguments after the value (``argv[3:]``).
        now_ms: the command's time in unix milliseconds, for EX and PX.

    Returns:
        The validated options.

    Raises:
        CommandError: ``ERR syntax error``, ``ERR value is not an integer or
            out of range`` or ``ERR invalid expire time in 'set' command``.
    """
    seen: set[bytes] = set()
    expiry: ExpiryKind | None = None
    expire_raw: bytes | None = None
    j = 0
    while j < len(options):
        opt = cstr(options[j]).upper()
        has_next = j + 1 < len(options)
        if opt not in _SET_FLAGS or not _set_flag_allowed(opt, seen, has_next):
            raise syntax_error()
        seen.add(opt)
        if opt in (b"EX", b"PX", b"EXAT", b"PXAT"):
            expiry = ExpiryKind(opt.decode("ascii"))
            expire_raw = options[j + 1]
            j += 1
        j += 1
    condition = Condition.NX if b"NX" in seen else Condition.XX if b"XX" in seen else None
    value = at_ms = None
    if expiry is not None and expire_raw is not None:
        value = parse_int(expire_raw)
        at_ms = parse_set_expire(value, expiry, now_ms, "set")
    return SetOptions(expiry, value, at_ms, condition, b"KEEPTTL" in seen, b"GET" in seen)


def _set_flag_allowed(opt: bytes, seen: set[bytes], has_next: bool) -> bool:
    expiries = {b"EX", b"PX", b"EXAT", b"PXAT"}
    if opt == b"NX":
        return b"XX" not in seen
    if opt == b"XX":
        return b"NX" not in seen
    if opt == b"GET":
        return True
    if opt == b"KEEPTTL":
        return not seen & expiries
    # an expiry: excludes KEEPTTL and the other expiry kinds, needs a value
    return has_next and b"KEEPTTL" not in seen and not seen & (expiries - {opt})


def parse_set_expire(value: int, kind: ExpiryKind, now_ms: int, command: str) -> int:
    """Turn a SET/SETEX/PSETEX/GETEX expiry into absolute unix milliseconds.

    Mirrors ``getExpireMillisecondsOrReply``: the value must be positive and
    the result must not overflow a signed 64-bit integer.

    Raises:
        CommandError: ``ERR invalid expire time in '<command>' command``.
    """
    seconds = kind in (ExpiryKind.EX, ExpiryKind.EXAT)
    if value <= 0 or (seconds and value > LLONG_MAX // 1000):
        raise expire_time_error(command)
    ms = value * 1000 if seconds else value
    if kind in (ExpiryKind.EX, ExpiryKind.PX):
        ms += now_ms
        if ms > LLONG_MAX or ms <= 0:
            raise expire_time_error(command)
    return ms


# --------------------------------------------------------------------------
# EXPIRE family
# --------------------------------------------------------------------------


class ExpireCondition(enum.Enum):
    """EXPIRE's NX / XX / GT / LT option."""

    NX = "NX"  # only when the key has no expiry
    XX = "XX"  # only when the key has an expiry
    GT = "GT"  # only when the new expiry is greater
    LT = "LT"  # only when the new expiry is less


def parse_expire_options(options: Sequence[bytes]) -> frozenset[ExpireCondition]:
    """Parse the options after ``EXPIRE key time`` as Redis 7.0 does.

    ``XX`` may be combined with ``GT`` or ``LT``; repeats are allowed.

    Raises:
        CommandError: ``ERR Unsupported option <opt>``, ``ERR NX and XX, GT or
            LT options at the same time are not compatible`` or ``ERR GT and
            LT options at the same time are not compatible``.
    """
    found: set[ExpireCondition] = set()
    for raw in options:
        opt = cstr(raw)
        try:
            found.add(ExpireCondition(opt.upper().decode("ascii")))
        except (ValueError, UnicodeDecodeError):
            raise CommandError(f"Unsupported option {text(opt)}") from None
    if ExpireCondition.NX in found and len(found) > 1:
        raise CommandError("NX and XX, GT or LT options at the same time are not compatible")
    if {ExpireCondition.GT, ExpireCondition.LT} <= found:
        raise CommandError("GT and LT options at the same time are not compatible")
    return frozenset(found)


def parse_expire_time(raw: bytes, *, seconds: bool, basetime_ms: int, command: str) -> int:
    """The absolute expiry in unix ms for EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT.

    Negative and past times are valid (the key is deleted); only overflow is
    refused, as in ``expireGenericCommand``.

    Args:
        raw: the time argument.
        seconds: the unit is seconds (EXPIRE, EXPIREAT).
        basetime_ms: ``now_ms`` for EXPIRE/PEXPIRE, 0 for the ``AT`` forms.
        command: the lower-case command name for the error.

    Raises:
        CommandError: not an integer, or ``ERR invalid expire time in
            '<command>' command``.
    """
    when = parse_int(raw)
    if seconds:
        if when > LLONG_MAX // 1000 or when < -(LLONG_MAX // 1000):
            raise expire_time_error(command)
        when *= 1000
    if when > LLONG_MAX - basetime_ms:
        raise expire_time_error(command)
    return when + basetime_ms


# --------------------------------------------------------------------------
# SCAN
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScanOptions:
    """SCAN's options once validated.

    Attributes:
        match: the MATCH pattern, or None when absent or ``*``.
        count: the COUNT hint (default 10).
        type: the TYPE filter, or None.
    """

    match: bytes | None = None
    count: int = 10
    type: bytes | None = None


def parse_scan_cursor(raw: bytes) -> int:
    """Parse a SCAN cursor as Redis's ``parseScanCursorOrReply`` (``strtoul``).

    Raises:
        CommandError: ``ERR invalid cursor``.
    """
    raw = cstr(raw)  # strtoul stops at a NUL byte
    if not raw:
        return 0  # strtoul("") is 0 with nothing left over
    if _CURSOR_RE.match(raw) is None:
        raise CommandError("invalid cursor")
    value = int(raw.lstrip(b"+-"))
    if value > ULONG_MAX:
        raise CommandError("invalid cursor")
    return (-value) % (ULONG_MAX + 1) if raw.startswith(b"-") else value


def parse_scan_options(options: Sequence[bytes]) -> ScanOptions:
    """Parse the options after ``SCAN cursor`` as Redis 7.0 does.

    Raises:
        CommandError: ``ERR syntax error`` or ``ERR value is not an integer or
            out of range``.
    """
    match: bytes | None = None
    count = 10
    type_: bytes | None = None
    i = 0
    while i < len(options):
        opt = cstr(options[i]).upper()
        if len(options) - i < 2 or opt not in (b"COUNT", b"MATCH", b"TYPE"):
            raise syntax_error()
        value = options[i + 1]
        if opt == b"COUNT":
            count = parse_int(value)
            if count < 1:
                raise syntax_error()
        elif opt == b"MATCH":
            match = None if value == b"*" else value
        else:
            type_ = cstr(value)
        i += 2
    return ScanOptions(match, count, type_)

"""Reply values and their RESP2 / RESP3 encodings.

The command layer builds replies from plain Python values and a few small
wrappers, and never thinks about the protocol version; the connection encodes
them with :func:`encode_reply` for the version the client chose with HELLO.

============================  ====================  ====================
value                         RESP2                 RESP3
============================  ====================  ====================
``bytes`` / ``str``           bulk ``$``            bulk ``$``
``int``                       integer ``:``         integer ``:``
``bool``                      ``:1`` / ``:0``       ``#t`` / ``#f``
``float``                     bulk of the digits    double ``,``
``None``                      null bulk ``$-1``     null ``_``
:data:`NULL_ARRAY`            null array ``*-1``    null ``_``
``list`` / ``tuple``          array ``*``           array ``*``
``dict``                      flat array ``*``      map ``%``
``set`` / ``frozenset``       array ``*``           set ``~``
:class:`SimpleString`         ``+``                 ``+``
:class:`ErrorReply`           ``-``                 ``-``
:class:`Verbatim`             bulk of the text      verbatim ``=``
:class:`BigNumber`            bulk of the digits    big number ``(``
============================  ====================  ====================

Simple strings and errors cannot hold CR or LF; like Redis's
``addReplyErrorFormat`` they are replaced by spaces.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, TypeAlias

__all__ = [
    "NULL_ARRAY",
    "OK",
    "PONG",
    "QUEUED",
    "BigNumber",
    "ErrorReply",
    "NullArray",
    "Reply",
    "SimpleString",
    "Verbatim",
    "encode_bulk",
    "encode_error",
    "encode_integer",
    "encode_reply",
    "encode_reply_into",
    "format_double",
]


@dataclass(frozen=True, slots=True)
class SimpleString:
    """A status reply such as ``+OK``."""

    value: str


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """An error reply ``-<code> <message>``, e.g. ``ErrorReply("WRONGTYPE", "...")``.

    Attributes:
        code: the prefix clients switch on: ``ERR``, ``WRONGTYPE``,
            ``TRYAGAIN`` (not applied, safe to retry), ``UNKNOWN`` (outcome
            unknown), ...
        message: the human-readable rest.
    """

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Verbatim:
    """A RESP3 verbatim string; ``format`` is three characters (``txt``, ``mkd``)."""

    text: str
    format: str = "txt"

    def __post_init__(self) -> None:
        if len(self.format) != 3:
            raise ValueError(f"verbatim format must be 3 characters, got {self.format!r}")


@dataclass(frozen=True, slots=True)
class BigNumber:
    """A RESP3 big number (any int beyond 64 bits is fine)."""

    value: int


@dataclass(frozen=True, slots=True)
class NullArray:
    """The null array: ``*-1`` in RESP2 (as BLPOP timeouts), ``_`` in RESP3."""


NULL_ARRAY: Final = NullArray()
OK: Final = SimpleString("OK")
PONG: Final = SimpleString("PONG")
QUEUED: Final = SimpleString("QUEUED")

Reply: TypeAlias = (
    bytes
    | str
    | int
    | float
    | SimpleString
    | ErrorReply
    | Verbatim
    | BigNumber
    | NullArray
    | list["Reply"]
    | tuple["Reply", ...]
    | set[bytes | str | int]
    | frozenset[bytes | str | int]
    | Mapping["Reply", "Reply"]
    | None
)

_CRLF = b"\r\n"
_SMALL_INTS: Final = [b":%d\r\n" % i for i in range(-1, 1024)]
_FAST: Final[dict[object, bytes]] = {}  # filled below with the common constants
_NULL2 = b"$-1\r\n"
_NULL3 = b"_\r\n"


def _line(text: str) -> bytes:
    """Encode a one-line text, turning CR and LF into spaces (as Redis does)."""
    data = text.encode("utf-8", "surrogateescape")
    if b"\r" in data or b"\n" in data:
        data = data.replace(b"\r", b" ").replace(b"\n", b" ")
    return data


def encode_integer(value: int) -> bytes:
    """Encode an integer reply ``:<value>``."""
    if -1 <= value < 1023:
        return _SMALL_INTS[value + 1]
    return b":%d\r\n" % value


def encode_bulk(value: bytes) -> bytes:
    """Encode a bulk string reply ``$<len>`` followed by the bytes."""
    return b"$%d\r\n%s\r\n" % (len(value), value)


def encode_error(code: str, message: str) -> bytes:
    """Encode an error reply ``-<code> <message>``."""
    return b"-" + _line(f"{code} {message}" if message else code) + _CRLF


def format_double(value: float) -> bytes:
    """Format a double as Redis 7.2 does: shortest round-trip digits, inf, nan."""
    if math.isinf(value):
        return b"inf" if value > 0 else b"-inf"
    if math.isnan(value):
        return b"nan"
    text = repr(value)
    return (text[:-2] if text.endswith(".0") else text).encode("ascii")


def encode_reply(reply: Reply, protocol: int = 2) -> bytes:
    """Encode one reply for a client speaking RESP ``protocol`` (2 or 3).

    Args:
        reply: the value; see the module docstring for the mapping.
        protocol: 2 or 3.

    Returns:
        The encoded bytes.

    Raises:
        TypeError: ``reply`` contains a value with no RESP encoding.
    """
    if type(reply) is bytes:
        return b"$%d\r\n%s\r\n" % (len(reply), reply)
    if type(reply) is int:
        return encode_integer(reply)
    if reply is None:
        return _NULL2 if protocol == 2 else _NULL3
    fast = _FAST.get(reply) if type(reply) is SimpleString else None
    if fast is not None:
        return fast
    out: list[bytes] = []
    encode_reply_into(out, reply, protocol)
    return b"".join(out)


def encode_reply_into(out: list[bytes], reply: Reply, protocol: int = 2) -> None:  # noqa: PLR0912
    """Append the encoding of ``reply`` to ``out`` (join it once at the end).

    Args:
        out: a list of byte strings to extend.
        reply: the value to encode.
        protocol: 2 or 3.

    Raises:
        TypeError: ``reply`` contains a value with no RESP encoding.
    """
    resp3 = protocol >= 3
    if type(reply) is bytes:
        out.append(b"$%d\r\n%s\r\n" % (len(reply), reply))
    elif type(reply) is int:
        out.append(encode_integer(reply))
    elif reply is None or type(reply) is NullArray:
        out.append(_NULL3 if resp3 else (_NULL2 if reply is None else b"*-1\r\n"))
    elif type(reply) is str:
        out.append(encode_bulk(reply.encode("utf-8", "surrogateescape")))
    elif type(reply) is list or type(reply) is tuple:
        out.append(b"*%d\r\n" % len(reply))
        null = _NULL3 if resp3 else _NULL2
        for item in reply:  # inline the common elements: MGET, KEYS, SCAN
            if type(item) is bytes:
                out.append(b"$%d\r\n%s\r\n" % (len(item), item))
            elif item is None:
                out.append(null)
            else:
                encode_reply_into(out, item, protocol)
    elif isinstance(reply, SimpleString):
        out.append(b"+" + _line(reply.value) + _CRLF)
    elif isinstance(reply, ErrorReply):
        out.append(encode_error(reply.code, reply.message))
    elif type(reply) is bool:
        out.append((b"#t\r\n" if reply else b"#f\r\n") if resp3 else _SMALL_INTS[reply + 1])
    else:
        _encode_other(out, reply, protocol)


def _encode_other(out: list[bytes], reply: Reply, protocol: int) -> None:
    resp3 = protocol >= 3
    if isinstance(reply, float):
        digits = format_double(reply)
        out.append(b",%s\r\n" % digits if resp3 else encode_bulk(digits))
    elif isinstance(reply, Mapping):
        out.append(b"%%%d\r\n" % len(reply) if resp3 else b"*%d\r\n" % (2 * len(reply)))
        for key, value in reply.items():
            encode_reply_into(out, key, protocol)
            encode_reply_into(out, value, protocol)
    elif isinstance(reply, set | frozenset):
        out.append(b"~%d\r\n" % len(reply) if resp3 else b"*%d\r\n" % len(reply))
        for item in reply:
            encode_reply_into(out, item, protocol)
    elif isinstance(reply, Verbatim):
        text = reply.text.encode("utf-8", "surrogateescape")
        if resp3:
            body = reply.format.encode("ascii") + b":" + text
            out.append(b"=%d\r\n%s\r\n" % (len(body), body))
        else:
            out.append(encode_bulk(text))
    elif isinstance(reply, BigNumber):
        digits = b"%d" % reply.value
        out.append(b"(%s\r\n" % digits if resp3 else encode_bulk(digits))
    else:
        raise TypeError(f"no RESP encoding for {type(reply).__name__}")


for _constant in (OK, PONG, QUEUED):
    _FAST[_constant] = b"+" + _constant.value.encode("ascii") + _CRLF

"""The RESP protocol layer in one import: request parser and reply encoder.

Pure (layer L0): bytes in, commands out; reply values in, bytes out. See
:mod:`crema.server.resp_parser` and :mod:`crema.server.resp_reply`, and
:mod:`crema.server.args` for argument parsing with Redis's error replies.
"""

from __future__ import annotations

from crema.errors import CommandError, ProtocolError
from crema.server.resp_parser import (
    DEFAULT_MAX_BULK_LEN,
    DEFAULT_MAX_INLINE_LEN,
    DEFAULT_MAX_MULTIBULK_LEN,
    HIREDIS_AVAILABLE,
    RequestParser,
)
from crema.server.resp_reply import (
    NULL_ARRAY,
    OK,
    PONG,
    QUEUED,
    BigNumber,
    ErrorReply,
    NullArray,
    Reply,
    SimpleString,
    Verbatim,
    encode_bulk,
    encode_error,
    encode_integer,
    encode_reply,
    encode_reply_into,
    format_double,
)

__all__ = [
    "DEFAULT_MAX_BULK_LEN",
    "DEFAULT_MAX_INLINE_LEN",
    "DEFAULT_MAX_MULTIBULK_LEN",
    "HIREDIS_AVAILABLE",
    "NULL_ARRAY",
    "OK",
    "PONG",
    "QUEUED",
    "BigNumber",
    "CommandError",
    "ErrorReply",
    "NullArray",
    "ProtocolError",
    "Reply",
    "RequestParser",
    "SimpleString",
    "Verbatim",
    "encode_bulk",
    "encode_command",
    "encode_error",
    "encode_integer",
    "encode_reply",
    "encode_reply_into",
    "error_reply_for",
    "format_double",
]


def encode_command(args: list[bytes] | tuple[bytes, ...]) -> bytes:
    """Encode a command as a client sends it: an array of bulk strings.

    Args:
        args: the command name and its arguments.

    Returns:
        The RESP bytes.
    """
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(parts)


def error_reply_for(exc: CommandError | ProtocolError) -> ErrorReply:
    """The error reply a client gets for ``exc`` (``-ERR Protocol error: ...``)."""
    if isinstance(exc, CommandError):
        return ErrorReply(exc.code, exc.message)
    return ErrorReply("ERR", str(exc))

"""Command arguments: numbers and error replies exactly as Redis 7 words them.

Pure functions the command layer calls on a command's raw ``bytes``
arguments. A refusal raises :class:`~crema.errors.CommandError` whose
``code`` and ``message`` are what Redis 7.0 replies (``-ERR syntax error``).
Option parsers (SET, EXPIRE, SCAN) live in :mod:`crema.server.options`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from crema.errors import CommandError

__all__ = [
    "LLONG_MAX",
    "LLONG_MIN",
    "ULONG_MAX",
    "check_arity",
    "cstr",
    "expire_time_error",
    "parse_float",
    "parse_int",
    "syntax_error",
    "text",
    "unknown_command",
    "unknown_subcommand",
    "wrong_arity",
]

LLONG_MAX = 2**63 - 1
LLONG_MIN = -(2**63)
ULONG_MAX = 2**64 - 1

_NOT_INT = "value is not an integer or out of range"
_NOT_FLOAT = "value is not a valid float"
_LL_RE = re.compile(rb"(?:0|-?[1-9][0-9]{0,18})\Z")
# What C strtod accepts after the checks Redis makes (no leading blank).
_FLOAT_RE = re.compile(
    rb"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf(?:inity)?)\Z",
    re.IGNORECASE,
)
_HEX_FLOAT_RE = re.compile(
    rb"[+-]?0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?[0-9]+)?\Z"
)


def cstr(raw: bytes) -> bytes:
    """The argument as C sees it: up to the first NUL byte."""
    nul = raw.find(b"\0")
    return raw if nul < 0 else raw[:nul]


def text(raw: bytes) -> str:
    """Bytes as text, every byte kept (UTF-8 with surrogate escapes)."""
    return raw.decode("utf-8", "surrogateescape")


# --------------------------------------------------------------------------
# Error replies
# --------------------------------------------------------------------------


def syntax_error() -> CommandError:
    """``ERR syntax error``."""
    return CommandError("syntax error")


def wrong_arity(name: str) -> CommandError:
    """``ERR wrong number of arguments for 'get' command``.

    Args:
        name: the command's canonical lower-case name (``client|setname``
            for a subcommand), as Redis prints its ``fullname``.
    """
    return CommandError(f"wrong number of arguments for '{name}' command")


def check_arity(name: str, arity: int, argc: int) -> None:
    """Check a command's argument count the way Redis's command table does.

    Args:
        name: the canonical lower-case name, for the error.
        arity: Redis arity: ``n`` means exactly ``n`` arguments (the name
            included), ``-n`` at least ``n``.
        argc: the number of arguments received, the name included.

    Raises:
        CommandError: ``ERR wrong number of arguments for '<name>' command``.
    """
    if (arity > 0 and argc != arity) or argc < -arity:
        raise wrong_arity(name)


def unknown_command(args: Sequence[bytes]) -> CommandError:
    """Redis 7's reply for an unknown command (``args[0]``).

    The first 128 bytes of the name are shown, then arguments quoted and
    followed by a space while the list is shorter than 128 characters.
    """
    shown = b""  # Redis counts bytes here, not characters
    for arg in args[1:]:
        if len(shown) >= 128:
            break
        shown += b"'" + cstr(arg)[: 128 - len(shown)] + b"' "
    name = text(cstr(args[0])[:128]) if args else ""
    return CommandError(f"unknown command '{name}', with args beginning with: {text(shown)}")


def unknown_subcommand(command: bytes, subcommand: bytes) -> CommandError:
    """``ERR unknown subcommand 'FOO'. Try CLIENT HELP.``"""
    sub = text(cstr(subcommand)[:128])
    return CommandError(f"unknown subcommand '{sub}'. Try {text(command).upper()} HELP.")


def expire_time_error(command: str) -> CommandError:
    """``ERR invalid expire time in 'set' command``."""
    return CommandError(f"invalid expire time in '{command}' command")


# --------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------


def parse_int(raw: bytes, message: str = _NOT_INT) -> int:
    """Parse a signed 64-bit integer exactly as Redis's ``string2ll``.

    No sign ``+``, no leading zeros, no blanks; ``-0`` is refused.

    Raises:
        CommandError: ``ERR value is not an integer or out of range`` (or
            ``message``).
    """
    if len(raw) > 20 or _LL_RE.match(raw) is None:
        raise CommandError(message)
    value = int(raw)
    if not LLONG_MIN <= value <= LLONG_MAX:
        raise CommandError(message)
    return value


def parse_float(raw: bytes, message: str = _NOT_FLOAT) -> float:
    """Parse a double as Redis's ``getDoubleFromObject`` (C ``strtod``).

    Accepts decimal and hex forms and ``inf``; refuses blanks, NaN and
    values that overflow.

    Raises:
        CommandError: ``ERR value is not a valid float`` (or ``message``).
    """
    if _FLOAT_RE.match(raw):
        value = float(raw)
    elif _HEX_FLOAT_RE.match(raw):
        text = raw.decode("ascii").lower()
        if "p" not in text:
            text += "p0"
        try:
            value = float.fromhex(text)
        except OverflowError:
            raise CommandError(message) from None
    else:
        raise CommandError(message)
    if math.isinf(value) and b"inf" not in raw.lower():
        raise CommandError(message)  # ERANGE overflow
    if value == 0.0 and _underflows(raw):
        raise CommandError(message)  # ERANGE underflow to zero
    return value


def _underflows(raw: bytes) -> bool:
    """Whether a literal that parsed as 0.0 has a non-zero mantissa."""
    text = raw.lower().lstrip(b"+-")
    if text.startswith(b"0x"):
        mantissa = text[2:].split(b"p")[0]
        return any(c not in b"0." for c in mantissa)
    return any(c not in b"0." for c in text.split(b"e")[0])

"""Strict field checks for values decoded from a peer (L0, pure).

msgpack hands back plain Python objects; every decoder in the transport runs
them through these checks before building a value type, so a malformed or
hostile payload becomes a :class:`~crema.errors.PeerProtocolError` instead of
an ``AttributeError`` deep inside the node, or a value that breaks an invariant.
"""

from __future__ import annotations

from typing import Any

from crema.errors import PeerProtocolError

U64_MAX = (1 << 64) - 1


def fail(reason: str) -> PeerProtocolError:
    """Build the error for a malformed field (callers ``raise fail(...)``)."""
    return PeerProtocolError(reason)


def as_list(value: Any, name: str, length: int | None = None, max_len: int = 64) -> list[Any]:
    """Return ``value`` if it is a list of the expected length.

    Args:
        value: the decoded object.
        name: field name for the error message.
        length: exact length required, or None.
        max_len: upper bound when ``length`` is None.

    Raises:
        PeerProtocolError: not a list, or the wrong length.
    """
    if type(value) is not list:
        raise fail(f"{name}: expected an array, got {type(value).__name__}")
    if length is not None and len(value) != length:
        raise fail(f"{name}: expected {length} fields, got {len(value)}")
    if len(value) > max_len:
        raise fail(f"{name}: {len(value)} items exceeds the limit of {max_len}")
    return value


def as_uint(value: Any, name: str, minimum: int = 0, maximum: int = U64_MAX) -> int:
    """Return ``value`` if it is an int (not a bool) in ``[minimum, maximum]``.

    Raises:
        PeerProtocolError: wrong type or out of range.
    """
    if type(value) is not int:
        raise fail(f"{name}: expected an integer, got {type(value).__name__}")
    if not minimum <= value <= maximum:
        raise fail(f"{name}: {value} is outside [{minimum}, {maximum}]")
    return value


def as_bool(value: Any, name: str) -> bool:
    """Return ``value`` if it is a bool.

    Raises:
        PeerProtocolError: wrong type.
    """
    if type(value) is not bool:
        raise fail(f"{name}: expected a boolean, got {type(value).__name__}")
    return value


def as_bytes(value: Any, name: str, max_len: int | None = None) -> bytes:
    """Return ``value`` if it is bytes no longer than ``max_len``.

    Raises:
        PeerProtocolError: wrong type or too long.
    """
    if type(value) is not bytes:
        raise fail(f"{name}: expected bytes, got {type(value).__name__}")
    if max_len is not None and len(value) > max_len:
        raise fail(f"{name}: {len(value)} bytes exceeds the limit of {max_len}")
    return value


def as_str(value: Any, name: str, max_len: int) -> str:
    """Return ``value`` if it is a str no longer than ``max_len`` characters.

    Raises:
        PeerProtocolError: wrong type or too long.
    """
    if type(value) is not str:
        raise fail(f"{name}: expected a string, got {type(value).__name__}")
    if len(value) > max_len:
        raise fail(f"{name}: {len(value)} characters exceeds the limit of {max_len}")
    return value

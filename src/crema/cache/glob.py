"""Redis glob-style pattern matching on bytes keys (layer L0).

The syntax of Redis's ``stringmatchlen`` (``KEYS``, ``SCAN MATCH``):

- ``*`` any run of bytes, ``?`` exactly one byte;
- ``[abc]`` one of a set, ``[^abc]`` none of it, ``[a-z]`` a range (ends in
  either order), ``\\x`` inside a set is a literal ``x``; an unterminated set
  ends at the end of the pattern; ``[]`` matches nothing;
- ``\\x`` outside a set is a literal ``x``; a trailing lone ``\\`` is literal.

Patterns are translated once to a compiled bytes regex (cached).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

_MAX_CACHED = 256


def _escape(byte: int) -> bytes:
    return re.escape(bytes([byte]))


def _translate_set(pattern: bytes, i: int) -> tuple[bytes, int]:
    """Translate the set starting after ``[`` at ``i``; return (regex, next index)."""
    negate = i < len(pattern) and pattern[i] == ord("^")
    if negate:
        i += 1
    parts: list[bytes] = []
    while i < len(pattern):
        c = pattern[i]
        if c == ord("]"):
            i += 1
            break
        if c == ord("\\") and i + 1 < len(pattern):
            parts.append(_escape(pattern[i + 1]))
            i += 2
        elif i + 2 < len(pattern) and pattern[i + 1] == ord("-"):
            low, high = sorted((c, pattern[i + 2]))
            parts.append(_escape(low) + b"-" + _escape(high))
            i += 3
        else:
            parts.append(_escape(c))
            i += 1
    body = b"".join(parts)
    if not body:
        return (b"." if negate else b"(?!)"), i
    return b"[" + (b"^" if negate else b"") + body + b"]", i


@functools.lru_cache(maxsize=_MAX_CACHED)
def _compile(pattern: bytes) -> re.Pattern[bytes]:
    out: list[bytes] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == ord("*"):
            while i < len(pattern) and pattern[i] == ord("*"):
                i += 1
            out.append(b".*")
            continue
        if c == ord("?"):
            out.append(b".")
        elif c == ord("["):
            part, i = _translate_set(pattern, i + 1)
            out.append(part)
            continue
        elif c == ord("\\") and i + 1 < len(pattern):
            i += 1
            out.append(_escape(pattern[i]))
        else:
            out.append(_escape(c))
        i += 1
    return re.compile(b"".join(out) + rb"\Z", re.DOTALL)


def compile_pattern(pattern: bytes) -> Callable[[bytes], bool]:
    """A predicate telling whether a key matches the Redis glob ``pattern``.

    Args:
        pattern: the glob, as bytes.

    Returns:
        A function ``key -> bool``.
    """
    if pattern == b"*":
        return lambda key: True
    match = _compile(pattern).match
    return lambda key: match(key) is not None


def glob_match(pattern: bytes, key: bytes) -> bool:
    """Whether ``key`` matches the Redis glob ``pattern``."""
    return _compile(pattern).match(key) is not None

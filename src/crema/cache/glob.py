"""Redis glob-style pattern matching on bytes keys (layer L0).

The syntax of Redis's ``stringmatchlen`` (``KEYS``, ``SCAN MATCH``):

- ``*`` any run of bytes, ``?`` exactly one byte;
- ``[abc]`` one of a set, ``[^abc]`` none of it, ``[a-z]`` a range (ends in
  either order, compared as signed C chars as Redis does on x86, so bytes
  0x80-0xff sort below 0x00), ``\\x`` inside a set is a literal ``x``; an
  unterminated set ends at the end of the pattern; ``[]`` matches nothing;
- ``\\x`` outside a set is a literal ``x``; a trailing lone ``\\`` is literal;
- an empty key matches only ``*`` and the empty pattern (Redis's matcher
  stops before looking at the pattern; ``*`` is special-cased by KEYS/SCAN).

A pattern with at most one ``*`` is translated to a compiled bytes regex
(cached), which cannot backtrack badly with a single ``.*``. With more stars a
regex can take exponential time (``*a*a*a*a*a*a*b`` against 60 ``a`` takes
seconds), so such patterns run a two-pointer wildcard matcher instead, which
is O(len(pattern) * len(key)) in the worst case.
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
    members, i = _set_token(pattern, i)
    if not members:
        return b"(?!)", i
    return b"[" + b"".join(_escape(m) for m in sorted(members)) + b"]", i


def _signed(byte: int) -> int:
    return byte - 256 if byte >= 0x80 else byte


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


_STAR = None
_ANY = frozenset(range(256))
Token = frozenset[int] | None
"""One byte class (the bytes it accepts) or ``None`` for ``*``."""


def _set_token(pattern: bytes, i: int) -> tuple[frozenset[int], int]:
    """Parse the set starting after ``[`` at ``i``: (the bytes it accepts, next index)."""
    negate = i < len(pattern) and pattern[i] == ord("^")
    if negate:
        i += 1
    members: set[int] = set()
    while i < len(pattern):
        c = pattern[i]
        if c == ord("]"):
            i += 1
            break
        if c == ord("\\") and i + 1 < len(pattern):
            members.add(pattern[i + 1])
            i += 2
        elif i + 2 < len(pattern) and pattern[i + 1] == ord("-"):
            # Redis compares C chars, signed on x86: 0x80-0xff sort below 0.
            low, high = sorted((_signed(c), _signed(pattern[i + 2])))
            members.update(b for b in range(256) if low <= _signed(b) <= high)
            i += 3
        else:
            members.add(c)
            i += 1
    return (_ANY - members if negate else frozenset(members)), i


@functools.lru_cache(maxsize=_MAX_CACHED)
def tokenize(pattern: bytes) -> tuple[Token, ...]:
    """The pattern as a sequence of byte classes and stars (runs of ``*`` merged)."""
    out: list[Token] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == ord("*"):
            if not out or out[-1] is not _STAR:
                out.append(_STAR)
        elif c == ord("?"):
            out.append(_ANY)
        elif c == ord("["):
            token, i = _set_token(pattern, i + 1)
            out.append(token)
            continue
        elif c == ord("\\") and i + 1 < len(pattern):
            i += 1
            out.append(frozenset((pattern[i],)))
        else:
            out.append(frozenset((c,)))
        i += 1
    return tuple(out)


def match_tokens(tokens: tuple[Token, ...], key: bytes) -> bool:
    """Two-pointer wildcard match: on a mismatch, retry from the last star."""
    p = i = 0
    star = -1
    mark = 0
    n = len(tokens)
    while i < len(key):
        token = tokens[p] if p < n else _ANY
        if p < n and token is not _STAR and key[i] in token:
            p += 1
            i += 1
        elif p < n and token is _STAR:
            star, mark = p, i
            p += 1
        elif star >= 0:
            mark += 1
            p, i = star + 1, mark
        else:
            return False
    while p < n and tokens[p] is _STAR:
        p += 1
    return p == n


def compile_pattern(pattern: bytes) -> Callable[[bytes], bool]:
    """A predicate telling whether a key matches the Redis glob ``pattern``.

    Args:
        pattern: the glob, as bytes.

    Returns:
        A function ``key -> bool``.
    """
    if pattern == b"*":
        return lambda key: True
    if not pattern:
        return lambda key: not key
    tokens = tokenize(pattern)
    if tokens.count(_STAR) > 1:
        return lambda key: bool(key) and match_tokens(tokens, key)
    match = _compile(pattern).match
    # Redis's matcher never matches an empty key (except "*", a shortcut).
    return lambda key: bool(key) and match(key) is not None


def glob_match(pattern: bytes, key: bytes) -> bool:
    """Whether ``key`` matches the Redis glob ``pattern``."""
    return compile_pattern(pattern)(key)

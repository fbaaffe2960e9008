"""Redis-compatible glob matching for KEYS and SCAN MATCH.

A port of Redis 7.0's ``stringmatchlen`` (``util.c``), quirks included:

* ``*`` any run of bytes, ``?`` one byte, ``[abc]`` / ``[^abc]`` / ``[a-z]``
  a class (a reversed range ``[z-a]`` is swapped; ``\\`` escapes inside),
  ``\\x`` the byte ``x``;
* an unterminated class ``[abc`` matches like ``[abc]``;
* bytes are compared as C ``char``, which is signed: a range over bytes of
  128 and more follows signed order, as in Redis on x86;
* recursion deeper than 1000 ``*`` fails the match (abusive patterns), and a
  failed ``*`` stops longer tries early, so matching is polynomial.
"""

from __future__ import annotations

__all__ = ["glob_match"]

_STAR = 0x2A
_QUESTION = 0x3F
_OPEN = 0x5B
_CLOSE = 0x5D
_CARET = 0x5E
_DASH = 0x2D
_BACKSLASH = 0x5C


def _signed(byte: int) -> int:
    return byte - 256 if byte >= 128 else byte


def _lower(byte: int) -> int:
    return byte + 32 if 0x41 <= byte <= 0x5A else byte


def glob_match(pattern: bytes, string: bytes, *, nocase: bool = False) -> bool:
    """Whether ``string`` matches the glob ``pattern`` as Redis decides.

    Args:
        pattern: the glob.
        string: the key.
        nocase: compare ASCII letters case-insensitively.

    Returns:
        True on a match.
    """
    return _match(pattern, 0, string, 0, nocase, [False], 0)


def _match(  # noqa: PLR0911 - a faithful port of one C function
    pat: bytes, p: int, s: bytes, i: int, nocase: bool, skip: list[bool], nesting: int
) -> bool:
    if nesting > 1000:
        return False
    plen = len(pat)
    slen = len(s)

    def at(k: int) -> int:  # C reads the NUL terminator past the end
        return pat[k] if k < plen else 0

    while p < plen and i < slen:
        c = pat[p]
        if c == _STAR:
            while p < plen and at(p + 1) == _STAR:
                p += 1
            if plen - p == 1:
                return True
            while i < slen:
                if _match(pat, p + 1, s, i, nocase, skip, nesting + 1):
                    return True
                if skip[0]:
                    return False
                i += 1
            skip[0] = True
            return False
        if c == _QUESTION:
            i += 1
        elif c == _OPEN:
            p, matched = _match_class(pat, p + 1, s[i], nocase)
            if not matched:
                return False
            i += 1
        else:
            if c == _BACKSLASH and plen - p >= 2:
                p += 1
                c = pat[p]
            if (_lower(c) != _lower(s[i])) if nocase else (c != s[i]):
                return False
            i += 1
        p += 1
        if i == slen:
            while at(p) == _STAR:
                p += 1
            break
    return p >= plen and i == slen


def _match_class(pat: bytes, p: int, ch: int, nocase: bool) -> tuple[int, bool]:
    """Match ``ch`` against the class starting after ``[``; returns (end, matched)."""
    plen = len(pat)

    def at(k: int) -> int:
        return pat[k] if k < plen else 0

    negate = at(p) == _CARET
    if negate:
        p += 1
    matched = False
    while True:
        remaining = plen - p
        c = at(p)
        if c == _BACKSLASH and remaining >= 2:
            p += 1
            if pat[p] == ch:
                matched = True
        elif c == _CLOSE and remaining > 0:
            break
        elif remaining <= 0:
            p -= 1
            break
        elif remaining >= 3 and pat[p + 1] == _DASH:
            start, end, x = _signed(pat[p]), _signed(pat[p + 2]), _signed(ch)
            if start > end:
                start, end = end, start
            if nocase:
                start, end, x = _lower_signed(start), _lower_signed(end), _lower_signed(x)
            p += 2
            if start <= x <= end:
                matched = True
        elif (_lower(c) == _lower(ch)) if nocase else (c == ch):
            matched = True
        p += 1
    return p, matched != negate


def _lower_signed(value: int) -> int:
    return value + 32 if 0x41 <= value <= 0x5A else value

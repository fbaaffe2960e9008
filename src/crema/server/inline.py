"""Splitting an inline request line into arguments, as Redis's ``sdssplitargs``.

Rules (Redis ``sds.c``):

* Arguments are separated by blanks; leading blanks are C ``isspace``
  (space, ``\\t``, ``\\n``, ``\\v``, ``\\f``, ``\\r``) but an unquoted argument
  ends only at space, ``\\t``, ``\\n``, ``\\r`` or NUL.
* A ``"`` anywhere opens a double-quoted part with the escapes ``\\xHH``,
  ``\\n``, ``\\r``, ``\\t``, ``\\b``, ``\\a`` and ``\\<any>`` (the character itself).
* A ``'`` opens a single-quoted part whose only escape is ``\\'``.
* A closing quote must be followed by a blank or the end of the line,
  and an unterminated quote is an error (the caller reports
  ``Protocol error: unbalanced quotes in request``).
* The line is a C string: a NUL byte ends it.
"""

from __future__ import annotations

__all__ = ["split_inline_args"]

_BLANKS = frozenset(b" \t\n\v\f\r")
_ENDS = frozenset(b" \t\n\r")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_ESCAPES = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("a"): 7}
_DQ = 0x22
_SQ = 0x27
_BACKSLASH = 0x5C


def split_inline_args(line: bytes) -> list[bytes] | None:
    """Split an inline request line the way Redis does.

    Args:
        line: the request line without its line ending.

    Returns:
        The arguments (possibly none for a blank line), or None when a quote
        is unbalanced or a closing quote is followed by something else than
        a blank.
    """
    nul = line.find(b"\0")
    if nul >= 0:
        line = line[:nul]
    if _DQ not in line and _SQ not in line and b"\v" not in line and b"\f" not in line:
        return line.split()  # the same blanks as C isspace for bytes
    args: list[bytes] = []
    i = 0
    n = len(line)
    while True:
        while i < n and line[i] in _BLANKS:
            i += 1
        if i >= n:
            return args
        token, i = _read_token(line, i)
        if token is None:
            return None
        args.append(token)


def _read_token(line: bytes, i: int) -> tuple[bytes | None, int]:
    """Read one argument starting at ``i``; (None, i) on a quoting error."""
    n = len(line)
    out = bytearray()
    while i < n:
        c = line[i]
        if c in _ENDS:
            return bytes(out), i + 1
        if c not in (_DQ, _SQ):
            out.append(c)
            i += 1
        else:
            read = _read_double if c == _DQ else _read_single
            i = read(line, i + 1, out)
            if i < 0:
                return None, i
            return bytes(out), min(i, n)  # a closing quote ends the argument
    return bytes(out), i


def _after_quote(line: bytes, i: int) -> int:
    """Position after a closing quote at ``i``, or -1 if not followed by a blank."""
    if i + 1 < len(line) and line[i + 1] not in _BLANKS:
        return -1
    return i + 2  # skip the quote and the blank that ends the argument


def _read_double(line: bytes, i: int, out: bytearray) -> int:
    n = len(line)
    while i < n:
        c = line[i]
        if (
            c == _BACKSLASH
            and i + 3 < n
            and line[i + 1] == ord("x")
            and line[i + 2] in _HEX
            and line[i + 3] in _HEX
        ):
            out.append(int(line[i + 2 : i + 4], 16))
            i += 4
        elif c == _BACKSLASH and i + 1 < n:
            nxt = line[i + 1]
            out.append(_ESCAPES.get(nxt, nxt))
            i += 2
        elif c == _DQ:
            return _after_quote(line, i)
        else:
            out.append(c)
            i += 1
    return -1


def _read_single(line: bytes, i: int, out: bytearray) -> int:
    n = len(line)
    while i < n:
        c = line[i]
        if c == _BACKSLASH and i + 1 < n and line[i + 1] == _SQ:
            out.append(_SQ)
            i += 2
        elif c == _SQ:
            return _after_quote(line, i)
        else:
            out.append(c)
            i += 1
    return -1

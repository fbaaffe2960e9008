"""Decode raw RESP reply frames into Python values, for comparing replies in tests."""

from __future__ import annotations

from dataclasses import dataclass

from tests.server.redis_server import read_frame

__all__ = ["Error", "Simple", "decode"]


@dataclass(frozen=True)
class Simple:
    """A ``+status`` reply."""

    text: bytes


@dataclass(frozen=True)
class Error:
    """A ``-error`` reply."""

    text: bytes


Value = object


def decode(frame: bytes) -> Value:
    """The value of one complete RESP2/RESP3 reply frame."""
    value, end = _decode(frame, 0)
    assert end == len(frame), frame
    return value


def _decode(buf: bytes, pos: int) -> tuple[Value, int]:  # noqa: PLR0911
    end = buf.index(b"\r\n", pos)
    kind, line = buf[pos : pos + 1], buf[pos + 1 : end]
    after = end + 2
    if kind == b"+":
        return Simple(line), after
    if kind == b"-":
        return Error(line), after
    if kind == b":":
        return int(line), after
    if kind in (b"$", b"="):
        size = int(line)
        if size < 0:
            return None, after
        return buf[after : after + size], after + size + 2
    if kind == b"_":
        return None, after
    if kind in (b"*", b"~", b"%"):
        count = int(line) * (2 if kind == b"%" else 1)
        if count < 0:
            return None, after
        items = []
        for _ in range(count):
            item, after = _decode(buf, after)
            items.append(item)
        if kind == b"%":
            return dict(zip(items[::2], items[1::2], strict=True)), after
        return items, after
    if kind == b"#":
        return line == b"t", after
    nxt = read_frame(buf, pos)
    assert nxt is not None
    return buf[pos:nxt], nxt

"""Fuzzing the request parser: random and mutated bytes.

Whatever arrives, only commands or a ProtocolError come out (never another
exception), both engines agree exactly, and the buffer stays bounded by the
limits.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crema.errors import ProtocolError
from crema.server.resp import HIREDIS_AVAILABLE, RequestParser, encode_command

LIMITS = {"max_bulk_len": 64, "max_multibulk_len": 16, "max_inline_len": 128}
# Bytes buffered can never exceed one bulk plus its header plus one inline wait.
BOUND = LIMITS["max_bulk_len"] + LIMITS["max_inline_len"] * 2 + 64


def outcome(chunks: list[bytes], use_hiredis: bool) -> list[list[bytes] | str]:
    parser = RequestParser(use_hiredis=use_hiredis, **LIMITS)
    out: list[list[bytes] | str] = []
    try:
        for chunk in chunks:
            parser.feed(chunk)
            while (command := parser.next_command()) is not None:
                assert command and all(type(a) is bytes for a in command)
                out.append(command)
            assert parser.buffered <= BOUND + len(chunk)
    except ProtocolError as exc:
        out.append("error: " + str(exc))
    return out


def check(chunks: list[bytes]) -> None:
    pure = outcome(chunks, use_hiredis=False)
    if HIREDIS_AVAILABLE:
        assert outcome(chunks, use_hiredis=True) == pure


@given(st.lists(st.binary(max_size=64), max_size=8))
@settings(max_examples=300)
def test_random_bytes(chunks: list[bytes]) -> None:
    check(chunks)


RESP_ALPHABET = st.sampled_from(
    [b"*", b"$", b"\r\n", b"\r", b"\n", b"0", b"1", b"2", b"3", b"-1", b"9", b"+", b":",
     b"%", b"~", b"=", b"|", b"\0", b" ", b'"', b"'", b"\\", b"x", b"PING", b"a"]
)  # fmt: skip


@given(st.lists(RESP_ALPHABET, max_size=60), st.integers(1, 7))
@settings(max_examples=300)
def test_resp_shaped_tokens(tokens: list[bytes], step: int) -> None:
    data = b"".join(tokens)
    check([data[i : i + step] for i in range(0, len(data), step)])


@st.composite
def mutated_stream(draw: st.DrawFn) -> tuple[bytes, int]:
    commands = draw(
        st.lists(st.lists(st.binary(max_size=20), min_size=1, max_size=4), min_size=1, max_size=5)
    )
    data = bytearray(b"".join(encode_command(c) for c in commands))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "delete" and data:
            del data[at : at + draw(st.integers(1, 4))]
        else:
            del data[at:]
    return bytes(data), draw(st.integers(1, 16))


@given(mutated_stream())
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_mutated_valid_streams(case: tuple[bytes, int]) -> None:
    data, step = case
    check([data])
    check([data[i : i + step] for i in range(0, len(data), step)])

"""RequestParser: round trips, byte-at-a-time feeding, limits, errors, both engines."""

from __future__ import annotations

import random
import subprocess
import sys
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crema.errors import ConfigError, ProtocolError
from crema.server.resp import HIREDIS_AVAILABLE, RequestParser, encode_command

ENGINES = [
    pytest.param(False, id="pure"),
    pytest.param(
        True,
        id="hiredis",
        marks=pytest.mark.skipif(not HIREDIS_AVAILABLE, reason="hiredis not installed"),
    ),
]

Outcome = list[list[bytes] | str]


def run(data: bytes | Sequence[bytes], *, use_hiredis: bool, **limits: int) -> Outcome:
    """Feed ``data`` (one chunk or many) and collect commands, then the error if any."""
    parser = RequestParser(use_hiredis=use_hiredis, **limits)
    chunks = [data] if isinstance(data, bytes) else data
    out: Outcome = []
    try:
        for chunk in chunks:
            parser.feed(chunk)
            while (command := parser.next_command()) is not None:
                out.append(command)
    except ProtocolError as exc:
        out.append(str(exc))
    return out


def both(data: bytes | Sequence[bytes], **limits: int) -> Outcome:
    """Run both engines (when hiredis is installed) and check they agree."""
    pure = run(data, use_hiredis=False, **limits)
    if HIREDIS_AVAILABLE:
        assert run(data, use_hiredis=True, **limits) == pure
    return pure


args_st = st.lists(st.binary(max_size=40), min_size=1, max_size=6)
commands_st = st.lists(args_st, min_size=1, max_size=8)


@given(commands=commands_st, cuts=st.lists(st.integers(0, 2000), max_size=6))
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
def test_round_trip_in_random_chunks(commands: list[list[bytes]], cuts: list[int]) -> None:
    stream = b"".join(encode_command(c) for c in commands)
    points = sorted({min(c, len(stream)) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    assert both(chunks) == commands


MIXED = (
    encode_command([b"SET", b"k", b"v\r\n*1\r\n"])
    + b"PING\r\n"
    + b"\r\n"  # empty inline line: skipped
    + b'SET "a b" \'c\\\'d\' "\\x41\\n"\n'
    + b"*0\r\n*-1\r\n"  # empty arrays: skipped
    + encode_command([b"GET", b""])
    + encode_command([b"MSET", b"*123456", b"%7777777"])  # hiredis gate: pure engine
    + b"  ECHO   hi  \r\n"
)
MIXED_EXPECTED: Outcome = [
    [b"SET", b"k", b"v\r\n*1\r\n"],
    [b"PING"],
    [b"SET", b"a b", b"c'd", b"A\n"],
    [b"GET", b""],
    [b"MSET", b"*123456", b"%7777777"],
    [b"ECHO", b"hi"],
]


def test_mixed_stream_in_one_chunk() -> None:
    assert both(MIXED) == MIXED_EXPECTED


def test_mixed_stream_one_byte_at_a_time() -> None:
    assert both([MIXED[i : i + 1] for i in range(len(MIXED))]) == MIXED_EXPECTED


def test_every_split_point() -> None:
    for cut in range(len(MIXED) + 1):
        assert both([MIXED[:cut], MIXED[cut:]]) == MIXED_EXPECTED


BIG = 512 * 1024 * 1024
PROTOCOL_ERRORS = [
    (b"*x\r\n", "Protocol error: invalid multibulk length"),
    (b"*01\r\n", "Protocol error: invalid multibulk length"),
    (b"*+1\r\n", "Protocol error: invalid multibulk length"),
    (b"*1048577\r\n", "Protocol error: invalid multibulk length"),
    (b"*99999999999999999999\r\n", "Protocol error: invalid multibulk length"),
    (b"*1\r\n$x\r\n", "Protocol error: invalid bulk length"),
    (b"*1\r\n$-1\r\n", "Protocol error: invalid bulk length"),
    (b"*1\r\n$01\r\n", "Protocol error: invalid bulk length"),
    (b"*1\r\n$%d\r\n" % (BIG + 1), "Protocol error: invalid bulk length"),
    (b"*2\r\n+OK\r\n", "Protocol error: expected '$', got '+'"),
    (b"*1\r\n:1\r\n", "Protocol error: expected '$', got ':'"),
    (b"*1\r\n*1\r\n$1\r\na\r\n", "Protocol error: expected '$', got '*'"),
    (b"*1\r\n=8\r\ntxt:PING\r\n", "Protocol error: expected '$', got '='"),
    (b"*1\r\n\r\n", "Protocol error: expected '$', got ' '"),
    (b"*2\r\n$4\r\nECHO\r\n+PING\r\n", "Protocol error: expected '$', got '+'"),
    (b'SET "a b\r\n', "Protocol error: unbalanced quotes in request"),
    (b'ECHO "a"b\r\n', "Protocol error: unbalanced quotes in request"),
    (b"ECHO 'a\r\n", "Protocol error: unbalanced quotes in request"),
    (b"P" * (64 * 1024 + 1), "Protocol error: too big inline request"),
    (b"*" + b"1" * (64 * 1024 + 1), "Protocol error: too big mbulk count string"),
    (b"*1\r\n$" + b"1" * (64 * 1024 + 1), "Protocol error: too big bulk count string"),
]


@pytest.mark.parametrize(("data", "message"), PROTOCOL_ERRORS)
@pytest.mark.parametrize("use_hiredis", ENGINES)
def test_protocol_errors(data: bytes, message: str, use_hiredis: bool) -> None:
    prefix = encode_command([b"PING"])
    assert run(prefix + data, use_hiredis=use_hiredis) == [[b"PING"], message]


@pytest.mark.parametrize("use_hiredis", ENGINES)
def test_parser_is_dead_after_an_error(use_hiredis: bool) -> None:
    parser = RequestParser(use_hiredis=use_hiredis)
    parser.feed(b"*1\r\n$x\r\n")
    with pytest.raises(ProtocolError):
        parser.next_command()
    parser.feed(encode_command([b"PING"]))
    with pytest.raises(ProtocolError, match="invalid bulk length"):
        parser.next_command()


@pytest.mark.parametrize("use_hiredis", ENGINES)
def test_huge_bulk_header_then_trickle_allocates_nothing_big(use_hiredis: bool) -> None:
    parser = RequestParser(use_hiredis=use_hiredis)
    parser.feed(b"*1\r\n$%d\r\n" % BIG)  # allowed size, payload never comes
    assert parser.next_command() is None
    for _ in range(200):
        parser.feed(b"x" * 100)
        assert parser.next_command() is None
    assert parser.buffered <= 20_100


@pytest.mark.parametrize("use_hiredis", ENGINES)
def test_bulk_limit_is_checked_on_the_header(use_hiredis: bool) -> None:
    parser = RequestParser(use_hiredis=use_hiredis, max_bulk_len=10)
    parser.feed(b"*1\r\n$11\r\n")
    with pytest.raises(ProtocolError, match="invalid bulk length"):
        parser.next_command()
    assert run(encode_command([b"x" * 10]), use_hiredis=use_hiredis, max_bulk_len=10) == [
        [b"x" * 10]
    ]


@pytest.mark.parametrize("use_hiredis", ENGINES)
def test_configured_limits(use_hiredis: bool) -> None:
    too_many = encode_command([b"a"] * 4)
    assert run(too_many, use_hiredis=use_hiredis, max_multibulk_len=3) == [
        "Protocol error: invalid multibulk length"
    ]
    assert run(b"PING PING\r\n", use_hiredis=use_hiredis, max_inline_len=4) == [
        [b"PING", b"PING"]  # the line is complete: the limit is on waiting
    ]
    assert run(b"PING PING", use_hiredis=use_hiredis, max_inline_len=4) == [
        "Protocol error: too big inline request"
    ]


@pytest.mark.parametrize("use_hiredis", ENGINES)
def test_nul_before_line_end_waits_like_redis(use_hiredis: bool) -> None:
    assert run(b"PI\0NG\r\n", use_hiredis=use_hiredis) == []
    assert run(b"*1\0\r\n$4\r\nPING\r\n", use_hiredis=use_hiredis) == []


def test_redis_leniencies() -> None:
    # The two bytes after a payload and the byte after a header CR are not checked.
    assert both(b"*1\r\n$4\r\nPINGxx*1\rX$4\r\nPING\r\n") == [[b"PING"], [b"PING"]]
    # Inline: LF alone ends a line; leading blanks include \v and \f.
    assert both(b"\v\fPING\n") == [[b"PING"]]
    assert both(b"ECHO a\vb\r\n") == [[b"ECHO", b"a\vb"]]


def test_bad_configuration() -> None:
    with pytest.raises(ConfigError):
        RequestParser(max_bulk_len=0)
    if not HIREDIS_AVAILABLE:
        with pytest.raises(ConfigError):
            RequestParser(use_hiredis=True)


def test_engine_selection() -> None:
    assert RequestParser(use_hiredis=False).uses_hiredis is False
    assert RequestParser().uses_hiredis is HIREDIS_AVAILABLE


def test_large_pipelines_compact_the_buffer() -> None:
    command = encode_command([b"SET", b"key", b"v" * 100])
    parser = RequestParser()
    for _ in range(50):
        parser.feed(command * 100)
        count = 0
        while parser.next_command() is not None:
            count += 1
        assert count == 100
    assert parser.buffered == 0


def test_works_without_hiredis_installed() -> None:
    code = (
        "import sys; sys.modules['hiredis'] = None\n"
        "from crema.server.resp import HIREDIS_AVAILABLE, RequestParser\n"
        "assert not HIREDIS_AVAILABLE\n"
        "p = RequestParser(); assert not p.uses_hiredis\n"
        "p.feed(b'*1\\r\\n$4\\r\\nPING\\r\\nECHO x\\r\\n')\n"
        "assert p.next_command() == [b'PING'] and p.next_command() == [b'ECHO', b'x']\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize("use_hiredis", ENGINES)
def test_nested_headers_do_not_amplify_memory(use_hiredis: bool) -> None:
    import tracemalloc  # noqa: PLC0415

    for header in (b"*99\r\n$1\r\na\r\n", b"*99\r\n", b"*99999\r\n", b"%9\r\n~99\r\n"):
        data = b"*2\r\n" + header * (200_000 // len(header))
        tracemalloc.start()
        try:
            outcome = run([data[i : i + 65536] for i in range(0, len(data), 65536)],
                          use_hiredis=use_hiredis)  # fmt: skip
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert len(outcome) == 1 and str(outcome[0]).startswith("Protocol error: expected '$'")
        assert peak < 8 * 1024 * 1024, (header, peak)


def test_big_feed_spanning_many_hiredis_slices() -> None:
    rng = random.Random(7)
    commands = []
    for i in range(2000):
        size = rng.choice([1, 10, 100, 1000])
        argc = rng.choice([1, 2, 3]) if i % 97 else 120
        size = 3 if argc == 120 else size
        commands.append([b"CMD%d" % i] + [rng.randbytes(size) for _ in range(argc - 1)])
    stream = b"".join(encode_command(c) for c in commands)
    assert len(stream) > 8 * 65536
    assert both(stream) == commands
    # the same, cut so headers straddle the 64 KiB slices at many offsets
    assert both([stream[:65533], stream[65533:200_001], stream[200_001:]]) == commands

"""Argument helpers: values produced, errors raised, and floats against Redis."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crema.errors import CommandError
from crema.server.args import (
    check_arity,
    parse_float,
    parse_int,
    unknown_command,
    unknown_subcommand,
)
from crema.server.options import (
    Condition,
    ExpireCondition,
    ExpiryKind,
    ScanOptions,
    SetOptions,
    parse_expire_options,
    parse_expire_time,
    parse_scan_cursor,
    parse_scan_options,
    parse_set_options,
)
from crema.server.resp import encode_reply, error_reply_for
from tests.server.redis_server import RawClient
from tests.server.reference_glob import glob_match

NOW = 1_700_000_000_000


def message(exc: pytest.ExceptionInfo[CommandError]) -> str:
    return str(exc.value)


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (b"0", 0),
        (b"-1", -1),
        (b"9223372036854775807", 2**63 - 1),
        (b"-9223372036854775808", -(2**63)),
    ],
)
def test_parse_int_accepts(raw: bytes, value: int) -> None:
    assert parse_int(raw) == value


@pytest.mark.parametrize(
    "raw", [b"", b"+1", b"01", b"-0", b" 1", b"1 ", b"1.0", b"9223372036854775808", b"\xff", b"1\0"]
)
def test_parse_int_refuses(raw: bytes) -> None:
    with pytest.raises(CommandError) as info:
        parse_int(raw)
    assert message(info) == "ERR value is not an integer or out of range"


@pytest.mark.parametrize(
    ("raw", "value"),
    [(b"1.5", 1.5), (b"+.5", 0.5), (b"1e3", 1000.0), (b"-inf", -math.inf), (b"Infinity", math.inf),
     (b"0x10", 16.0), (b"0x1p-2", 0.25), (b"5.", 5.0), (b"4e-320", 4e-320), (b"-0e9", 0.0)],
)  # fmt: skip
def test_parse_float_accepts(raw: bytes, value: float) -> None:
    assert parse_float(raw) == value


@pytest.mark.parametrize(
    "raw", [b"", b" 1", b"1 ", b"nan", b"1e400", b"1e-400", b"0x1p-1080", b"1_0", b"abc", b"."]
)
def test_parse_float_refuses(raw: bytes) -> None:
    with pytest.raises(CommandError, match="value is not a valid float"):
        parse_float(raw)


FLOATS = st.lists(
    st.sampled_from([b"1", b"0", b".", b"e", b"E", b"-", b"+", b"5", b"x", b"inf", b"nan",
                     b"0x", b"p", b" ", b"a", b"9" * 20, b"e400", b"e-400", b"_"]),
    min_size=1, max_size=6,
).map(b"".join)  # fmt: skip


@given(FLOATS)
@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_parse_float_matches_redis_zadd(redis_client: RawClient, raw: bytes) -> None:
    if raw.lower() in (b"xx", b"nx", b"gt", b"lt", b"ch", b"incr"):
        return  # a ZADD option, not a score
    reply = redis_client.call(b"ZADD", b"z", raw, b"m")
    try:
        value = parse_float(raw)
    except CommandError as exc:
        assert reply == encode_reply(error_reply_for(exc))
        return
    assert reply.startswith(b":"), (raw, reply)
    if not math.isnan(value):  # a zset score must not be NaN; Redis checks later
        score = redis_client.call(b"ZSCORE", b"z", b"m")
        assert float(score.split(b"\r\n")[1]) == value


def test_set_options_values() -> None:
    opts = parse_set_options([b"ex", b"10", b"NX", b"get"], NOW)
    assert opts == SetOptions(ExpiryKind.EX, 10, NOW + 10_000, Condition.NX, False, True)
    assert parse_set_options([b"PXAT", b"5"], NOW).expire_at_ms == 5
    assert parse_set_options([b"EXAT", b"5"], NOW).expire_at_ms == 5000
    assert parse_set_options([b"PX", b"5", b"PX", b"7"], NOW).expire_at_ms == NOW + 7
    assert parse_set_options([b"KEEPTTL", b"XX"], NOW) == SetOptions(
        condition=Condition.XX, keepttl=True
    )
    assert parse_set_options([], NOW) == SetOptions()


@pytest.mark.parametrize(
    ("options", "error"),
    [([b"EX"], "ERR syntax error"), ([b"NX", b"XX"], "ERR syntax error"),
     ([b"EX", b"1", b"KEEPTTL"], "ERR syntax error"),
     ([b"EX", b"1", b"PXAT", b"1"], "ERR syntax error"),
     ([b"EX", b"0"], "ERR invalid expire time in 'set' command"),
     ([b"PX", b"x"], "ERR value is not an integer or out of range"),
     ([b"EX", b"x", b"FOO"], "ERR syntax error")],
)  # fmt: skip
def test_set_options_errors(options: list[bytes], error: str) -> None:
    with pytest.raises(CommandError) as info:
        parse_set_options(options, NOW)
    assert message(info) == error


def test_expire_helpers() -> None:
    assert parse_expire_options([b"xx", b"GT"]) == {ExpireCondition.XX, ExpireCondition.GT}
    with pytest.raises(CommandError, match=r"^ERR Unsupported option FOO$"):
        parse_expire_options([b"FOO"])
    with pytest.raises(CommandError, match="GT and LT"):
        parse_expire_options([b"GT", b"LT"])
    assert parse_expire_time(b"-5", seconds=True, basetime_ms=NOW, command="expire") == NOW - 5000
    assert parse_expire_time(b"7", seconds=False, basetime_ms=0, command="pexpireat") == 7
    with pytest.raises(CommandError, match="invalid expire time in 'pexpire' command"):
        parse_expire_time(b"9223372036854775807", seconds=False, basetime_ms=NOW, command="pexpire")


def test_scan_helpers() -> None:
    assert parse_scan_cursor(b"-1") == 2**64 - 1
    assert parse_scan_cursor(b"+7") == 7
    assert parse_scan_options([b"match", b"a*", b"COUNT", b"5", b"TYPE", b"hash"]) == ScanOptions(
        b"a*", 5, b"hash"
    )
    assert parse_scan_options([b"MATCH", b"*"]).match is None
    with pytest.raises(CommandError, match="invalid cursor"):
        parse_scan_cursor(b"0x1")


def test_command_errors() -> None:
    with pytest.raises(CommandError, match="for 'get' command"):
        check_arity("get", 2, 3)
    check_arity("set", -3, 5)
    err = unknown_command([b"foo", b"a", b"b"])
    assert str(err) == "ERR unknown command 'foo', with args beginning with: 'a' 'b' "
    assert str(unknown_command([b"x"])) == "ERR unknown command 'x', with args beginning with: "
    assert str(unknown_subcommand(b"client", b"foo")) == (
        "ERR unknown subcommand 'foo'. Try CLIENT HELP."
    )


@pytest.mark.parametrize(
    ("pattern", "string", "matches"),
    [(b"h?llo", b"hello", True), (b"h*llo", b"heeeello", True), (b"h[ae]llo", b"hallo", True),
     (b"h[^e]llo", b"hello", False), (b"h[a-b]llo", b"hbllo", True), (b"h[b-a]llo", b"hbllo", True),
     (b"h\\*llo", b"h*llo", True), (b"h\\*llo", b"hello", False), (b"a[", b"a[", False),
     (b"a[bc", b"ab", True), (b"*", b"", False), (b"", b"", True), (b"a**", b"a", True),
     (b"[\\]]", b"]", True), (b"*a*a*a*a*a*a*a*a*b", b"a" * 60, False)],
)  # fmt: skip
def test_glob_cases(pattern: bytes, string: bytes, matches: bool) -> None:
    assert glob_match(pattern, string) is matches


def test_glob_nocase() -> None:
    assert glob_match(b"H[A-C]LLO", b"hbllo", nocase=True)
    assert not glob_match(b"HELLO", b"hello")

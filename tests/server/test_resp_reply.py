"""Reply encoding: exact bytes, RESP2 vs RESP3, round trips, and Redis's own replies."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crema.server.resp import (
    NULL_ARRAY,
    OK,
    PONG,
    BigNumber,
    ErrorReply,
    Reply,
    SimpleString,
    Verbatim,
    encode_reply,
    encode_reply_into,
    format_double,
)
from tests.server.redis_server import RawClient, read_frame

EXACT: list[tuple[Reply, bytes, bytes]] = [
    (OK, b"+OK\r\n", b"+OK\r\n"),
    (PONG, b"+PONG\r\n", b"+PONG\r\n"),
    (SimpleString("a\r\nb"), b"+a  b\r\n", b"+a  b\r\n"),
    (ErrorReply("WRONGTYPE", "Operation against a key holding the wrong kind of value"),
     b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
     b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
    (ErrorReply("TRYAGAIN", "no leader"), b"-TRYAGAIN no leader\r\n", b"-TRYAGAIN no leader\r\n"),
    (ErrorReply("ERR", ""), b"-ERR\r\n", b"-ERR\r\n"),
    (0, b":0\r\n", b":0\r\n"),
    (-1, b":-1\r\n", b":-1\r\n"),
    (2**63 - 1, b":9223372036854775807\r\n", b":9223372036854775807\r\n"),
    (b"", b"$0\r\n\r\n", b"$0\r\n\r\n"),
    (b"a\r\nb", b"$4\r\na\r\nb\r\n", b"$4\r\na\r\nb\r\n"),
    ("é", b"$2\r\n\xc3\xa9\r\n", b"$2\r\n\xc3\xa9\r\n"),
    (None, b"$-1\r\n", b"_\r\n"),
    (NULL_ARRAY, b"*-1\r\n", b"_\r\n"),
    ([], b"*0\r\n", b"*0\r\n"),
    ([1, [b"a", None]], b"*2\r\n:1\r\n*2\r\n$1\r\na\r\n$-1\r\n",
     b"*2\r\n:1\r\n*2\r\n$1\r\na\r\n_\r\n"),
    ({b"k": 1}, b"*2\r\n$1\r\nk\r\n:1\r\n", b"%1\r\n$1\r\nk\r\n:1\r\n"),
    ({b"m"}, b"*1\r\n$1\r\nm\r\n", b"~1\r\n$1\r\nm\r\n"),
    (True, b":1\r\n", b"#t\r\n"),
    (False, b":0\r\n", b"#f\r\n"),
    (1.5, b"$3\r\n1.5\r\n", b",1.5\r\n"),
    (math.inf, b"$3\r\ninf\r\n", b",inf\r\n"),
    (Verbatim("x"), b"$1\r\nx\r\n", b"=5\r\ntxt:x\r\n"),
    (BigNumber(10**20), b"$21\r\n100000000000000000000\r\n", b"(100000000000000000000\r\n"),
]  # fmt: skip


@pytest.mark.parametrize(("reply", "resp2", "resp3"), EXACT, ids=lambda v: repr(v)[:30])
def test_exact_encodings(reply: Reply, resp2: bytes, resp3: bytes) -> None:
    assert encode_reply(reply, 2) == resp2
    assert encode_reply(reply, 3) == resp3
    out: list[bytes] = []
    encode_reply_into(out, reply, 3)
    assert b"".join(out) == resp3


def test_unencodable_value() -> None:
    with pytest.raises(TypeError):
        encode_reply(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="3 characters"):
        Verbatim("x", "text")


def test_format_double() -> None:
    assert format_double(1.0) == b"1"
    assert format_double(-0.5) == b"-0.5"
    assert format_double(0.1) == b"0.1"
    assert format_double(-math.inf) == b"-inf"
    assert format_double(math.nan) == b"nan"


leaves = (
    st.binary(max_size=20)
    | st.integers(-(2**63), 2**63 - 1)
    | st.none()
    | st.floats(allow_nan=False)
    | st.booleans()
)
replies = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.binary(max_size=5), inner),
    max_leaves=12,
)


def expected(value: object, protocol: int) -> object:
    """What hiredis decodes for ``value`` encoded in ``protocol``."""
    if isinstance(value, bool):
        return value if protocol == 3 else int(value)
    if isinstance(value, float):
        return value if protocol == 3 else format_double(value)
    if isinstance(value, list):
        return [expected(v, protocol) for v in value]
    if isinstance(value, dict):
        pairs = [(expected(k, protocol), expected(v, protocol)) for k, v in value.items()]
        if protocol == 3:
            return dict(pairs)
        return [x for pair in pairs for x in pair]
    return value


@given(replies)
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_round_trip_through_hiredis(reply: Reply) -> None:
    hiredis = pytest.importorskip("hiredis")
    for protocol in (2, 3):
        reader = hiredis.Reader()
        data = encode_reply(reply, protocol)
        reader.feed(data)
        assert read_frame(data, 0) == len(data)
        assert reader.gets() == expected(reply, protocol)


REDIS_REPLIES: list[tuple[list[list[bytes]], Reply]] = [
    ([[b"SET", b"k", b"v"]], OK),
    ([[b"GET", b"missing"]], None),
    ([[b"SET", b"k", b"v"], [b"EXISTS", b"k", b"k"]], 2),
    ([[b"SET", b"k", b"v"], [b"MGET", b"k", b"missing"]], [b"v", None]),
    ([[b"ZADD", b"z", b"1.5", b"m"], [b"ZSCORE", b"z", b"m"]], 1.5),
    ([[b"ZADD", b"z", b"3", b"m"], [b"ZSCORE", b"z", b"m"]], 3.0),
    ([[b"SADD", b"s", b"m"], [b"SMEMBERS", b"s"]], {b"m"}),
    ([[b"HSET", b"h", b"f", b"v"], [b"HGETALL", b"h"]], {b"f": b"v"}),
    ([[b"SET", b"k", b"v"], [b"INCR", b"k"]],
     ErrorReply("ERR", "value is not an integer or out of range")),
    ([[b"SADD", b"k", b"v"], [b"GET", b"k"]],
     ErrorReply("WRONGTYPE", "Operation against a key holding the wrong kind of value")),
]  # fmt: skip


@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize(("commands", "reply"), REDIS_REPLIES, ids=lambda v: repr(v)[:40])
def test_encodings_match_redis(
    redis_client: RawClient, protocol: int, commands: list[list[bytes]], reply: Reply
) -> None:
    hello = redis_client.call(b"HELLO", b"%d" % protocol)
    assert read_frame(hello, 0) == len(hello)
    replies = redis_client.pipeline([[b"FLUSHALL"], *commands])
    assert replies[-1] == encode_reply(reply, protocol)

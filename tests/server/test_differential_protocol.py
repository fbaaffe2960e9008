"""Differential tests of the request parser and glob matcher against redis-server.

* Protocol errors: the same malformed bytes sent to Redis get the reply
  ``-ERR <our ProtocolError message>`` and a closed connection.
* Inline requests: ``RPUSH`` the inline arguments into a list and read it
  back with ``LRANGE``: Redis's split must equal ours (or both refuse).
* Glob: ``KEYS pattern`` over a set of keys selects what ``glob_match`` does.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crema.errors import ProtocolError
from crema.server.inline import split_inline_args
from crema.server.resp import RequestParser, encode_command
from tests.server.redis_server import RawClient, RedisServer, read_frame, start_redis
from tests.server.reference_glob import glob_match
from tests.server.test_resp_parser import PROTOCOL_ERRORS

FIXTURE_OK = [HealthCheck.function_scoped_fixture]
# Our default array limit (1M elements) is below Redis 7's INT_MAX, which waits.
SAME_AS_REDIS = [(d, m) for d, m in PROTOCOL_ERRORS if d != b"*1048577\r\n"]


@pytest.mark.parametrize(("data", "message"), SAME_AS_REDIS, ids=lambda v: repr(v)[:40])
def test_protocol_errors_match_redis(redis_server: RedisServer, data: bytes, message: str) -> None:
    parser = RequestParser()
    parser.feed(data)
    with pytest.raises(ProtocolError) as info:
        while parser.next_command() is not None:
            pass
    assert str(info.value) == message
    client = redis_server.client()
    try:
        client.send_raw(data)
        assert client.read_until_closed() == b"-ERR " + message.encode() + b"\r\n"
    finally:
        client.close()


def parse_array(frame: bytes) -> list[bytes]:
    """Decode a flat RESP2 array of bulk strings."""
    items: list[bytes] = []
    pos = frame.index(b"\r\n") + 2
    while pos < len(frame):
        end = read_frame(frame, pos)
        assert end is not None
        header = frame.index(b"\r\n", pos)
        items.append(frame[header + 2 : end - 2])
        pos = end
    return items


INLINE_ALPHABET = st.sampled_from(
    [b"a", b"b", b" ", b"  ", b"\t", b'"', b"'", b"\\", b"x", b"4", b"1", b"F", b"n",
     b"r", b"\\x41", b"\\'", b'\\"', b"\v", b"\xc3\xa9"]
)  # fmt: skip


@given(st.lists(INLINE_ALPHABET, max_size=14))
@settings(max_examples=200, suppress_health_check=FIXTURE_OK)
def test_inline_split_matches_redis(redis_server: RedisServer, parts: list[bytes]) -> None:
    line = b"".join(parts)
    ours = split_inline_args(b"RPUSH L " + line)
    client = redis_server.client()
    try:
        client.send_raw(encode_command([b"DEL", b"L"]) + b"RPUSH L " + line + b"\r\n")
        assert client.read_reply().startswith(b":")
        if ours is None:
            expected = b"-ERR Protocol error: unbalanced quotes in request\r\n"
            assert client.read_until_closed() == expected
            return
        reply = client.read_reply()
        if len(ours) == 2:  # RPUSH L with no element
            assert reply == b"-ERR wrong number of arguments for 'rpush' command\r\n"
            return
        assert reply == b":%d\r\n" % (len(ours) - 2)
        assert parse_array(client.call(b"LRANGE", b"L", b"0", b"-1")) == ours[2:]
    finally:
        client.close()


KEYS = [b"", b"a", b"b", b"ab", b"abc", b"aXc", b"a*c", b"a?c", b"[", b"]", b"\\", b"-",
        b"^", b"a-c", b"hello", b"hallo", b"hxllo", b"Hello", b"\xff", b"\x80a"]  # fmt: skip
PATTERN_ALPHABET = st.sampled_from(
    [b"a", b"b", b"c", b"*", b"?", b"[", b"]", b"^", b"-", b"\\", b"h", b"e", b"l",
     b"o", b"X", b"\xff", b"\x80"]
)  # fmt: skip


@pytest.fixture(scope="module")
def keyed_client() -> Iterator[RawClient]:
    """A redis-server of its own (others FLUSHALL theirs) holding KEYS."""
    try:
        server = start_redis()
    except RuntimeError as exc:
        pytest.skip(f"differential tests need redis-server: {exc}")
    client = server.client()
    try:
        for key in KEYS:
            assert client.call(b"SET", key, b"1") == b"+OK\r\n"
        yield client
    finally:
        client.close()
        server.stop()


@given(st.lists(PATTERN_ALPHABET, min_size=1, max_size=8))
@settings(max_examples=300, suppress_health_check=FIXTURE_OK)
def test_glob_matches_redis_keys(keyed_client: RawClient, parts: list[bytes]) -> None:
    pattern = b"".join(parts)
    if pattern == b"*":
        return  # KEYS * takes a shortcut that also lists the empty key
    theirs = sorted(parse_array(keyed_client.call(b"KEYS", pattern)))
    ours = sorted(k for k in KEYS if glob_match(pattern, k))
    assert ours == theirs, pattern

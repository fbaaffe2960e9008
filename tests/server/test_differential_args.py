"""Differential tests of argument errors: the same command to redis-server and to crema.

Each command runs on an empty database on both servers (FLUSHALL first).
Where either replies with an error, both replies must be equal byte for
byte; where Redis accepts the arguments crema must too (with an equal reply
for the data commands; HELLO and CLIENT replies hold connection details).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crema.server.commands import COMMANDS
from tests.server.redis_server import RawClient, RedisServer, diff_replies
from tests.server.test_differential_commands import _same

_CONNECTION_DETAILS = (b"HELLO", b"CLIENT")
ARITY = {name: spec.arity for name, spec in COMMANDS.items()
         if spec.group in ("string", "generic", "connection")}  # fmt: skip


def compare(redis: RawClient, crema: RawClient, args: list[bytes]) -> None:
    for client in (redis, crema):
        assert client.call(b"FLUSHALL") == b"+OK\r\n"
    theirs, ours = redis.call(*args), crema.call(*args)
    if theirs.startswith(b"-") or ours.startswith(b"-"):
        assert ours == theirs, args
    elif args[0].upper() not in _CONNECTION_DETAILS:
        assert _same(args, theirs, ours), (args, theirs, ours)


CASES: list[list[bytes]] = [
    [b"GET"], [b"GET", b"a", b"b"], [b"get"], [b"SET", b"a"], [b"MSET", b"a"],
    [b"MSET", b"a", b"1", b"b"], [b"MGET"], [b"DBSIZE", b"x"], [b"PING", b"a", b"b"],
    [b"CLIENTX"], [b"foo", b"a", b"b"], [b"foo", b"a" * 200, b"b"],
    [b"foo"] + [b"%d" % i for i in range(100)], [b"f\xc3\xa9", b"\xff\r\n"],
    [b"a" * 300], [b"foo", b"x\0y"], [b"INCRBY", b"k", b"1.5"], [b"INCRBY", b"k", b" 1"],
    [b"INCRBY", b"k", b"+1"], [b"INCRBY", b"k", b"01"], [b"INCRBY", b"k", b"-0"],
    [b"INCRBY", b"k", b"9223372036854775807"], [b"INCRBY", b"k", b"9223372036854775808"],
    [b"INCRBY", b"k", b"-9223372036854775808"], [b"DECRBY", b"k", b"-9223372036854775808"],
    [b"INCRBY", b"k", b""], [b"SETEX", b"k", b"0", b"v"], [b"SETEX", b"k", b"-1", b"v"],
    [b"SETEX", b"k", b"x", b"v"], [b"PSETEX", b"k", b"0", b"v"],
    [b"SETEX", b"k", b"9223372036854775", b"v"], [b"SET", b"k", b"v", b"EX", b"0"],
    [b"SET", b"k", b"v", b"EX"], [b"SET", b"k", b"v", b"EX", b"1", b"PX", b"1"],
    [b"SET", b"k", b"v", b"EX", b"1", b"EX", b"2"], [b"SET", b"k", b"v", b"NX", b"XX"],
    [b"SET", b"k", b"v", b"KEEPTTL", b"EX", b"5"], [b"SET", b"k", b"v", b"EXAT", b"-5"],
    [b"SET", b"k", b"v", b"PXAT", b"1"], [b"SET", b"k", b"v", b"nx\0zz", b"GET"],
    [b"SET", b"k", b"v", b"EX", b"abc", b"FOO"], [b"SET", b"k", b"v", b"GET", b"NX"],
    [b"EXPIRE", b"k", b"10", b"NX", b"XX"], [b"EXPIRE", b"k", b"10", b"GT", b"LT"],
    [b"EXPIRE", b"k", b"10", b"XX", b"GT"], [b"EXPIRE", b"k", b"10", b"foo"],
    [b"EXPIRE", b"k", b"abc", b"foo"], [b"EXPIRE", b"k", b"abc", b"NX"],
    [b"EXPIRE", b"k", b"9223372036854776"], [b"EXPIRE", b"k", b"-9223372036854776"],
    [b"PEXPIRE", b"k", b"9223372036854775807"], [b"EXPIREAT", b"k", b"-1"],
    [b"PEXPIREAT", b"k", b"9223372036854775807"], [b"EXPIRE", b"k", b"1", b"nx", b"NX"],
    [b"SCAN", b"x"], [b"SCAN", b" 0"], [b"SCAN", b"+"], [b"SCAN", b"-"], [b"SCAN", b"1\x002"],
    [b"SCAN", b"-18446744073709551615"], [b"SCAN", b"-1"], [b"SCAN", b""],
    [b"SCAN", b"18446744073709551616"], [b"SCAN", b"0", b"COUNT", b"0"],
    [b"SCAN", b"0", b"COUNT"], [b"SCAN", b"0", b"MATCH", b"*", b"COUNT", b"x"],
    [b"SCAN", b"0", b"TYPE", b"string"], [b"SCAN", b"0", b"FOO", b"1"],
]  # fmt: skip


@pytest.mark.parametrize("args", CASES, ids=lambda a: repr(b" ".join(a))[:60])
def test_known_cases(redis_client: RawClient, crema_client: RawClient, args: list[bytes]) -> None:
    compare(redis_client, crema_client, args)


TOKENS = st.sampled_from(
    [b"NX", b"XX", b"GET", b"KEEPTTL", b"EX", b"PX", b"EXAT", b"PXAT", b"nx", b"ex",
     b"pxat", b"GT", b"LT", b"10", b"0", b"-5", b"abc", b"1.5", b"", b"FOO", b"COUNT",
     b"MATCH", b"TYPE", b"100000", b"9223372036854775808", b"k*"]
)  # fmt: skip


@given(st.lists(TOKENS, max_size=6))
@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_set_option_lists(
    redis_client: RawClient, crema_client: RawClient, options: list[bytes]
) -> None:
    compare(redis_client, crema_client, [b"SET", b"k", b"v", *options])


@given(
    st.sampled_from([b"EXPIRE", b"PEXPIRE", b"EXPIREAT", b"PEXPIREAT"]),
    st.lists(TOKENS, max_size=4),
)
@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_expire_option_lists(
    redis_client: RawClient, crema_client: RawClient, name: bytes, rest: list[bytes]
) -> None:
    compare(redis_client, crema_client, [name, b"k", *rest])


@given(st.sampled_from(sorted(ARITY)), st.lists(TOKENS, max_size=4), st.booleans())
@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_random_commands(
    redis_client: RawClient, crema_client: RawClient, name: bytes, rest: list[bytes], upper: bool
) -> None:
    if name in (b"quit",):
        return
    compare(redis_client, crema_client, [name.upper() if upper else name, *rest])


def test_diff_replies_helper(redis_server: RedisServer) -> None:
    a, b = redis_server.client(), redis_server.client()
    try:
        commands = [[b"SELECT", b"3"], [b"SET", b"x", b"1"], [b"GET", b"x"], [b"CLIENT", b"ID"]]
        diffs = diff_replies(commands, a, b)
        assert [d[0] for d in diffs] == [[b"CLIENT", b"ID"]]  # connection ids differ
    finally:
        a.close()
        b.close()


@given(
    st.binary(max_size=150).map(lambda b: b"x-" + b),
    st.lists(st.binary(max_size=90), max_size=5),
)
@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_unknown_command_wording(
    redis_client: RawClient, crema_client: RawClient, name: bytes, rest: list[bytes]
) -> None:
    compare(redis_client, crema_client, [name, *rest])


HELLO_TOKENS = st.sampled_from(
    [b"2", b"3", b"4", b"1", b"-1", b"x", b"AUTH", b"auth", b"default", b"pw", b"SETNAME",
     b"setname", b"name", b"bad name", b"", b"FOO", b"na\xffme", b"default", b"default"]
)  # fmt: skip


@given(st.lists(HELLO_TOKENS, max_size=6))
@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_hello_arguments(
    redis_client: RawClient, crema_client: RawClient, args: list[bytes]
) -> None:
    compare(redis_client, crema_client, [b"HELLO", *args])


@pytest.mark.parametrize(
    "args",
    [[b"CLIENT", b"SETNAME", b"a b"], [b"CLIENT", b"SETNAME", b""], [b"CLIENT", b"SETNAME"],
     [b"CLIENT", b"FOO"], [b"client", b"foo", b"x"], [b"CLIENT", b"ID", b"x"],
     [b"CLIENT", b"GETNAME"], [b"CLIENT", b"SETNAME", b"ok-name"]],
)  # fmt: skip
def test_client_arguments(
    redis_client: RawClient, crema_client: RawClient, args: list[bytes]
) -> None:
    compare(redis_client, crema_client, args)

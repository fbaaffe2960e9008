"""Argument validation of the cache's commands, built from crema.server.args.

A stand-in for the command layer's validation so that the differential tests
can compare our error replies with a real Redis before the crema server
exists: :func:`validate` returns the error a command gets before touching any
data, or None when its arguments are valid.
"""

from __future__ import annotations

from collections.abc import Sequence

from crema.errors import CommandError
from crema.server.args import (
    check_arity,
    parse_int,
    unknown_command,
    unknown_subcommand,
    wrong_arity,
)
from crema.server.hello import parse_hello, validate_client_name
from crema.server.options import (
    ExpiryKind,
    parse_expire_options,
    parse_expire_time,
    parse_scan_cursor,
    parse_scan_options,
    parse_set_expire,
    parse_set_options,
)

ARITY: dict[bytes, int] = {
    b"get": 2, b"set": -3, b"setex": 4, b"psetex": 4, b"setnx": 3, b"getdel": 2,
    b"mget": -2, b"mset": -3, b"del": -2, b"unlink": -2, b"exists": -2,
    b"expire": -3, b"pexpire": -3, b"expireat": -3, b"pexpireat": -3,
    b"ttl": 2, b"pttl": 2, b"expiretime": 2, b"pexpiretime": 2, b"persist": 2,
    b"incr": 2, b"incrby": 3, b"decr": 2, b"decrby": 3, b"append": 3, b"strlen": 2,
    b"type": 2, b"dbsize": 1, b"scan": -2, b"keys": 2, b"echo": 2, b"ping": -1,
    b"hello": -1, b"client": -2,
}  # fmt: skip

_EXPIRE = {  # name -> (unit is seconds, relative to now)
    b"expire": (True, True),
    b"pexpire": (False, True),
    b"expireat": (True, False),
    b"pexpireat": (False, False),
}


def validate(args: Sequence[bytes], now_ms: int) -> CommandError | None:
    """The error Redis 7.0 replies to ``args`` before looking at data, or None."""
    try:
        _validate(args, now_ms)
    except CommandError as exc:
        return exc
    return None


def _validate(args: Sequence[bytes], now_ms: int) -> None:
    name = args[0].lower()
    if name not in ARITY:
        raise unknown_command(args)
    text = name.decode()
    check_arity(text, ARITY[name], len(args))
    if name == b"set":
        parse_set_options(args[3:], now_ms)
    elif name in (b"setex", b"psetex"):
        kind = ExpiryKind.EX if name == b"setex" else ExpiryKind.PX
        parse_set_expire(parse_int(args[2]), kind, now_ms, text)
    elif name == b"mset" and len(args) % 2 == 0:
        raise wrong_arity(text)
    elif name in _EXPIRE:
        seconds, relative = _EXPIRE[name]
        parse_expire_options(args[3:])
        parse_expire_time(
            args[2], seconds=seconds, basetime_ms=now_ms if relative else 0, command=text
        )
    elif name in (b"incrby", b"decrby"):
        value = parse_int(args[2])
        if name == b"decrby" and value == -(2**63):
            raise CommandError("decrement would overflow")
    elif name == b"scan":
        parse_scan_cursor(args[1])
        parse_scan_options(args[2:])
    elif name == b"ping" and len(args) > 2:
        raise wrong_arity(text)
    elif name == b"hello":
        parse_hello(args, lambda user, _password: user == b"default")  # Redis's nopass default
    elif name == b"client":
        _validate_client(args)


def _validate_client(args: Sequence[bytes]) -> None:
    sub = args[1].lower()
    arities = {b"setname": 3, b"getname": 2, b"id": 2}
    if sub not in arities:
        raise unknown_subcommand(args[0], args[1])
    check_arity(f"client|{sub.decode()}", arities[sub], len(args))
    if sub == b"setname":
        validate_client_name(args[2])

"""String commands: GET, SET and its variants, MGET/MSET, INCR family, APPEND, STRLEN.

Writes, and every conditional or read-modify-write command, become one
state-machine command run through ``backend.execute`` (atomic cluster-wide),
with relative expiries turned into absolute ones from ``backend.clock_ms()``.
Plain reads wait for the session's read barrier and read the local replica.
"""

from __future__ import annotations

from crema.cache.commands import Append, GetDel, IncrBy, MSet, Set, SetCondition, set_unchecked
from crema.errors import CommandError
from crema.server.args import LLONG_MIN, parse_int, wrong_arity
from crema.server.commands.common import execute, now_ms, read_view
from crema.server.commands.table import command
from crema.server.options import Condition, ExpiryKind, parse_set_expire, parse_set_options
from crema.server.resp_reply import OK, ErrorReply, Reply
from crema.server.session import Session

_ALWAYS = SetCondition.ALWAYS
_CONDITIONS = {None: SetCondition.ALWAYS, Condition.NX: SetCondition.NX,
               Condition.XX: SetCondition.XX}  # fmt: skip


def _count_lookup(session: Session, hit: bool) -> None:
    stats = session.server.stats
    if hit:
        stats.keyspace_hits += 1
    else:
        stats.keyspace_misses += 1


@command("get", 2, "readonly fast", (1, 1, 1), group="string", summary="Get the value of a key")
async def get(session: Session, args: list[bytes]) -> Reply:
    sm, now = await read_view(session)
    value = sm.get(args[1], now)
    _count_lookup(session, value is not None)
    return value


@command("set", -3, "write denyoom", (1, 1, 1), group="string",
         summary="Set the string value of a key, with optional expiry and condition")  # fmt: skip
async def set_(session: Session, args: list[bytes]) -> Reply:
    now = now_ms(session)
    if len(args) == 3:  # the common case: no options to parse, every field known valid
        return await execute(session, set_unchecked(args[1], args[2], now, None, _ALWAYS,
                                                    False, False))  # fmt: skip
    opts = parse_set_options(args[3:], now)
    cmd = Set(args[1], args[2], now, opts.expire_at_ms, _CONDITIONS[opts.condition],
              opts.keepttl, opts.get)  # fmt: skip
    return await execute(session, cmd)


async def _set_with_expiry(session: Session, args: list[bytes], kind: ExpiryKind) -> Reply:
    now = now_ms(session)
    name = "setex" if kind is ExpiryKind.EX else "psetex"
    expiry = parse_set_expire(parse_int(args[2]), kind, now, name)
    return await execute(session, Set(args[1], args[3], now, expiry))


@command("setex", 4, "write denyoom", (1, 1, 1), group="string", since="2.0.0",
         summary="Set the value and expiration of a key (seconds)")  # fmt: skip
async def setex(session: Session, args: list[bytes]) -> Reply:
    return await _set_with_expiry(session, args, ExpiryKind.EX)


@command("psetex", 4, "write denyoom", (1, 1, 1), group="string", since="2.6.0",
         summary="Set the value and expiration in milliseconds of a key")  # fmt: skip
async def psetex(session: Session, args: list[bytes]) -> Reply:
    return await _set_with_expiry(session, args, ExpiryKind.PX)


@command("setnx", 3, "write denyoom fast", (1, 1, 1), group="string",
         summary="Set the value of a key, only if the key does not exist")  # fmt: skip
async def setnx(session: Session, args: list[bytes]) -> Reply:
    reply = await execute(session, Set(args[1], args[2], now_ms(session), None, SetCondition.NX))
    if isinstance(reply, ErrorReply):
        return reply
    return 1 if reply == OK else 0


@command("getdel", 2, "write fast", (1, 1, 1), group="string", since="6.2.0",
         summary="Get the value of a key and delete the key")  # fmt: skip
async def getdel(session: Session, args: list[bytes]) -> Reply:
    return await execute(session, GetDel(args[1], now_ms(session)))


@command("mget", -2, "readonly fast", (1, -1, 1), group="string",
         summary="Get the values of all the given keys")  # fmt: skip
async def mget(session: Session, args: list[bytes]) -> Reply:
    sm, now = await read_view(session)
    values: list[Reply] = [sm.get(key, now) for key in args[1:]]
    for value in values:
        _count_lookup(session, value is not None)
    return values


@command("mset", -3, "write denyoom", (1, -1, 2), group="string", since="1.0.1",
         summary="Set multiple keys to multiple values")  # fmt: skip
async def mset(session: Session, args: list[bytes]) -> Reply:
    if len(args) % 2 == 0:
        raise wrong_arity("mset")
    pairs = tuple(zip(args[1::2], args[2::2], strict=True))
    return await execute(session, MSet(pairs, now_ms(session)))


async def _incr(session: Session, key: bytes, delta: int) -> Reply:
    return await execute(session, IncrBy(key, delta, now_ms(session)))


@command("incr", 2, "write denyoom fast", (1, 1, 1), group="string",
         summary="Increment the integer value of a key by one")  # fmt: skip
async def incr(session: Session, args: list[bytes]) -> Reply:
    return await _incr(session, args[1], 1)


@command("decr", 2, "write denyoom fast", (1, 1, 1), group="string",
         summary="Decrement the integer value of a key by one")  # fmt: skip
async def decr(session: Session, args: list[bytes]) -> Reply:
    return await _incr(session, args[1], -1)


@command("incrby", 3, "write denyoom fast", (1, 1, 1), group="string",
         summary="Increment the integer value of a key by the given amount")  # fmt: skip
async def incrby(session: Session, args: list[bytes]) -> Reply:
    return await _incr(session, args[1], parse_int(args[2]))


@command("decrby", 3, "write denyoom fast", (1, 1, 1), group="string",
         summary="Decrement the integer value of a key by the given number")  # fmt: skip
async def decrby(session: Session, args: list[bytes]) -> Reply:
    delta = parse_int(args[2])
    if delta == LLONG_MIN:
        raise CommandError("decrement would overflow")
    return await _incr(session, args[1], -delta)


@command("append", 3, "write denyoom", (1, 1, 1), group="string", since="2.0.0",
         summary="Append a value to a key")  # fmt: skip
async def append(session: Session, args: list[bytes]) -> Reply:
    return await execute(session, Append(args[1], args[2], now_ms(session)))


@command("strlen", 2, "readonly fast", (1, 1, 1), group="string", since="2.2.0",
         summary="Get the length of the value stored in a key")  # fmt: skip
async def strlen(session: Session, args: list[bytes]) -> Reply:
    sm, now = await read_view(session)
    return sm.strlen(args[1], now)

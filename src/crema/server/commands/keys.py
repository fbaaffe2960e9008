"""Keyspace commands: DEL, EXISTS, the EXPIRE and TTL families, TYPE, SCAN, KEYS, DBSIZE, FLUSH."""

from __future__ import annotations

from crema.cache.commands import Clear, Delete, Expire, ExpireCondition, Persist
from crema.server.args import cstr, syntax_error
from crema.server.commands.common import execute, now_ms, read_view
from crema.server.commands.table import command
from crema.server.options import parse_expire_options, parse_expire_time, parse_scan_cursor
from crema.server.options import parse_scan_options as _parse_scan_options
from crema.server.resp_reply import Reply, SimpleString
from crema.server.session import Session


@command("del", -2, "write", (1, -1, 1), group="generic", summary="Delete keys")
async def del_(session: Session, args: list[bytes]) -> Reply:
    return await execute(session, Delete(tuple(args[1:]), now_ms(session)))


@command("unlink", -2, "write fast", (1, -1, 1), group="generic", since="4.0.0",
         summary="Delete keys (the same as DEL in crema)")  # fmt: skip
async def unlink(session: Session, args: list[bytes]) -> Reply:
    return await del_(session, args)


@command("exists", -2, "readonly fast", (1, -1, 1), group="generic",
         summary="Count how many of the given keys exist (repeats count again)")  # fmt: skip
async def exists(session: Session, args: list[bytes]) -> Reply:
    sm, now = await read_view(session)
    return sum(1 for key in args[1:] if sm.contains(key, now))


async def _expire(session: Session, args: list[bytes], *, seconds: bool, relative: bool) -> Reply:
    name = cstr(args[0]).lower().decode("ascii", "replace")
    flags = ExpireCondition.ALWAYS
    for option in parse_expire_options(args[3:]):
        flags |= ExpireCondition[option.value]
    now = now_ms(session)
    when = parse_expire_time(args[2], seconds=seconds, basetime_ms=now if relative else 0,
                             command=name)  # fmt: skip
    return await execute(session, Expire(args[1], when, now, flags))


@command("expire", -3, "write fast", (1, 1, 1), group="generic",
         summary="Set a key's time to live in seconds")  # fmt: skip
async def expire(session: Session, args: list[bytes]) -> Reply:
    return await _expire(session, args, seconds=True, relative=True)


@command("pexpire", -3, "write fast", (1, 1, 1), group="generic", since="2.6.0",
         summary="Set a key's time to live in milliseconds")  # fmt: skip
async def pexpire(session: Session, args: list[bytes]) -> Reply:
    return await _expire(session, args, seconds=False, relative=True)


@command("expireat", -3, "write fast", (1, 1, 1), group="generic", since="1.2.0",
         summary="Set the expiration for a key as a UNIX timestamp")  # fmt: skip
async def expireat(session: Session, args: list[bytes]) -> Reply:
    return await _expire(session, args, seconds=True, relative=False)


@command("pexpireat", -3, "write fast", (1, 1, 1), group="generic", since="2.6.0",
         summary="Set the expiration for a key as a UNIX timestamp in milliseconds")  # fmt: skip
async def pexpireat(session: Session, args: list[bytes]) -> Reply:
    return await _expire(session, args, seconds=False, relative=False)


def _rounded_seconds(ms: int) -> int:
    """Seconds as Redis's ttlGenericCommand rounds them: ``(ms + 500) / 1000``."""
    return ms if ms < 0 else (ms + 500) // 1000


@command("ttl", 2, "readonly fast", (1, 1, 1), group="generic",
         summary="Get the time to live for a key in seconds")  # fmt: skip
async def ttl(session: Session, args: list[bytes]) -> Reply:
    sm, now = await read_view(session)
    return _rounded_seconds(sm.ttl_ms(args[1], now))


@command("pttl", 2, "readonly fast", (1, 1, 1), group="generic", since="2.6.0",
         summary="Get the time to live for a key in milliseconds")  # fmt: skip
async def pttl(session: Session, args: list[bytes]) -> Reply:
    sm, now = await read_view(session)
    return sm.ttl_ms(args[1], now)


@command("expiretime", 2, "readonly fast", (1, 1, 1), group="generic", since="7.0.0",
         summary="Get the expiration Unix timestamp for a key")  # fmt: skip
async def expiretime(session: Session, args: list[bytes]) -> Reply:
    sm, now = await read_view(session)
    return _rounded_seconds(sm.expire_time_ms(args[1], now))


@command("pexpiretime", 2, "readonly fast", (1, 1, 1), group="generic", since="7.0.0",
         summary="Get the expiration Unix timestamp for a key in milliseconds")  # fmt: skip
async def pexpiretime(session: Session, args: list[bytes]) -> Reply:
    sm, now = await read_view(session)
    return sm.expire_time_ms(args[1], now)


@command("persist", 2, "write fast", (1, 1, 1), group="generic", since="2.2.0",
         summary="Remove the expiration from a key")  # fmt: skip
async def persist(session: Session, args: list[bytes]) -> Reply:
    return await execute(session, Persist(args[1], now_ms(session)))


@command("type", 2, "readonly fast", (1, 1, 1), group="generic",
         summary="Determine the type stored at key")  # fmt: skip
async def type_(session: Session, args: list[bytes]) -> Reply:
    sm, now = await read_view(session)
    return SimpleString(sm.type(args[1], now))


@command("dbsize", 1, "readonly fast", group="server",
         summary="Return the number of keys (expired ones not yet purged included)")  # fmt: skip
async def dbsize(session: Session, args: list[bytes]) -> Reply:
    await session.read_ready()
    return len(session.server.backend.state_machine)


async def _flush(session: Session, args: list[bytes]) -> Reply:
    if len(args) > 2 or (len(args) == 2 and cstr(args[1]).upper() not in (b"ASYNC", b"SYNC")):
        raise syntax_error()
    return await execute(session, Clear(now_ms(session)))


@command("flushdb", -1, "write", group="server", summary="Remove all keys")
async def flushdb(session: Session, args: list[bytes]) -> Reply:
    return await _flush(session, args)


@command("flushall", -1, "write", group="server", summary="Remove all keys")
async def flushall(session: Session, args: list[bytes]) -> Reply:
    return await _flush(session, args)


@command("scan", -2, "readonly", group="generic", since="2.8.0",
         summary="Incrementally iterate the keys space")  # fmt: skip
async def scan(session: Session, args: list[bytes]) -> Reply:
    cursor = parse_scan_cursor(args[1])
    opts = _parse_scan_options(args[2:])
    sm, now = await read_view(session)
    next_cursor, keys = sm.scan(cursor, now, opts.match, opts.count)
    if opts.type is not None and opts.type.lower() != b"string":
        keys = []
    return [b"%d" % next_cursor, list[Reply](keys)]


@command("keys", 2, "readonly", group="generic",
         summary="Find all keys matching the given pattern")  # fmt: skip
async def keys(session: Session, args: list[bytes]) -> Reply:
    sm, now = await read_view(session)
    return list[Reply](sm.keys(args[1], now))

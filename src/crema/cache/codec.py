"""Versioned msgpack encoding of commands for Raft log entries (layer L0).

An encoded command is one msgpack array::

    [version, opcode, now_ms, field, ...]

with ``version`` = :data:`VERSION`, keys and values as msgpack ``bin``, and
absent optional values as ``nil``. The per-opcode fields are:

======  =========  ===================================================
opcode  command    fields after ``now_ms``
======  =========  ===================================================
0       Noop       (none)
1       Set        key, value, expiry_ms | nil, condition, flags
                   (bit 0 = keep_ttl, bit 1 = get)
2       Delete     [key, ...]
3       Clear      (none)
4       Expire     key, expiry_ms, condition
5       Persist    key
6       IncrBy     key, delta
7       Append     key, value
8       GetDel     key
9       MSet       [key, value, key, value, ...]
======  =========  ===================================================

Decoding is strict: anything else (another version, an unknown opcode, a
missing or extra field, a ``str`` where ``bin`` is expected, a ``bool`` where an
integer is expected, trailing bytes, input over :data:`MAX_COMMAND_BYTES`)
raises :class:`crema.errors.CommandDecodeError`. Pickle is never used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import msgpack

from crema.cache.commands import (
    EXPIRE_CONDITIONS,
    INT64_MAX,
    INT64_MIN,
    Append,
    Clear,
    Command,
    Delete,
    Expire,
    ExpireCondition,
    GetDel,
    IncrBy,
    MSet,
    Noop,
    Persist,
    Set,
    SetCondition,
    set_unchecked,
)
from crema.errors import CommandDecodeError, CommandTooLargeError

VERSION: Final = 1
"""The encoding version written first in every command."""

MAX_COMMAND_BYTES: Final = 16 * 1024 * 1024
"""Largest encoded command accepted by :func:`encode_command` and :func:`decode_command`."""

MAX_KEYS_PER_COMMAND: Final = 1 << 20
"""Most keys one ``Delete`` or ``MSet`` may carry."""

_KEEP_TTL: Final = 1
_GET: Final = 2

_PACK = msgpack.Packer(use_bin_type=True).pack
"""One reused packer (``pack`` runs in C under the GIL and resets after each call)."""

_UNPACK_ERRORS = (ValueError, TypeError, OverflowError, msgpack.UnpackException)


def _set_fields(c: Set) -> list[object]:
    flags = (_KEEP_TTL if c.keep_ttl else 0) | (_GET if c.get else 0)
    return [1, c.now_ms, c.key, c.value, c.expiry_ms, int(c.condition), flags]


def _fields(command: Command) -> list[object]:  # noqa: PLR0911 - one return per opcode
    match command:
        case Set():
            return _set_fields(command)
        case Noop():
            return [0, command.now_ms]
        case Delete():
            return [2, command.now_ms, list(command.keys)]
        case Clear():
            return [3, command.now_ms]
        case Expire():
            return [4, command.now_ms, command.key, command.expiry_ms, int(command.condition)]
        case Persist():
            return [5, command.now_ms, command.key]
        case IncrBy():
            return [6, command.now_ms, command.key, command.delta]
        case Append():
            return [7, command.now_ms, command.key, command.value]
        case GetDel():
            return [8, command.now_ms, command.key]
        case MSet():
            flat = [item for pair in command.pairs for item in pair]
            return [9, command.now_ms, flat]
    raise TypeError(f"not a command: {type(command).__name__}")


def encode_command(command: Command) -> bytes:
    """Encode ``command`` as the data of a Raft log entry.

    Raises:
        CommandTooLargeError: the encoding exceeds :data:`MAX_COMMAND_BYTES`
            (the command cannot be proposed; nothing was applied).
        TypeError: ``command`` is not a command.
    """
    data: bytes
    if type(command) is Set:  # the hot path: one list, the reused packer
        c = command
        flags = (_KEEP_TTL if c.keep_ttl else 0) | (_GET if c.get else 0)
        # SetCondition is an IntEnum: it packs as its int value.
        data = _PACK([VERSION, 1, c.now_ms, c.key, c.value, c.expiry_ms, c.condition, flags])
    else:
        count = _key_count(command)
        if count > MAX_KEYS_PER_COMMAND:
            raise CommandTooLargeError(count, MAX_KEYS_PER_COMMAND, "keys")
        data = _PACK([VERSION, *_fields(command)])
    if len(data) > MAX_COMMAND_BYTES:
        raise CommandTooLargeError(len(data), MAX_COMMAND_BYTES)
    return data


def _key_count(command: Command) -> int:
    if isinstance(command, Delete):
        return len(command.keys)
    if isinstance(command, MSet):
        return len(command.pairs)
    return 1


def _int(value: object, name: str) -> int:
    if type(value) is not int:
        raise CommandDecodeError(f"{name}: expected an integer, got {type(value).__name__}")
    return value


def _key_tuple(value: object) -> tuple[bytes, ...]:
    if type(value) is not tuple:
        raise CommandDecodeError(f"keys: expected an array, got {type(value).__name__}")
    return value


def _decode_set(f: tuple[object, ...], now_ms: int) -> Set:
    # The hot path: every check of Set.__post_init__, inline.
    key, value, expiry, condition, flags = f
    if type(key) is not bytes or type(value) is not bytes:
        raise CommandDecodeError("SET: key and value must be bin")
    if expiry is not None and (type(expiry) is not int or not INT64_MIN <= expiry <= INT64_MAX):
        raise CommandDecodeError(f"SET: bad expiry_ms {expiry!r}")
    if type(condition) is not int or not 0 <= condition < len(_SET_CONDITIONS):
        raise CommandDecodeError(f"SET: bad condition {condition!r}")
    if type(flags) is not int or flags & ~(_KEEP_TTL | _GET):
        raise CommandDecodeError(f"SET: bad flags {flags!r}")
    keep_ttl = bool(flags & _KEEP_TTL)
    if keep_ttl and expiry is not None:
        raise CommandDecodeError("SET: keep_ttl with an expiry")
    return set_unchecked(
        key, value, now_ms, expiry, _SET_CONDITIONS[condition], keep_ttl, bool(flags & _GET)
    )


_SET_CONDITIONS: Final = tuple(SetCondition)


_EXPIRE_BY_VALUE: Final = {int(c): c for c in EXPIRE_CONDITIONS}


def _expire_condition(value: object) -> ExpireCondition:
    condition = _EXPIRE_BY_VALUE.get(_int(value, "condition"))
    if condition is None:
        raise CommandDecodeError(f"EXPIRE: bad condition {value!r}")
    return condition


def _decode_mset(f: tuple[object, ...]) -> tuple[tuple[bytes, bytes], ...]:
    (flat,) = f
    items = _key_tuple(flat)
    if len(items) % 2:
        raise CommandDecodeError("MSet: odd number of items")
    return tuple(zip(items[0::2], items[1::2], strict=True))


_Builder = Callable[[tuple[object, ...], int], Command]

_ARITY: Final = {0: 0, 1: 5, 2: 1, 3: 0, 4: 3, 5: 1, 6: 2, 7: 2, 8: 1, 9: 1}

# Each builder receives the fields after now_ms (their count already checked).
_BUILDERS: Final[dict[int, _Builder]] = {
    0: lambda f, now: Noop(now),
    1: _decode_set,
    2: lambda f, now: Delete(_key_tuple(f[0]), now),
    3: lambda f, now: Clear(now),
    4: lambda f, now: Expire(
        f[0],  # type: ignore[arg-type]
        _int(f[1], "expiry_ms"),
        now,
        _expire_condition(f[2]),
    ),
    5: lambda f, now: Persist(f[0], now),  # type: ignore[arg-type]
    6: lambda f, now: IncrBy(f[0], _int(f[1], "delta"), now),  # type: ignore[arg-type]
    7: lambda f, now: Append(f[0], f[1], now),  # type: ignore[arg-type]
    8: lambda f, now: GetDel(f[0], now),  # type: ignore[arg-type]
    9: lambda f, now: MSet(_decode_mset(f), now),
}


def decode_command(data: bytes | bytearray | memoryview) -> Command:
    """Decode the data of a Raft log entry back into a command.

    Args:
        data: bytes written by :func:`encode_command`.

    Returns:
        The command, equal to the one encoded.

    Raises:
        CommandDecodeError: ``data`` is not exactly one valid encoded command.
    """
    if len(data) > MAX_COMMAND_BYTES:
        raise CommandDecodeError(f"{len(data)} bytes exceeds the limit of {MAX_COMMAND_BYTES}")
    try:
        obj = msgpack.unpackb(
            data,
            raw=False,
            use_list=False,
            strict_map_key=True,
            max_str_len=0,
            max_map_len=0,
            max_ext_len=0,
            max_array_len=2 * MAX_KEYS_PER_COMMAND,
        )
    except _UNPACK_ERRORS as exc:
        raise CommandDecodeError(f"not valid msgpack ({exc})") from exc
    if type(obj) is not tuple or len(obj) < 3:
        raise CommandDecodeError("expected an array [version, opcode, now_ms, ...]")
    version, opcode, now_ms = _int(obj[0], "version"), _int(obj[1], "opcode"), obj[2]
    if version != VERSION:
        raise CommandDecodeError(f"unknown version {version}")
    arity = _ARITY.get(opcode)
    if arity is None:
        raise CommandDecodeError(f"unknown opcode {opcode}")
    fields = obj[3:]
    if len(fields) != arity:
        raise CommandDecodeError(f"opcode {opcode}: expected {arity} fields, got {len(fields)}")
    if type(now_ms) is not int or not 0 <= now_ms <= INT64_MAX:
        raise CommandDecodeError(f"bad now_ms {now_ms!r}")
    try:
        command = _BUILDERS[opcode](fields, now_ms)
    except CommandDecodeError:
        raise
    except (TypeError, ValueError) as exc:
        raise CommandDecodeError(f"opcode {opcode}: {exc}") from exc
    count = _key_count(command)
    if count > MAX_KEYS_PER_COMMAND:
        raise CommandDecodeError(f"{count} keys exceeds the limit of {MAX_KEYS_PER_COMMAND}")
    return command

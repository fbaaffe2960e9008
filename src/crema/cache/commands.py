"""The state-changing commands of the replicated cache (layer L0).

Every write that reaches the cache goes through the Raft log as one of these
values, encoded by :mod:`crema.cache.codec`. Each command is decided *inside*
the state machine, so conditional and read-modify-write operations (``SET
NX``, ``INCRBY``, ``EXPIRE GT``, ...) are atomic cluster-wide.

Invariants, checked once when a command is built (also when decoded):

- ``now_ms`` is the leader-stamped wall clock in Unix milliseconds,
  ``0 <= now_ms < 2**63``. The state machine never reads a clock; this is the
  only time it knows.
- TTLs are already absolute: ``expiry_ms`` is Unix milliseconds computed when
  the command was created (``now_ms + ttl``). Any signed 64-bit value is
  accepted; one at or before ``now_ms`` deletes the key (as Redis does for an
  expiry in the past).
- keys and values are ``bytes``; integers fit a signed 64-bit word.

Building a command with bad fields is misuse by the caller and raises
``TypeError`` or ``ValueError``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


class SetCondition(enum.IntEnum):
    """When ``SET`` writes: always, only if the key is missing, or only if present."""

    ALWAYS = 0
    NX = 1
    """Only set the key if it does not exist."""
    XX = 2
    """Only set the key if it already exists."""


class ExpireCondition(enum.IntFlag):
    """The ``EXPIRE`` options of Redis 7, combinable as Redis allows.

    ``XX`` may be combined with ``GT`` or ``LT`` (``XX | LT``); ``NX`` stands
    alone and ``GT`` excludes ``LT`` (see :data:`EXPIRE_CONDITIONS`). A key
    without a TTL counts as having an infinite TTL for ``GT`` and ``LT``.
    """

    ALWAYS = 0
    NX = 1
    """Only if the key has no expiry."""
    XX = 2
    """Only if the key has an expiry."""
    GT = 4
    """Only if the new expiry is greater than the current one."""
    LT = 8
    """Only if the new expiry is less than the current one."""


EXPIRE_CONDITIONS: tuple[ExpireCondition, ...] = (
    ExpireCondition.ALWAYS,
    ExpireCondition.NX,
    ExpireCondition.XX,
    ExpireCondition.GT,
    ExpireCondition.LT,
    ExpireCondition.XX | ExpireCondition.GT,
    ExpireCondition.XX | ExpireCondition.LT,
)
"""Every combination of EXPIRE options that Redis 7 accepts."""

_VALID_EXPIRE_FLAGS = frozenset(int(c) for c in EXPIRE_CONDITIONS)


def _check_int(name: str, value: object, low: int = INT64_MIN, high: int = INT64_MAX) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name} out of range [{low}, {high}]: {value}")


def _check_bytes(name: str, value: object) -> None:
    if type(value) is not bytes:
        raise TypeError(f"{name} must be bytes, got {type(value).__name__}")


def _check_now(now_ms: object) -> None:
    _check_int("now_ms", now_ms, 0)


def _check_expiry(expiry_ms: object) -> None:
    if expiry_ms is not None:
        _check_int("expiry_ms", expiry_ms)


def _check_keys(keys: object) -> None:
    if not isinstance(keys, tuple):
        raise TypeError(f"keys must be a tuple, got {type(keys).__name__}")
    if not keys:
        raise ValueError("keys must not be empty")
    for key in keys:
        _check_bytes("key", key)


@dataclass(frozen=True, slots=True)
class Noop:
    """Does nothing but advance the applied index (and purge expired keys).

    Result: ``None``.
    """

    now_ms: int

    def __post_init__(self) -> None:
        _check_now(self.now_ms)


@dataclass(frozen=True, slots=True)
class Set:
    """``SET key value [NX|XX] [GET] [PXAT expiry_ms|KEEPTTL]``.

    Without ``keep_ttl`` the key's TTL becomes ``expiry_ms`` (None removes it).
    With ``keep_ttl`` an existing key keeps its TTL (a new key gets none).

    Result: without ``get``, ``OK`` when the key was written, ``None`` when
    the condition failed. With ``get``, the previous value (``None`` if the
    key was missing), whether or not the condition let the write happen.
    """

    key: bytes
    value: bytes
    now_ms: int
    expiry_ms: int | None = None
    condition: SetCondition = SetCondition.ALWAYS
    keep_ttl: bool = False
    get: bool = False

    def __post_init__(self) -> None:
        _check_bytes("key", self.key)
        _check_bytes("value", self.value)
        _check_now(self.now_ms)
        _check_expiry(self.expiry_ms)
        if not isinstance(self.condition, SetCondition):
            raise TypeError("condition must be a SetCondition")
        if type(self.keep_ttl) is not bool or type(self.get) is not bool:
            raise TypeError("keep_ttl and get must be bool")
        if self.keep_ttl and self.expiry_ms is not None:
            raise ValueError("keep_ttl and expiry_ms are mutually exclusive")


_SET_KEY, _SET_VALUE, _SET_NOW, _SET_EXPIRY, _SET_COND, _SET_KEEP, _SET_GET = (
    Set.__dict__[name].__set__
    for name in ("key", "value", "now_ms", "expiry_ms", "condition", "keep_ttl", "get")
)
_new = object.__new__


def set_unchecked(
    key: bytes,
    value: bytes,
    now_ms: int,
    expiry_ms: int | None,
    condition: SetCondition,
    keep_ttl: bool,
    get: bool,
) -> Set:
    """Build a :class:`Set` without running its checks (the decoder's hot path).

    Only for callers that have already checked every field exactly as
    ``Set.__post_init__`` does; frozen-dataclass construction costs several
    microseconds per command, which matters at hundreds of thousands per second.
    """
    command: Set = _new(Set)
    _SET_KEY(command, key)
    _SET_VALUE(command, value)
    _SET_NOW(command, now_ms)
    _SET_EXPIRY(command, expiry_ms)
    _SET_COND(command, condition)
    _SET_KEEP(command, keep_ttl)
    _SET_GET(command, get)
    return command


@dataclass(frozen=True, slots=True)
class Delete:
    """``DEL key [key ...]``. Result: how many of the keys existed (``int``)."""

    keys: tuple[bytes, ...]
    now_ms: int

    def __post_init__(self) -> None:
        _check_keys(self.keys)
        _check_now(self.now_ms)


@dataclass(frozen=True, slots=True)
class Clear:
    """``FLUSHDB`` / ``FLUSHALL``: remove every key. Result: ``OK``."""

    now_ms: int

    def __post_init__(self) -> None:
        _check_now(self.now_ms)


@dataclass(frozen=True, slots=True)
class Expire:
    """``PEXPIREAT key expiry_ms [NX|XX|GT|LT]`` (every EXPIRE variant).

    An expiry at or before ``now_ms`` deletes the key once the condition
    holds. Result: ``1`` if the expiry was set (or the key deleted), ``0``
    if the key is missing or the condition failed.
    """

    key: bytes
    expiry_ms: int
    now_ms: int
    condition: ExpireCondition = ExpireCondition.ALWAYS

    def __post_init__(self) -> None:
        _check_bytes("key", self.key)
        _check_int("expiry_ms", self.expiry_ms)
        _check_now(self.now_ms)
        if not isinstance(self.condition, ExpireCondition):
            raise TypeError("condition must be an ExpireCondition")
        if int(self.condition) not in _VALID_EXPIRE_FLAGS:
            raise ValueError(f"incompatible EXPIRE options: {self.condition!r}")


@dataclass(frozen=True, slots=True)
class Persist:
    """``PERSIST key``. Result: ``1`` if a TTL was removed, else ``0``."""

    key: bytes
    now_ms: int

    def __post_init__(self) -> None:
        _check_bytes("key", self.key)
        _check_now(self.now_ms)


@dataclass(frozen=True, slots=True)
class IncrBy:
    """``INCRBY key delta`` (also INCR, DECR, DECRBY). The key keeps its TTL.

    Result: the new value (``int``), or a :class:`CommandFailure` when the
    stored value is not a 64-bit integer or the result would overflow.
    """

    key: bytes
    delta: int
    now_ms: int

    def __post_init__(self) -> None:
        _check_bytes("key", self.key)
        _check_int("delta", self.delta)
        _check_now(self.now_ms)


@dataclass(frozen=True, slots=True)
class Append:
    """``APPEND key value``; creates the key if missing, keeps its TTL.

    Result: the length of the value after the append (``int``).
    """

    key: bytes
    value: bytes
    now_ms: int

    def __post_init__(self) -> None:
        _check_bytes("key", self.key)
        _check_bytes("value", self.value)
        _check_now(self.now_ms)


@dataclass(frozen=True, slots=True)
class GetDel:
    """``GETDEL key``. Result: the removed value, or ``None`` if missing."""

    key: bytes
    now_ms: int

    def __post_init__(self) -> None:
        _check_bytes("key", self.key)
        _check_now(self.now_ms)


@dataclass(frozen=True, slots=True)
class MSet:
    """``MSET key value [key value ...]``, in order; every key loses its TTL.

    Result: ``OK``.
    """

    pairs: tuple[tuple[bytes, bytes], ...]
    now_ms: int

    def __post_init__(self) -> None:
        if not isinstance(self.pairs, tuple):
            raise TypeError(f"pairs must be a tuple, got {type(self.pairs).__name__}")
        if not self.pairs:
            raise ValueError("pairs must not be empty")
        for pair in self.pairs:
            if not isinstance(pair, tuple) or len(pair) != 2:
                raise TypeError("each pair must be a (key, value) tuple")
            _check_bytes("key", pair[0])
            _check_bytes("value", pair[1])
        _check_now(self.now_ms)


Command = Noop | Set | Delete | Clear | Expire | Persist | IncrBy | Append | GetDel | MSet
"""Every state-changing command."""

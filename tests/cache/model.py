"""A naive reference model of the commands: a dict, no purge, no eviction."""

from __future__ import annotations

from crema.cache.commands import (
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
)
from crema.cache.results import NOT_AN_INTEGER, OK, OVERFLOW, CommandFailure, Result

Model = dict[bytes, tuple[bytes, int | None]]


def _live(model: Model, key: bytes, now: int) -> tuple[bytes, int | None] | None:
    entry = model.get(key)
    if entry is None or (entry[1] is not None and entry[1] <= now):
        return None
    return entry


def _store(model: Model, key: bytes, value: bytes, expiry: int | None, now: int) -> None:
    model.pop(key, None)
    if expiry is None or expiry > now:
        model[key] = (value, expiry)


def _to_int(raw: bytes) -> int | None:
    # Written independently of parse_int64: canonical form round-trips.
    try:
        text = raw.decode("ascii")
        value = int(text)
    except (UnicodeDecodeError, ValueError):
        return None
    if str(value) != text or not INT64_MIN <= value <= INT64_MAX:
        return None
    return value


def model_apply(model: Model, c: Command, now: int) -> Result:  # noqa: PLR0911
    """Apply ``c`` at time ``now`` to ``model`` the obvious way; return the result."""
    if isinstance(c, Noop):
        return None
    if isinstance(c, Clear):
        model.clear()
        return OK
    if isinstance(c, MSet):
        for key, value in c.pairs:
            _store(model, key, value, None, now)
        return OK
    if isinstance(c, Delete):
        count = 0
        for key in c.keys:
            count += _live(model, key, now) is not None
            model.pop(key, None)
        return count
    entry = _live(model, c.key, now)
    if isinstance(c, Set):
        old = entry[0] if entry else None
        exists = entry is not None
        if (c.condition == SetCondition.NX and exists) or (
            c.condition == SetCondition.XX and not exists
        ):
            return old if c.get else None
        expiry = entry[1] if (c.keep_ttl and entry) else c.expiry_ms
        _store(model, c.key, c.value, expiry, now)
        return old if c.get else OK
    if isinstance(c, GetDel):
        model.pop(c.key, None)
        return entry[0] if entry else None
    if entry is None and isinstance(c, Expire | Persist):
        return 0
    if isinstance(c, Expire):
        assert entry is not None
        cur = entry[1]
        inf = INT64_MAX + 1  # no TTL compares as infinite
        deadline = inf if cur is None else cur
        rules = [
            (ExpireCondition.NX, cur is None),
            (ExpireCondition.XX, cur is not None),
            (ExpireCondition.GT, c.expiry_ms > deadline),
            (ExpireCondition.LT, c.expiry_ms < deadline),
        ]
        ok = all(holds for flag, holds in rules if flag in c.condition)
        if ok:
            _store(model, c.key, entry[0], c.expiry_ms, now)
        return int(ok)
    if isinstance(c, Persist):
        assert entry is not None
        if entry[1] is None:
            return 0
        model[c.key] = (entry[0], None)
        return 1
    if isinstance(c, IncrBy):
        current = 0 if entry is None else _to_int(entry[0])
        if current is None:
            return CommandFailure(NOT_AN_INTEGER)
        if not INT64_MIN <= current + c.delta <= INT64_MAX:
            return CommandFailure(OVERFLOW)
        _store(model, c.key, str(current + c.delta).encode(), entry and entry[1], now)
        return current + c.delta
    assert isinstance(c, Append)
    value = (entry[0] if entry else b"") + c.value
    _store(model, c.key, value, entry[1] if entry else None, now)
    return len(value)

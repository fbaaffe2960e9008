"""Semantics of every command, mirroring Redis 7."""

from __future__ import annotations

import pytest

from crema.cache import CacheStateMachine, encode_command, parse_int64, state_machine
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
from crema.errors import CommandDecodeError

NX, XX = SetCondition.NX, SetCondition.XX
XX_LT = ExpireCondition.XX | ExpireCondition.LT
XX_GT = ExpireCondition.XX | ExpireCondition.GT
T = 1_000_000  # a "now" far from 0


class Machine:
    """A state machine plus an index counter, for terse tests."""

    def __init__(self, capacity: int | None = None) -> None:
        self.sm = CacheStateMachine(capacity)
        self.index = 0

    def __call__(self, command: Command) -> Result:
        self.index += 1
        return self.sm.apply(self.index, 1, command)


@pytest.fixture
def m() -> Machine:
    return Machine()


# ---------------------------------------------------------------- SET


def test_set_and_get(m: Machine) -> None:
    assert m(Set(b"k", b"v", T)) is OK
    assert m.sm.get(b"k", T) == b"v"
    assert m.sm.ttl_ms(b"k", T) == -1
    assert m.sm.type(b"k", T) == "string"
    assert m.sm.type(b"x", T) == "none"


def test_set_with_expiry_and_plain_set_clears_ttl(m: Machine) -> None:
    m(Set(b"k", b"v", T, expiry_ms=T + 5000))
    assert m.sm.ttl_ms(b"k", T + 1000) == 4000
    assert m.sm.expire_time_ms(b"k", T) == T + 5000
    m(Set(b"k", b"w", T + 1))
    assert m.sm.ttl_ms(b"k", T + 1) == -1


def test_set_keepttl(m: Machine) -> None:
    m(Set(b"k", b"v", T, expiry_ms=T + 5000))
    assert m(Set(b"k", b"w", T + 10, keep_ttl=True)) is OK
    assert m.sm.get(b"k", T + 10) == b"w"
    assert m.sm.expire_time_ms(b"k", T + 10) == T + 5000
    m(Set(b"new", b"v", T, keep_ttl=True))
    assert m.sm.ttl_ms(b"new", T) == -1


def test_set_nx_xx(m: Machine) -> None:
    assert m(Set(b"k", b"v", T, condition=XX)) is None
    assert not m.sm.contains(b"k", T)
    assert m(Set(b"k", b"v", T, condition=NX)) is OK
    assert m(Set(b"k", b"w", T, condition=NX)) is None
    assert m.sm.get(b"k", T) == b"v"
    assert m(Set(b"k", b"w", T, condition=XX)) is OK
    assert m.sm.get(b"k", T) == b"w"


def test_set_get(m: Machine) -> None:
    assert m(Set(b"k", b"v", T, get=True)) is None  # missing key: nil, still set
    assert m.sm.get(b"k", T) == b"v"
    assert m(Set(b"k", b"w", T, get=True)) == b"v"
    # NX + GET on an existing key: returns the old value, does not write.
    assert m(Set(b"k", b"z", T, condition=NX, get=True)) == b"w"
    assert m.sm.get(b"k", T) == b"w"
    # XX + GET on a missing key: nil, nothing written.
    assert m(Set(b"m", b"z", T, condition=XX, get=True)) is None
    assert not m.sm.contains(b"m", T)


def test_set_with_past_expiry_deletes(m: Machine) -> None:
    m(Set(b"k", b"v", T))
    assert m(Set(b"k", b"w", T, expiry_ms=T, get=True)) == b"v"
    assert not m.sm.contains(b"k", T)
    assert len(m.sm) == 0


def test_expired_key_is_missing_for_commands(m: Machine) -> None:
    m(Set(b"k", b"v", T, expiry_ms=T + 10))
    assert m(Set(b"k", b"w", T + 10, condition=NX)) is OK
    assert m.sm.ttl_ms(b"k", T + 10) == -1


# --------------------------------------------------------- reads and time


def test_reads_hide_expired_by_caller_clock(m: Machine) -> None:
    m(Set(b"k", b"v", T, expiry_ms=T + 10))
    assert m.sm.get(b"k", T + 9) == b"v"
    assert m.sm.ttl_ms(b"k", T + 9) == 1
    assert m.sm.get(b"k", T + 10) is None
    assert m.sm.ttl_ms(b"k", T + 10) == -2
    assert m.sm.expire_time_ms(b"k", T + 10) == -2
    assert m.sm.strlen(b"k", T + 10) == 0
    assert m.sm.keys(b"*", T + 10) == []
    assert len(m.sm) == 1  # not purged yet: DBSIZE counts it
    assert m.sm.count_live(T + 10) == 0


def test_strlen(m: Machine) -> None:
    m(Set(b"k", b"hello", T))
    assert m.sm.strlen(b"k", T) == 5
    assert m.sm.strlen(b"nope", T) == 0


# ---------------------------------------------------------------- DEL etc.


def test_delete_counts_live_keys(m: Machine) -> None:
    m(MSet(((b"a", b"1"), (b"b", b"2")), T))
    m(Set(b"c", b"3", T, expiry_ms=T + 1))
    assert m(Delete((b"a", b"a", b"c", b"zz"), T + 5)) == 1
    assert len(m.sm) == 1  # the expired c went too
    assert m.sm.keys(b"*", T + 5) == [b"b"]


def test_clear(m: Machine) -> None:
    m(MSet(((b"a", b"1"), (b"b", b"2")), T))
    assert m(Clear(T)) is OK
    assert len(m.sm) == 0
    assert m(Set(b"a", b"x", T)) is OK


def test_getdel(m: Machine) -> None:
    m(Set(b"k", b"v", T))
    assert m(GetDel(b"k", T)) == b"v"
    assert m(GetDel(b"k", T)) is None
    m(Set(b"e", b"v", T, expiry_ms=T + 1))
    assert m(GetDel(b"e", T + 1)) is None


def test_mset_clears_ttls_and_last_wins(m: Machine) -> None:
    m(Set(b"a", b"v", T, expiry_ms=T + 100))
    assert m(MSet(((b"a", b"1"), (b"b", b"2"), (b"a", b"3")), T)) is OK
    assert m.sm.get(b"a", T) == b"3"
    assert m.sm.ttl_ms(b"a", T) == -1
    assert m.sm.keys(b"*", T) == [b"b", b"a"]


# ------------------------------------------------------------ EXPIRE family


def _ttl_setup(m: Machine) -> None:
    m(Set(b"ttl", b"v", T, expiry_ms=T + 1000))
    m(Set(b"plain", b"v", T))


@pytest.mark.parametrize(
    ("key", "condition", "expiry", "result", "expected_time"),
    [
        (b"missing", ExpireCondition.ALWAYS, T + 5, 0, -2),
        (b"ttl", ExpireCondition.ALWAYS, T + 5, 1, T + 5),
        (b"plain", ExpireCondition.ALWAYS, T + 5, 1, T + 5),
        (b"ttl", ExpireCondition.NX, T + 5, 0, T + 1000),
        (b"plain", ExpireCondition.NX, T + 5, 1, T + 5),
        (b"ttl", ExpireCondition.XX, T + 5, 1, T + 5),
        (b"plain", ExpireCondition.XX, T + 5, 0, -1),
        (b"ttl", ExpireCondition.GT, T + 2000, 1, T + 2000),
        (b"ttl", ExpireCondition.GT, T + 1000, 0, T + 1000),
        (b"ttl", ExpireCondition.GT, T + 5, 0, T + 1000),
        (b"plain", ExpireCondition.GT, T + 5, 0, -1),  # no TTL = infinite
        (b"ttl", ExpireCondition.LT, T + 5, 1, T + 5),
        (b"ttl", ExpireCondition.LT, T + 1000, 0, T + 1000),
        (b"ttl", ExpireCondition.LT, T + 2000, 0, T + 1000),
        (b"plain", ExpireCondition.LT, T + 5, 1, T + 5),  # infinite > anything
        (b"plain", XX_LT, T + 5, 0, -1),  # XX first: no TTL, no change
        (b"ttl", XX_LT, T + 5, 1, T + 5),
        (b"ttl", XX_LT, T + 2000, 0, T + 1000),
        (b"plain", XX_GT, T + 5, 0, -1),
        (b"ttl", XX_GT, T + 2000, 1, T + 2000),
    ],
)
def test_expire_conditions(
    m: Machine,
    key: bytes,
    condition: ExpireCondition,
    expiry: int,
    result: int,
    expected_time: int,
) -> None:
    _ttl_setup(m)
    assert m(Expire(key, expiry, T, condition)) == result
    assert m.sm.expire_time_ms(key, T) == expected_time


def test_expire_in_the_past_deletes_once_condition_holds(m: Machine) -> None:
    _ttl_setup(m)
    assert m(Expire(b"plain", T - 1, T, ExpireCondition.GT)) == 0
    assert m.sm.contains(b"plain", T)
    assert m(Expire(b"plain", T, T)) == 1  # at now counts as past
    assert not m.sm.contains(b"plain", T)
    assert m(Expire(b"ttl", -5, T, ExpireCondition.LT)) == 1
    assert len(m.sm) == 0


@pytest.mark.parametrize(
    "bad",
    [
        ExpireCondition.NX | ExpireCondition.XX,
        ExpireCondition.NX | ExpireCondition.GT,
        ExpireCondition.GT | ExpireCondition.LT,
        ExpireCondition(16),
    ],
)
def test_incompatible_expire_options(bad: ExpireCondition) -> None:
    with pytest.raises(ValueError, match="incompatible"):
        Expire(b"k", T, T, bad)


def test_persist(m: Machine) -> None:
    _ttl_setup(m)
    assert m(Persist(b"ttl", T)) == 1
    assert m.sm.ttl_ms(b"ttl", T + 5000) == -1
    assert m(Persist(b"ttl", T)) == 0
    assert m(Persist(b"plain", T)) == 0
    assert m(Persist(b"missing", T)) == 0


# ------------------------------------------------------------------- INCR


def test_incr_creates_and_counts(m: Machine) -> None:
    assert m(IncrBy(b"n", 1, T)) == 1
    assert m(IncrBy(b"n", -11, T)) == -10
    assert m.sm.get(b"n", T) == b"-10"


def test_incr_keeps_ttl(m: Machine) -> None:
    m(Set(b"n", b"5", T, expiry_ms=T + 100))
    assert m(IncrBy(b"n", 2, T)) == 7
    assert m.sm.expire_time_ms(b"n", T) == T + 100


@pytest.mark.parametrize(
    "value", [b"abc", b"", b" 1", b"1 ", b"+1", b"01", b"-0", b"1.5", b"9223372036854775808", b"-"]
)
def test_incr_on_non_integer(m: Machine, value: bytes) -> None:
    m(Set(b"n", value, T))
    result = m(IncrBy(b"n", 1, T))
    assert result == CommandFailure(NOT_AN_INTEGER)
    assert isinstance(result, CommandFailure)
    assert result.code == "ERR"
    assert m.sm.get(b"n", T) == value  # unchanged


def test_incr_overflow(m: Machine) -> None:
    m(Set(b"n", str(INT64_MAX).encode(), T))
    assert m(IncrBy(b"n", 1, T)) == CommandFailure(OVERFLOW)
    m(Set(b"n", str(INT64_MIN).encode(), T))
    assert m(IncrBy(b"n", -1, T)) == CommandFailure(OVERFLOW)
    assert m(IncrBy(b"n", INT64_MAX, T)) == -1


def test_parse_int64_accepts_canonical_forms() -> None:
    assert parse_int64(b"0") == 0
    assert parse_int64(b"-1") == -1
    assert parse_int64(b"9223372036854775807") == INT64_MAX
    assert parse_int64(b"-9223372036854775808") == INT64_MIN
    assert parse_int64(b"\xd9\xa1") is None  # non-ASCII digit
    assert parse_int64("\u0661".encode()) is None  # ARABIC-INDIC DIGIT ONE


# ------------------------------------------------------------------ APPEND


def test_append(m: Machine) -> None:
    assert m(Append(b"k", b"ab", T)) == 2  # creates
    assert m.sm.ttl_ms(b"k", T) == -1
    m(Expire(b"k", T + 50, T))
    assert m(Append(b"k", b"cd", T)) == 4
    assert m.sm.get(b"k", T) == b"abcd"
    assert m.sm.expire_time_ms(b"k", T) == T + 50


def test_append_size_limit(m: Machine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state_machine, "MAX_VALUE_BYTES", 4)
    m(Set(b"k", b"abc", T))
    result = m(Append(b"k", b"de", T))
    assert isinstance(result, CommandFailure)
    assert "proto-max-bulk-len" in result.message


# ------------------------------------------------------- applied position


def test_applied_index_and_term() -> None:
    sm = CacheStateMachine()
    assert (sm.applied_index, sm.applied_term) == (0, 0)
    assert sm.apply(1, 1, Noop(T)) is None
    sm.mark_applied(3, 2)  # a config-change entry
    assert sm.apply_encoded(4, 2, b"") is None  # the leader's empty entry
    assert (sm.applied_index, sm.applied_term) == (4, 2)
    with pytest.raises(ValueError, match="out of order"):
        sm.apply(4, 2, Noop(T))
    with pytest.raises(ValueError, match="out of order"):
        sm.apply(5, 1, Noop(T))
    sm.set_applied(100, 7)
    assert (sm.applied_index, sm.applied_term) == (100, 7)
    with pytest.raises(ValueError):
        sm.set_applied(-1, 0)


def test_set_out_of_order_changes_nothing_and_clock_never_goes_back() -> None:
    sm = CacheStateMachine()
    assert sm.apply(2, 2, Set(b"k", b"v", T)) is OK
    for index, term in ((2, 2), (1, 2), (3, 1)):
        with pytest.raises(ValueError, match="out of order"):
            sm.apply(index, term, Set(b"k", b"other", T + 5))
    assert (sm.applied_index, sm.applied_term, sm.clock_ms) == (2, 2, T)
    assert sm.get(b"k", T) == b"v"
    # An older stamp keeps the clock; an expiry at or before the clock deletes.
    assert sm.apply(3, 2, Set(b"k", b"w", T - 10, expiry_ms=T)) is OK
    assert sm.clock_ms == T
    assert sm.get(b"k", T - 20) is None
    assert sm.apply(4, 2, Set(b"k", b"x", T + 1, expiry_ms=T + 2)) is OK
    assert (sm.clock_ms, sm.get(b"k", T + 1)) == (T + 1, b"x")
    assert sm.apply(5, 2, Set(b"j", b"y", T, condition=SetCondition.NX)) is OK
    assert sm.apply(6, 2, Set(b"j", b"z", T, condition=SetCondition.NX)) is None
    assert sm.get(b"j", T + 1) == b"y"


def test_apply_encoded() -> None:
    sm = CacheStateMachine()
    assert sm.apply_encoded(1, 1, encode_command(Set(b"k", b"v", T))) is OK
    with pytest.raises(CommandDecodeError):
        sm.apply_encoded(2, 1, b"\xff\xff")
    assert sm.applied_index == 1


def test_invalid_construction() -> None:
    with pytest.raises(ValueError):
        CacheStateMachine(capacity=0)
    with pytest.raises(ValueError):
        CacheStateMachine(purge_limit=-1)


@pytest.mark.parametrize("purge_limit", [0, 20])
def test_time_never_runs_backwards(purge_limit: int) -> None:
    sm = CacheStateMachine(purge_limit=purge_limit)
    sm.apply(1, 1, Set(b"k", b"v", T, expiry_ms=T + 10))
    sm.apply(2, 1, Noop(T + 10))  # k expires, purged or not
    assert sm.clock_ms == T + 10
    # A new leader whose clock is behind: k must not come back.
    assert sm.apply(3, 2, Set(b"k", b"w", T, condition=SetCondition.NX, get=True)) is None
    assert sm.get(b"k", T + 10) == b"w"
    # An expiry at or before the clock (not the stamp) is in the past.
    assert sm.apply(4, 2, Set(b"x", b"v", T, expiry_ms=T + 5)) is OK
    assert not sm.contains(b"x", T)
    assert sm.clock_ms == T + 10


def test_set_applied_resets_clock() -> None:
    sm = CacheStateMachine()
    sm.apply(1, 1, Noop(T))
    view = sm.entries_view()
    assert view.clock_ms == T
    sm.set_applied(5, 1, clock_ms=T + 1)
    assert sm.clock_ms == T + 1
    sm.set_applied(5, 1)
    assert sm.clock_ms == 0

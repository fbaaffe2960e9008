"""Replica determinism, entries_view and restore."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crema.cache import CacheStateMachine, decode_command, encode_command
from crema.cache import store as store_module
from crema.cache.commands import Clear, Command, Expire, IncrBy, MSet, Noop, Set
from crema.errors import SnapshotError

from .model import model_apply
from .strategies import commands

T = 1_000_000

# Few keys and a narrow clock, so commands collide and keys expire.
KEYS = st.sampled_from([b"a", b"b", b"c", b"d", b"e", b"f", b"g"])
CLOCK = st.integers(T, T + 300)
COMMAND_LISTS = st.lists(commands(KEYS, CLOCK), max_size=60)


class Entry(NamedTuple):
    """Shaped like crema.checkpoint.SnapshotEntry."""

    key: bytes
    value: bytes
    expiry_ms: int | None


def _run(sm: CacheStateMachine, cmds: list[Command]) -> list[object]:
    return [sm.apply(i, 1, c) for i, c in enumerate(cmds, start=sm.applied_index + 1)]


def _state(sm: CacheStateMachine) -> list[tuple[bytes, bytes, int | None]]:
    return list(sm.entries_view())


@settings(max_examples=100, deadline=None)
@given(COMMAND_LISTS, st.none() | st.integers(1, 4), st.integers(0, 3))
def test_replicas_agree(cmds: list[Command], capacity: int | None, purge_limit: int) -> None:
    one = CacheStateMachine(capacity, purge_limit)
    two = CacheStateMachine(capacity, purge_limit)
    # The second replica gets its commands through the codec, like a follower.
    results_one = []
    for i, command in enumerate(cmds, start=1):
        results_one.append(one.apply(i, 1, command))
        one.check_invariants()
    results_two = _run(two, [decode_command(encode_command(c)) for c in cmds])
    assert results_one == results_two
    assert _state(one) == _state(two)
    assert len(one) == len(two)
    if capacity is not None:
        assert len(one) <= capacity


@settings(max_examples=100, deadline=None)
@given(COMMAND_LISTS, COMMAND_LISTS, st.none() | st.integers(1, 4))
def test_restored_replica_continues_identically(
    before: list[Command], after: list[Command], capacity: int | None
) -> None:
    leader = CacheStateMachine(capacity)
    _run(leader, before)
    view = leader.entries_view()
    follower = CacheStateMachine(capacity)
    follower.restore((Entry(*e) for e in view), view.index, view.term, view.clock_ms)
    assert (follower.applied_index, follower.applied_term) == (len(before), 1 if before else 0)
    assert _state(follower) == _state(leader)
    follower.check_invariants()
    assert _run(leader, after) == _run(follower, after)
    assert _state(follower) == _state(leader)
    follower.check_invariants()


@settings(max_examples=60, deadline=None)
@given(COMMAND_LISTS, st.data())
def test_reads_never_change_state(cmds: list[Command], data: st.DataObject) -> None:
    quiet, busy = CacheStateMachine(3), CacheStateMachine(3)
    for i, command in enumerate(cmds, start=1):
        for key in data.draw(st.lists(KEYS, max_size=3)):
            now = data.draw(CLOCK)
            busy.get(key, now)
            busy.ttl_ms(key, now)
            busy.scan(0, now, count=2)
            busy.keys(b"*", now)
        assert quiet.apply(i, 1, command) == busy.apply(i, 1, command)
    assert _state(quiet) == _state(busy)


@settings(max_examples=100, deadline=None)
@given(COMMAND_LISTS)
def test_agrees_with_a_naive_model(cmds: list[Command]) -> None:
    sm = CacheStateMachine(purge_limit=1)
    model: dict[bytes, tuple[bytes, int | None]] = {}
    clock = 0  # time never runs backwards
    for i, command in enumerate(cmds, start=1):
        clock = max(clock, command.now_ms)
        assert sm.apply(i, 1, command) == model_apply(model, command, clock)
        assert sm.clock_ms == clock
        now = clock
        live = {k: v for k, v in model.items() if v[1] is None or v[1] > now}
        assert {k: (sm.get(k, now), sm.expire_time_ms(k, now)) for k in live} == {
            k: (v, -1 if e is None else e) for k, (v, e) in live.items()
        }
        assert sorted(sm.keys(b"*", now)) == sorted(live)


# ---------------------------------------------------------------- expiry


def test_purge_is_deterministic_with_many_expiring_keys() -> None:
    machines = [CacheStateMachine(purge_limit=5) for _ in range(2)]
    for sm in machines:
        for i in range(100):
            sm.apply(i + 1, 1, Set(b"k%03d" % i, b"v", T, expiry_ms=T + 1 + (i * 7) % 13))
        for j in range(5):
            sm.apply(101 + j, 1, Noop(T + 3 * j))
    assert _state(machines[0]) == _state(machines[1])
    assert 0 < len(machines[0]) < 100


def test_ttl_is_never_extended_by_restore() -> None:
    sm = CacheStateMachine()
    sm.apply(1, 1, Set(b"k", b"v", T, expiry_ms=T + 500))
    copy = CacheStateMachine()
    copy.restore([Entry(*e) for e in sm.entries_view()], 1, 1)
    assert copy.expire_time_ms(b"k", T + 100) == T + 500


# ---------------------------------------------------------- entries_view


def test_entries_view_is_frozen_while_apply_continues() -> None:
    sm = CacheStateMachine()
    sm.apply(1, 1, MSet(((b"a", b"1"), (b"b", b"2")), T))
    sm.apply(2, 2, Expire(b"b", T + 50, T))
    view = sm.entries_view()
    sm.apply(3, 2, Set(b"a", b"changed", T))
    sm.apply(4, 2, IncrBy(b"n", 1, T))
    sm.apply(5, 2, Set(b"b", b"gone", T, expiry_ms=T))
    assert (view.index, view.term, len(view)) == (2, 2, 2)
    assert list(view) == [(b"a", b"1", None), (b"b", b"2", T + 50)]
    assert list(view) == list(view)  # iterable more than once


def test_entries_view_keeps_write_order() -> None:
    sm = CacheStateMachine()
    sm.apply(1, 1, MSet(((b"z", b"1"), (b"a", b"2"), (b"m", b"3")), T))
    sm.apply(2, 1, Set(b"z", b"4", T))
    assert [k for k, _, _ in sm.entries_view()] == [b"a", b"m", b"z"]


# ---------------------------------------------------------------- restore


def _entries_then_fail(n: int) -> Iterator[Entry]:
    for i in range(n):
        yield Entry(b"new%d" % i, b"v", None)
    raise OSError("disk read failed")


def _populated() -> CacheStateMachine:
    sm = CacheStateMachine()
    sm.apply(1, 1, MSet(((b"old1", b"1"), (b"old2", b"2")), T))
    return sm


def test_restore_failure_midway_leaves_old_state() -> None:
    sm = _populated()
    before = _state(sm)
    with pytest.raises(OSError, match="disk read failed"):
        sm.restore_entries(_entries_then_fail(5))
    assert _state(sm) == before
    with pytest.raises(OSError):
        sm.restore(_entries_then_fail(5), 99, 9)
    assert (sm.applied_index, sm.applied_term) == (1, 1)
    assert sm.apply(2, 1, Noop(T)) is None  # still usable


@pytest.mark.parametrize(
    "bad",
    [
        [Entry(b"a", b"1", None), Entry(b"a", b"2", None)],  # duplicate key
        [Entry("a", b"1", None)],  # type: ignore[arg-type]
        [Entry(b"a", bytearray(b"1"), None)],  # type: ignore[arg-type]
        [Entry(b"a", b"1", 0)],  # 0 means "no expiry" on disk, never an expiry
        [Entry(b"a", b"1", -5)],
        [Entry(b"a", b"1", 2**64)],  # beyond the u64 of the file format
        [Entry(b"a", b"1", True)],
    ],
)
def test_restore_rejects_bad_entries(bad: list[Entry]) -> None:
    sm = _populated()
    before = _state(sm)
    with pytest.raises(SnapshotError):
        sm.restore_entries(bad)
    assert _state(sm) == before


def test_restore_replaces_contents_and_rebuilds_indexes() -> None:
    sm = _populated()
    sm.restore_entries([Entry(b"x", b"1", T + 10), Entry(b"y", b"2", None)])
    assert sm.keys(b"*", T) == [b"x", b"y"]
    sm.set_applied(50, 3)
    sm.apply(51, 3, Noop(T + 20))  # purge works on the restored heap
    assert len(sm) == 1
    assert sm.scan(0, T + 20) == (0, [b"y"])


def test_restore_with_capacity_keeps_newest() -> None:
    sm = CacheStateMachine(capacity=2)
    sm.restore_entries([Entry(b"k%d" % i, b"v", None) for i in range(5)])
    assert sm.keys(b"*", T) == [b"k3", b"k4"]
    sm.set_applied(5, 1)
    sm.apply(6, 1, Set(b"new", b"v", T))
    assert sm.keys(b"*", T) == [b"k4", b"new"]


def test_restore_empty() -> None:
    sm = _populated()
    sm.restore([], 10, 2)
    assert len(sm) == 0
    assert (sm.applied_index, sm.applied_term) == (10, 2)
    with pytest.raises(ValueError):
        sm.restore([], -1, 0)


@settings(max_examples=60, deadline=None)
@given(COMMAND_LISTS, st.sets(st.integers(1, 60)), st.none() | st.integers(1, 4))
def test_views_stay_frozen_under_every_mutation(
    cmds: list[Command], taken_at: set[int], capacity: int | None
) -> None:
    sm = CacheStateMachine(capacity, purge_limit=2)
    views = []
    for i, command in enumerate(cmds, start=1):
        if i in taken_at:
            view = sm.entries_view()
            views.append((view, list(view), len(view)))
        sm.apply(i, 1, command)
    for view, expected, length in views:
        assert list(view) == expected
        assert len(view) == length == len(expected)


def test_view_survives_many_rewrites_and_clear() -> None:
    sm = CacheStateMachine()
    sm.apply(1, 1, MSet(tuple((b"k%d" % i, b"%d" % i) for i in range(200)), T))
    view = sm.entries_view()
    expected = list(view)
    index = 1
    for i in range(3000):  # many rewrites of a few keys
        index += 1
        sm.apply(index, 1, Set(b"k%d" % (i % 7), b"new", T))
    assert list(view) == expected
    second = sm.entries_view()
    sm.apply(index + 1, 1, Clear(T))
    assert list(view) == expected
    assert len(second) == 200
    assert len(sm) == 0


@settings(max_examples=60, deadline=None)
@given(COMMAND_LISTS, st.none() | st.integers(1, 4), st.sets(st.integers(1, 60)))
def test_invariants_with_frequent_rebuilds(
    cmds: list[Command], capacity: int | None, taken_at: set[int]
) -> None:
    """With no slack, heap rebuilds happen all the time."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(store_module, "_SLACK", 0)
        sm = CacheStateMachine(capacity, purge_limit=1)
        views, results = [], []
        for i, command in enumerate(cmds, start=1):
            if i in taken_at:
                view = sm.entries_view()
                views.append((view, list(view)))
            results.append(sm.apply(i, 1, command))
            sm.check_invariants()
        for view, expected in views:
            assert list(view) == expected
    plain = CacheStateMachine(capacity, purge_limit=1)  # default slack
    assert _run(plain, cmds) == results
    assert _state(sm) == _state(plain)

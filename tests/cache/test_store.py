"""Store internals seen through the state machine: purge, eviction, SCAN, KEYS, glob."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crema.cache import CacheStateMachine, glob_match
from crema.cache.commands import Clear, Command, Delete, Expire, MSet, Noop, Set
from crema.cache.glob import _compile, compile_pattern, match_tokens, tokenize
from crema.cache.results import Result
from crema.cache.store import Store
from tests.server.reference_glob import glob_match as server_glob_match

T = 1_000_000


class Machine:
    def __init__(self, capacity: int | None = None, purge_limit: int = 20) -> None:
        self.sm = CacheStateMachine(capacity, purge_limit)
        self.index = 0

    def __call__(self, command: Command) -> Result:
        self.index += 1
        return self.sm.apply(self.index, 1, command)


# --------------------------------------------------------------- purging


def test_purge_is_bounded_per_command_and_in_expiry_order() -> None:
    m = Machine(purge_limit=3)
    for i in range(10):
        m(Set(b"k%d" % i, b"v", T, expiry_ms=T + 10 - i))  # k9 expires first
    m(Noop(T + 100))
    assert len(m.sm) == 7
    remaining = [k for k, _, _ in m.sm.entries_view()]
    assert remaining == [b"k%d" % i for i in range(7)]  # k9, k8, k7 purged
    m(Noop(T + 100))
    m(Noop(T + 100))
    m(Noop(T + 100))
    assert len(m.sm) == 0


def test_purge_skips_stale_heap_items() -> None:
    m = Machine()
    m(Set(b"k", b"v", T, expiry_ms=T + 10))
    m(Expire(b"k", T + 1000, T))  # the heap still holds (T+10, k)
    m(Noop(T + 20))
    assert m.sm.get(b"k", T + 20) == b"v"
    m(Set(b"k", b"w", T + 30))  # no TTL now
    m(Noop(T + 2000))
    assert m.sm.get(b"k", T + 2000) == b"w"


def test_purge_disabled() -> None:
    m = Machine(purge_limit=0)
    m(Set(b"k", b"v", T, expiry_ms=T + 1))
    m(Noop(T + 5))
    assert len(m.sm) == 1
    assert m.sm.get(b"k", T + 5) is None


def test_heap_is_rebuilt_when_mostly_stale() -> None:
    store = Store()
    for i in range(3000):
        store.write(b"k", b"v", T + i, T)  # every write pushes a new expiry
    assert len(store._heap) < 2 * len(store) + 1100
    assert store.purge_expired(T + 5000, None) == 1


# -------------------------------------------------------------- eviction


def test_capacity_evicts_least_recently_written() -> None:
    m = Machine(capacity=3)
    m(MSet(((b"a", b"1"), (b"b", b"2"), (b"c", b"3")), T))
    assert m.sm.get(b"a", T) == b"1"  # reads do not protect a key
    m(Set(b"b", b"2'", T))  # b becomes newest
    m(Set(b"d", b"4", T))
    assert m.sm.keys(b"*", T) == [b"c", b"b", b"d"]
    m(Expire(b"c", T + 50, T))  # a TTL change is a write too
    m(Set(b"e", b"5", T))
    assert m.sm.keys(b"*", T) == [b"d", b"c", b"e"]


def test_capacity_purges_expired_before_evicting_live() -> None:
    m = Machine(capacity=3, purge_limit=0)
    m(Set(b"live", b"1", T))
    m(Set(b"dead1", b"1", T, expiry_ms=T + 5))
    m(Set(b"dead2", b"1", T, expiry_ms=T + 5))
    m(Set(b"new", b"1", T + 10))
    assert m.sm.keys(b"*", T + 10) == [b"live", b"new"]
    assert len(m.sm) == 2


def test_expires_count_follows_every_mutation() -> None:
    m = Machine(purge_limit=0)
    m(Set(b"a", b"1", T, expiry_ms=T + 5))
    m(Set(b"b", b"1", T, expiry_ms=T + 50))
    m(Set(b"c", b"1", T))
    assert m.sm.expires_count == 2
    m(Set(b"c", b"2", T, expiry_ms=T + 60))  # gains an expiry
    m(Set(b"b", b"2", T))  # loses it
    assert m.sm.expires_count == 2
    m(Expire(b"a", T + 70, T))  # a new expiry for a key that had one
    assert m.sm.expires_count == 2
    m(Delete((b"c",), T))
    assert m.sm.expires_count == 1
    m(Noop(T + 100))  # a expired; not purged (limit 0) but still counted, as DBSIZE counts it
    assert m.sm.expires_count == 1
    m.sm.check_invariants()
    m(Clear(T + 100))
    assert m.sm.expires_count == 0


def test_capacity_with_mset_larger_than_capacity() -> None:
    m = Machine(capacity=2)
    m(MSet(tuple((b"k%d" % i, b"v") for i in range(5)), T))
    assert m.sm.keys(b"*", T) == [b"k3", b"k4"]


def test_eviction_pointer_survives_gaps() -> None:
    m = Machine(capacity=100)
    for round_ in range(30):
        m(MSet(tuple((b"k%d" % (i % 150), b"%d" % round_) for i in range(200)), T))
        m.sm.check_invariants()
    assert len(m.sm) == 100


# ------------------------------------------------------------------ SCAN


def _full_scan(sm: CacheStateMachine, now: int, count: int = 3) -> list[bytes]:
    cursor, seen = 0, []
    while True:
        cursor, keys = sm.scan(cursor, now, count=count)
        seen.extend(keys)
        if cursor == 0:
            return seen


def test_scan_returns_every_key() -> None:
    m = Machine()
    keys = [b"k%d" % i for i in range(50)]
    m(MSet(tuple((k, b"v") for k in keys), T))
    assert sorted(_full_scan(m.sm, T)) == sorted(keys)
    assert m.sm.scan(0, T, count=1000) == (0, keys)


def test_scan_match_and_expired() -> None:
    m = Machine()
    m(MSet(((b"user:1", b"a"), (b"user:2", b"b"), (b"post:1", b"c")), T))
    m(Set(b"user:3", b"d", T, expiry_ms=T + 5))
    assert m.sm.scan(0, T + 5, match=b"user:*", count=100) == (0, [b"user:1", b"user:2"])
    with pytest.raises(ValueError):
        m.sm.scan(0, T, count=0)


def test_scan_with_bogus_cursor_ends() -> None:
    m = Machine()
    m(Set(b"a", b"1", T))
    assert m.sm.scan(10**18, T) == (0, [])


def test_scan_may_return_empty_step_with_nonzero_cursor() -> None:
    m = Machine()
    m(MSet(tuple((b"k%d" % i, b"v") for i in range(100)), T))
    m(Delete(tuple(b"k%d" % i for i in range(1, 99)), T))
    cursor, keys = m.sm.scan(1, T, count=1)  # after k0: 98 empty slots ahead
    assert keys == []
    assert cursor != 0
    assert sorted(_full_scan(m.sm, T, count=1)) == [b"k0", b"k99"]


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_scan_never_misses_a_key_present_throughout(data: st.DataObject) -> None:
    m = Machine()
    stable = [b"s%d" % i for i in range(data.draw(st.integers(1, 30)))]
    m(MSet(tuple((k, b"v") for k in stable), T))
    churn = st.sampled_from([b"c%d" % i for i in range(10)] + stable)
    cursor, seen = 0, set()
    for _ in range(500):
        # Between steps, rewrite stable keys and add/remove churn keys.
        for key in data.draw(st.lists(churn, max_size=5)):
            if key in stable or data.draw(st.booleans()):
                m(Set(key, b"w", T))
            else:
                m(Delete((key,), T))
        cursor, keys = m.sm.scan(cursor, T, count=data.draw(st.integers(1, 4)))
        seen.update(keys)
        if cursor == 0:
            break
    assert cursor == 0
    assert set(stable) <= seen


def test_many_rewrites_keep_order_and_scan_cursor_valid() -> None:
    m = Machine()
    m(MSet(((b"a", b"1"), (b"b", b"2"), (b"c", b"3")), T))
    cursor, first = m.sm.scan(0, T, count=1)
    assert first == [b"a"]
    for i in range(3000):  # many rewrites spread the seqs far apart
        m(Set(b"b", b"%d" % i, T))
    assert m.sm.keys(b"*", T) == [b"a", b"c", b"b"]
    m.sm.check_invariants()
    seen = set(first)
    while cursor:
        cursor, keys = m.sm.scan(cursor, T, count=1)
        seen.update(keys)
    assert seen == {b"a", b"b", b"c"}


def test_clear_then_scan() -> None:
    m = Machine()
    m(MSet(((b"a", b"1"),), T))
    m(Clear(T))
    m(Set(b"z", b"1", T))
    assert _full_scan(m.sm, T) == [b"z"]


# ------------------------------------------------------------------ glob


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        (b"*", b"", True),
        (b"**", b"", False),  # Redis: only the "*" shortcut matches an empty key
        (b"?*", b"", False),
        (b"", b"", True),
        (b"", b"a", False),
        (b"*", b"anything", True),
        (b"h?llo", b"hello", True),
        (b"h?llo", b"hllo", False),
        (b"h*llo", b"heeeello", True),
        (b"h[ae]llo", b"hallo", True),
        (b"h[ae]llo", b"hillo", False),
        (b"h[^e]llo", b"hallo", True),
        (b"h[^e]llo", b"hello", False),
        (b"h[a-b]llo", b"hbllo", True),
        (b"h[b-a]llo", b"hbllo", True),  # reversed range
        (b"h[-a]llo", b"h-llo", True),
        (b"h[a-]llo", b"h-llo", False),  # as in Redis: "a-]" is a range, the set runs on
        (b"h[a-]llo", b"h^", True),
        (b"h\\*llo", b"h*llo", True),
        (b"h\\*llo", b"hello", False),
        (b"h[\\]]llo", b"h]llo", True),
        (b"a[]b", b"ab", False),  # empty set matches nothing
        (b"a[^]b", b"axb", True),
        (b"ab[c", b"abc", True),  # unterminated set
        (b"x\\", b"x\\", True),  # trailing backslash is literal
        (b"a.c", b"abc", False),  # regex metacharacters are literal
        (b"a+", b"aa", False),
        (b"*\n*", b"line\nbreak", True),
        (b"\xff*", b"\xff\x00", True),
        # Ranges compare signed chars, as Redis on x86: 0x80-0xff sort below 0.
        (b"[\x80-a]", b"^", True),
        (b"[\x80-a]", b"\xff", True),
        (b"[\x80-a]", b"b", False),
        (b"[a-\x80]", b"\x90", True),  # reversed ends are swapped
        (b"[\x00-\xff]", b"a", False),  # signed: the range is -1..0
        (b"[\x00-\xff]", b"\xff", True),
    ],
)
def test_glob(pattern: bytes, key: bytes, expected: bool) -> None:
    assert glob_match(pattern, key) is expected


def test_keys_with_pattern() -> None:
    m = Machine()
    m(MSet(((b"one", b"1"), (b"two", b"2"), (b"three", b"3")), T))
    assert m.sm.keys(b"t*", T) == [b"two", b"three"]
    assert m.sm.keys(b"*o*", T) == [b"one", b"two"]


GLOB_ALPHABET_ITEMS = [b"*", b"?", b"[", b"]", b"^", b"-", b"\\", b"a", b"b", b"c"]
GLOB_ALPHABET = st.sampled_from(GLOB_ALPHABET_ITEMS)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(GLOB_ALPHABET, max_size=10).map(b"".join),
    st.lists(st.sampled_from([b"a", b"b", b"c", b"-", b"]", b"\\", b"^", b"*"]), max_size=8).map(
        b"".join
    ),
)
def test_glob_matchers_agree(pattern: bytes, key: bytes) -> None:
    """The regex translation and the two-pointer matcher implement one syntax."""
    by_regex = _compile(pattern).match(key) is not None
    assert match_tokens(tokenize(pattern), key) is by_regex
    if key or pattern in (b"", b"*"):
        assert glob_match(pattern, key) is by_regex
    else:
        assert glob_match(pattern, key) is False  # as Redis's stringmatchlen


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from([*GLOB_ALPHABET_ITEMS, b"\x00", b"\x80", b"\xff"]), max_size=10),
    st.lists(
        st.sampled_from([b"a", b"b", b"-", b"]", b"^", b"\x00", b"\x80", b"\xff"]), max_size=8
    ),
)
def test_glob_agrees_with_the_servers_port_of_stringmatchlen(
    pattern: list[bytes], key: list[bytes]
) -> None:
    """Cross-check with tests/server/reference_glob.py, a line-by-line port of Redis's C code."""
    p, k = b"".join(pattern), b"".join(key)
    # "*" alone is a shortcut of KEYS and SCAN (it matches even b""), not of
    # stringmatchlen itself.
    assert glob_match(p, k) is (server_glob_match(p, k) or p == b"*")


def test_many_stars_do_not_backtrack_exponentially() -> None:
    # A regex takes seconds here (minutes with a longer key).
    assert not glob_match(b"*a*a*a*a*a*a*a*a*b", b"a" * 200)
    assert glob_match(b"*a*a*a*a*a*a*a*a*b", b"a" * 200 + b"b")
    assert compile_pattern(b"*x*y*")(b"__x__y__")

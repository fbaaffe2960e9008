"""Hypothesis strategies for cache commands."""

from __future__ import annotations

from hypothesis import strategies as st

from crema.cache.commands import (
    EXPIRE_CONDITIONS,
    INT64_MAX,
    INT64_MIN,
    Append,
    Clear,
    Command,
    Delete,
    Expire,
    GetDel,
    IncrBy,
    MSet,
    Noop,
    Persist,
    Set,
    SetCondition,
)

int64 = st.integers(INT64_MIN, INT64_MAX)
now_ms = st.integers(0, INT64_MAX)
any_bytes = st.binary(max_size=40)


@st.composite
def sets(draw: st.DrawFn, keys: st.SearchStrategy[bytes], now: st.SearchStrategy[int]) -> Set:
    """A random SET command (keep_ttl and an expiry never together)."""
    keep_ttl = draw(st.booleans())
    t = draw(now)
    expiry = None if keep_ttl else draw(st.none() | _near(t))
    return Set(
        draw(keys),
        draw(values),
        t,
        expiry,
        draw(st.sampled_from(SetCondition)),
        keep_ttl,
        draw(st.booleans()),
    )


values = st.sampled_from([b"", b"0", b"1", b"-7", b"abc", b"9223372036854775807"]) | any_bytes


def commands(
    keys: st.SearchStrategy[bytes] = any_bytes, now: st.SearchStrategy[int] = now_ms
) -> st.SearchStrategy[Command]:
    """Any command, with keys from ``keys`` and stamps from ``now``."""
    key_tuples = st.lists(keys, min_size=1, max_size=4).map(tuple)
    pairs = st.lists(st.tuples(keys, values), min_size=1, max_size=4).map(tuple)
    return st.one_of(
        sets(keys, now),
        st.builds(Noop, now),
        st.builds(Delete, key_tuples, now),
        st.builds(Clear, now),
        now.flatmap(
            lambda t: st.builds(
                Expire,
                keys,
                _near(t),
                st.just(t),
                st.sampled_from(EXPIRE_CONDITIONS),
            )
        ),
        st.builds(Persist, keys, now),
        st.builds(IncrBy, keys, st.integers(-5, 5) | int64, now),
        st.builds(Append, keys, values, now),
        st.builds(GetDel, keys, now),
        st.builds(MSet, pairs, now),
    )


def wide_commands() -> st.SearchStrategy[Command]:
    """Any command over the full field ranges (for codec round trips)."""
    return commands(any_bytes, now_ms)


def _near(t: int) -> st.SearchStrategy[int]:
    """Expiries just before and after ``t``, within int64."""
    return st.integers(max(INT64_MIN, t - 50), min(INT64_MAX, t + 200)) | int64

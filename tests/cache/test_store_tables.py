"""The store's shard tables: write order per shard, copy-on-write views, GC tracking, restore."""

from __future__ import annotations

import gc
import heapq
import os
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crema.cache import store as store_module
from crema.cache.store import SHARDS, Store
from crema.checkpoint import SnapshotEntry
from crema.errors import SnapshotError

pytestmark = pytest.mark.usefixtures("store_path")

NOW = 1_000
REAL_HELPER = store_module._accel  # captured at import, before any test switches paths


@pytest.mark.skipif(not os.environ.get("CI"), reason="only CI guarantees a C compiler")
def test_store_helper_is_built_in_ci() -> None:
    assert REAL_HELPER is not None, "make test should have built crema.cache._entries"


def _merged(store: Store) -> list[tuple[bytes, bytes, int | None]]:
    """The view's tables merged by seq, as the C encoder does it."""
    tables = store.view(0, 0, 0).shard_tables()
    merged = heapq.merge(*(t.items() for t in tables), key=lambda item: item[1][2])
    return [(k, v, e) for k, (v, e, _) in merged]


ops = st.lists(
    st.tuples(
        st.sampled_from(["write", "delete", "ttl"]),
        st.integers(0, 40),
        st.binary(max_size=6),
    ),
    max_size=120,
)


@settings(max_examples=60, deadline=None)
@given(ops=ops)
def test_tables_stay_in_write_order(ops: list[tuple[str, int, bytes]]) -> None:
    store = Store()
    views = []
    for step, (op, n, value) in enumerate(ops):
        key = b"k%d" % n
        if op == "write":
            store.write(key, value, None, NOW)
        elif op == "ttl":
            store.write(key, value, NOW + 1 + n, NOW)
        else:
            store.delete(key)
        if step % 17 == 0:
            views.append((store.view(step, 1, 0), _merged(store)))
    store.check_invariants()  # includes: every shard iterates in ascending seq
    assert _merged(store) == list(store.view(0, 0, 0))
    for view, expected in views:  # each view is still exactly what it was
        assert list(view) == expected


def test_many_rewrites_keep_tables_in_write_order() -> None:
    store = Store()
    for n in range(3000):
        store.write(b"k%d" % (n % 7), b"v%d" % n, None, NOW)  # many seqs, few keys
    store.check_invariants()
    assert [k for k, _, _ in _merged(store)] == [b"k%d" % (n % 7) for n in range(2993, 3000)]


def test_view_shards_are_copied_only_while_held() -> None:
    store = Store()
    for n in range(2000):
        store.write(b"k%d" % n, b"v", None, NOW)
    key = b"k5"
    index = hash(key) & (SHARDS - 1)
    original = store._shards[index]
    view = store.view(1, 1, 0)
    store.write(key, b"new", None, NOW)
    # ids, not references: holding a shard here would make the store copy it
    copied = id(store._shards[index])
    assert copied != id(original)  # the view keeps the original
    assert view.shard_tables()[index] is original
    assert original[key][0] == b"v"
    store.write(key, b"newer", None, NOW)
    assert id(store._shards[index]) == copied  # copied once, then owned
    del view, original
    other = next(i for i in range(SHARDS) if i != index and store._shards[i])
    before, other_key = id(store._shards[other]), next(iter(store._shards[other]))
    store.write(other_key, b"x", None, NOW)
    assert id(store._shards[other]) == before  # nothing holds it any more: no copy


def test_release_empties_the_view_and_leaves_the_store() -> None:
    store = Store()
    for n in range(500):
        store.write(b"k%d" % n, b"v%d" % n, None, NOW)
    view = store.view(1, 1, 0)
    expected = list(view)
    pauses: list[None] = []
    view.release(pause=lambda: pauses.append(None))
    assert len(pauses) == SHARDS
    assert len(view) == 0
    assert list(view) == []
    assert view.shard_tables() == ()
    assert list(store.view(1, 1, 0)) == expected
    store.check_invariants()


def test_entries_are_not_tracked_by_the_gc(store_path: str) -> None:
    if store_path != "accelerated":
        pytest.skip("plain tuples are tracked until a collection looks at them")
    store = Store()
    for n in range(300):
        store.write(b"k%d" % n, b"v", NOW + 10 if n % 2 else None, NOW)
        store.write(b"k%d" % (n // 2), b"w", None, NOW)  # rewrites too
    restored = Store.from_entries([SnapshotEntry(b"r%d" % n, b"v", None) for n in range(100)], None)
    for s in (store, restored):
        assert not any(gc.is_tracked(e) for shard in s._shards for e in shard.values())
        assert not any(gc.is_tracked(shard) for shard in s._shards)


# ------------------------------------------------------------------ restore

entries_strategy = st.lists(
    st.tuples(st.binary(max_size=8), st.binary(max_size=8), st.none() | st.integers(1, 2**64 - 1)),
    max_size=60,
    unique_by=lambda e: e[0],
)


def _tables(store: Store) -> list[dict[bytes, tuple[bytes, int | None, int]]]:
    return [dict(shard) for shard in store._shards]


@settings(max_examples=60, deadline=None)
@given(entries=entries_strategy, capacity=st.none() | st.integers(1, 70))
def test_from_entries_builds_the_same_store_on_both_paths(
    entries: list[tuple[bytes, bytes, int | None]], capacity: int | None
) -> None:
    snap = [SnapshotEntry(*e) for e in entries]
    store = Store.from_entries(snap, capacity)
    store.check_invariants()
    kept = entries[-capacity:] if capacity is not None else entries
    assert list(store.view(0, 0, 0)) == kept
    assert sorted(store._heap) == sorted((e, k) for k, _, e in kept if e is not None)
    assert store.nbytes == sum(len(k) + len(v) for k, v, _ in kept)


@dataclass
class _Other:
    key: bytes
    value: bytes
    expiry_ms: int | None


def test_from_entries_takes_mixed_entry_types() -> None:
    entries: list[SnapshotEntry | _Other] = [SnapshotEntry(b"a", b"1", None), _Other(b"b", b"2", 9)]
    entries.append(SnapshotEntry(b"c", b"3", 5))
    store = Store.from_entries(entries, None)
    store.check_invariants()
    assert list(store.view(0, 0, 0)) == [(b"a", b"1", None), (b"b", b"2", 9), (b"c", b"3", 5)]
    plain = Store.from_entries([_Other(b"x", b"y", None)], None)
    assert list(plain.view(0, 0, 0)) == [(b"x", b"y", None)]


@pytest.mark.parametrize(
    "bad",
    [
        SnapshotEntry(b"a", b"again", None),  # repeats the first key
        SnapshotEntry(b"k", b"v", 0),
        SnapshotEntry(b"k", b"v", -1),
        SnapshotEntry(b"k", b"v", 2**64),
        SnapshotEntry(b"k", b"v", True),
        SnapshotEntry("k", b"v", None),  # type: ignore[arg-type]
        SnapshotEntry(b"k", bytearray(b"v"), None),  # type: ignore[arg-type]
    ],
)
def test_from_entries_rejects_bad_entries(bad: SnapshotEntry) -> None:
    entries = [SnapshotEntry(b"a", b"1", None), SnapshotEntry(b"b", b"2", 7), bad]
    with pytest.raises(SnapshotError):
        Store.from_entries(entries, None)


def test_largest_expiry_is_accepted() -> None:
    store = Store.from_entries([SnapshotEntry(b"k", b"v", 2**64 - 1)], None)
    assert list(store.view(0, 0, 0)) == [(b"k", b"v", 2**64 - 1)]


def test_pure_path_fixture_switches_entry_builder(store_path: str) -> None:
    assert (store_module._accel is None) == (store_path == "pure-python")


# ------------------------------------------------------- write-order blocks


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Segments of 4 seqs, so that a few writes freeze, merge and rebuild many of them."""
    monkeypatch.setattr(store_module, "_SEG_BITS", 2)


block_ops = st.lists(
    st.tuples(st.sampled_from(["write", "write", "delete", "scan"]), st.integers(0, 25)),
    max_size=150,
)


@pytest.mark.usefixtures("small_blocks")
@settings(max_examples=80, deadline=None)
@given(ops=block_ops, capacity=st.none() | st.integers(1, 12))
def test_blocks_keep_write_order_like_a_list(
    ops: list[tuple[str, int]], capacity: int | None
) -> None:
    store = Store(capacity)
    model: list[bytes] = []  # keys in write order
    for op, n in ops:
        key = b"k%d" % n
        if op == "write":
            store.write(key, b"v", None, NOW)
            if key in model:
                model.remove(key)
            model.append(key)
            if capacity is not None and len(model) > capacity:
                del model[0]
        elif op == "delete":
            assert store.delete(key) == (key in model)
            if key in model:
                model.remove(key)
        else:
            cursor, seen = 0, []
            while True:
                cursor, keys = store.scan(cursor, NOW, count=3)
                seen += keys
                if cursor == 0:
                    break
            assert seen == model
    store.check_invariants()
    assert store.keys(NOW) == model
    assert [k for k, _, _ in store.view(0, 0, 0)] == model


@pytest.mark.usefixtures("small_blocks")
def test_blocks_survive_many_rewrites_and_restore() -> None:
    store = Store()
    for n in range(2000):
        store.write(b"k%d" % (n % 5), b"v%d" % n, None, NOW)  # merges and rebuilds segments
    store.check_invariants()
    assert store.keys(NOW) == [b"k%d" % (n % 5) for n in range(1995, 2000)]
    entries = [SnapshotEntry(b"r%d" % n, b"v", None) for n in range(30)]
    restored = Store.from_entries(entries, 20)
    restored.check_invariants()
    assert restored.keys(NOW) == [e.key for e in entries[10:]]
    restored.write(b"new", b"v", None, NOW)
    restored.check_invariants()
    assert restored.keys(NOW)[-1] == b"new"


def test_expiry_heap_is_not_tracked(store_path: str) -> None:
    if store_path != "accelerated":
        pytest.skip("a plain list is always tracked")
    store = Store()
    for n in range(50):
        store.write(b"k%d" % n, b"v", NOW + n + 1, NOW)
    assert not gc.is_tracked(store._heap)
    store._rebuild_heap()
    assert not gc.is_tracked(store._heap)
    restored = Store.from_entries([SnapshotEntry(b"k", b"v", 5)], None)
    assert not gc.is_tracked(restored._heap)
    store.clear()
    assert not gc.is_tracked(store._heap)


def test_restore_in_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "_FILL_SLICE", 4)
    entries = [SnapshotEntry(b"k%d" % n, b"v%d" % n, n + 1 if n % 3 else None) for n in range(30)]
    store = Store.from_entries(entries, None)
    store.check_invariants()
    assert list(store.view(0, 0, 0)) == [tuple(e) for e in entries]
    assert store.nbytes == sum(len(e.key) + len(e.value) for e in entries)
    with pytest.raises(SnapshotError, match="duplicate"):
        Store.from_entries([*entries[:17], SnapshotEntry(b"k3", b"x", None), *entries[17:]], None)

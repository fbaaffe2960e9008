"""The store's write-order index under long rewrite runs (many times the key count).

The index is a list of segments that merge and shrink as seqs go (see
``crema.cache.store``); these tests shrink the segments so that a few
thousand writes go through every transition, and compare against plain
Python models: a list (or an insertion-ordered dict) in write order.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crema.cache import store as store_module
from crema.cache.store import Store
from crema.checkpoint import SnapshotEntry

pytestmark = pytest.mark.usefixtures("store_path")

NOW = 1_000
# The seg_bits fixture only sets a constant: sharing it between examples is fine.
FIXTURE_OK = [HealthCheck.function_scoped_fixture]


@pytest.fixture
def seg_bits(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """Segments of ``2 ** bits`` seqs (merge threshold: a quarter, at least 2)."""
    bits = int(getattr(request, "param", 4))
    monkeypatch.setattr(store_module, "_SEG_BITS", bits)
    return bits


def _bounded(store: Store) -> None:
    """The index size follows the live count, never the number of writes."""
    segments, slots = store._order.size()
    live = store._order.live_frozen()
    assert segments <= 2 * live // store._order.seg_min + 1
    assert slots <= 4 * live
    assert live <= len(store)


def _full_scan(store: Store, count: int) -> tuple[list[bytes], int]:
    cursor, seen, steps = 0, [], 0
    while True:
        cursor, keys = store.scan(cursor, NOW, count=count)
        seen += keys
        steps += 1
        if cursor == 0:
            return seen, steps


def _ops(rng: random.Random, n_keys: int, writes: int) -> Iterator[tuple[str, bytes, bytes]]:
    """Mostly rewrites of a hot few keys, some of cold keys, some deletes."""
    hot = max(1, n_keys // 8)
    for step in range(writes):
        r = rng.random()
        n = rng.randrange(hot) if r < 0.7 else rng.randrange(n_keys)
        op = "delete" if r > 0.95 else "write"
        yield op, b"k%d" % n, b"v%d" % step


class ListModel:
    """Keys in write order with their values; eviction drops the front."""

    def __init__(self, capacity: int | None) -> None:
        self.capacity = capacity
        self.items: dict[bytes, bytes] = {}  # a dict iterates in insertion order

    def write(self, key: bytes, value: bytes) -> list[bytes]:
        self.items.pop(key, None)
        self.items[key] = value
        evicted = []
        while self.capacity is not None and len(self.items) > self.capacity:
            oldest = next(iter(self.items))
            del self.items[oldest]
            evicted.append(oldest)
        return evicted

    def delete(self, key: bytes) -> bool:
        return self.items.pop(key, None) is not None


@pytest.mark.parametrize("seg_bits", [2, 3, 4, 6], indirect=True)
@settings(max_examples=25, deadline=None, suppress_health_check=FIXTURE_OK)
@given(
    seed=st.integers(0, 2**32),
    n_keys=st.integers(1, 60),
    capacity=st.none() | st.integers(1, 40),
)
def test_long_rewrite_runs_keep_write_order(
    seg_bits: int, seed: int, n_keys: int, capacity: int | None
) -> None:
    rng = random.Random(seed)
    store, model = Store(capacity), ListModel(capacity)
    writes = 60 * n_keys + 200
    for step, (op, key, value) in enumerate(_ops(rng, n_keys, writes)):
        if op == "write":
            before = set(model.items)
            evicted = model.write(key, value)
            store.write(key, value, None, NOW)
            # Eviction takes exactly the least recently written keys.
            assert [k for k in before if store.live(k, NOW) is None] == evicted
        else:
            assert store.delete(key) == model.delete(key)
        if step % 97 == 0:
            store.check_invariants()
            assert store.keys(NOW) == list(model.items)
    store.check_invariants()
    _bounded(store)
    assert store.keys(NOW) == list(model.items)
    assert _full_scan(store, rng.randint(1, 5))[0] == list(model.items)
    assert [(k, v) for k, v, _ in store.view(0, 0, 0)] == list(model.items.items())


@pytest.mark.parametrize("seg_bits", [2, 4], indirect=True)
@settings(max_examples=25, deadline=None, suppress_health_check=FIXTURE_OK)
@given(seed=st.integers(0, 2**32), n_keys=st.integers(2, 50))
def test_scan_during_long_rewrite_runs_never_skips_a_key(
    seg_bits: int, seed: int, n_keys: int
) -> None:
    """A key present for a whole scan is returned, however the index changes meanwhile."""
    rng = random.Random(seed)
    store = Store()
    for n in range(n_keys):
        store.write(b"k%d" % n, b"v", None, NOW)
    ops = _ops(rng, n_keys, 10**9)  # lazily: as many as the scans take
    for _ in range(5):
        present = set(store.keys(NOW))
        cursor, seen, removed = 0, set(), set()
        while True:
            # Fewer writes than keys examined per step, or the scan chases the tail forever.
            for op, key, value in [next(ops) for _ in range(rng.randint(0, 1))]:
                if op == "write":
                    store.write(key, value, None, NOW)
                elif store.delete(key):
                    removed.add(key)
            cursor, keys = store.scan(cursor, NOW, count=rng.randint(2, 4))
            seen.update(keys)
            if cursor == 0:
                break
        store.check_invariants()
        assert present - removed <= seen


@pytest.mark.parametrize("seg_bits", [4], indirect=True)
def test_index_stays_bounded_over_a_thousand_times_the_key_count(seg_bits: int) -> None:
    rng = random.Random(7)
    store = Store()
    most_segments = written = 0
    for step, (op, key, value) in enumerate(_ops(rng, 200, 200_000)):
        if op == "write":
            store.write(key, value, None, NOW)
            written += 1
        else:
            store.delete(key)
        if step % 1000 == 0:
            _bounded(store)
            most_segments = max(most_segments, store._order.size()[0])
    store.check_invariants()
    # Segments come and go (merges and rebuilds), but never pile up.
    assert 2 <= most_segments <= 2 * 200 // store._order.seg_min + 1
    assert store._next_seq == written + 1  # no renumbering: one seq per write


@pytest.mark.parametrize("seg_bits", [3], indirect=True)
def test_scan_steps_over_sparse_segments_follow_the_live_count(seg_bits: int) -> None:
    """Seqs spread far apart cost SCAN steps in proportion to live keys, not to the span."""
    store = Store()
    keys = [b"k%d" % n for n in range(300)]
    for key in keys:
        store.write(key, b"v", None, NOW)
    for step in range(30_000):  # a hot key: the cold ones end up far apart in seq
        store.write(b"hot", b"%d" % step, None, NOW)
        if step % 100 == 0:
            store.write(keys[step // 100], b"w", None, NOW)
    store.check_invariants()
    assert store._next_seq > 100 * len(store)
    for count in (1, 3, 10):
        seen, steps = _full_scan(store, count)
        assert seen == store.keys(NOW)
        # Frozen seq lists hold at most 4x the live seqs; the tail spans one segment.
        bound = (len(store) + 4 * len(store) // 10 + store._order.seg // 10) // count + 3
        assert steps <= bound


@pytest.mark.parametrize("seg_bits", [3], indirect=True)
def test_eviction_over_sparse_segments_takes_the_oldest(seg_bits: int) -> None:
    store = Store(capacity=50)
    for n in range(50):
        store.write(b"cold%d" % n, b"v", None, NOW)
    for step in range(5000):  # most seqs between the cold keys are gone
        store.write(b"hot%d" % (step % 3), b"%d" % step, None, NOW)
    assert len(store) == 50
    for n in range(60):
        store.write(b"new%d" % n, b"v", None, NOW)
        store.check_invariants()
        gone = [b"cold%d" % i for i in range(50) if store.live(b"cold%d" % i, NOW) is None]
        assert gone == [b"cold%d" % i for i in range(min(n + 4, 50))]
    # Then the hot keys (oldest first), then the first new ones.
    assert store.keys(NOW) == [b"new%d" % n for n in range(10, 60)]


def _merged(store: Store) -> list[tuple[bytes, bytes, int | None]]:
    tables = store.view(0, 0, 0).shard_tables()
    merged = heapq.merge(*(t.items() for t in tables), key=lambda item: item[1][2])
    return [(k, v, e) for k, (v, e, _) in merged]


@pytest.mark.parametrize("seg_bits", [3, 5], indirect=True)
@settings(max_examples=15, deadline=None, suppress_health_check=FIXTURE_OK)
@given(seed=st.integers(0, 2**32), capacity=st.none() | st.integers(5, 30))
def test_replicas_agree_on_index_scan_and_bodies(
    seg_bits: int, seed: int, capacity: int | None
) -> None:
    """Same writes, different snapshot timing: same segments, SCAN pages and bodies."""
    rng = random.Random(seed)
    one, two = Store(capacity), Store(capacity)
    reference: dict[bytes, tuple[bytes, int | None]] = {}
    views = []
    for step, (op, key, value) in enumerate(_ops(rng, 40, 4000)):
        expiry = NOW + 1 + step if step % 5 == 0 else None
        for store in (one, two):
            if op == "write":
                store.write(key, value, expiry, NOW)
            else:
                store.delete(key)
        if op == "write":
            reference.pop(key, None)
            reference[key] = (value, expiry)
            while capacity is not None and len(reference) > capacity:
                del reference[next(iter(reference))]
        else:
            reference.pop(key, None)
        if rng.random() < 0.01:
            views.append(one.view(step, 1, 0))  # copy-on-write in one replica only
    assert one._order.starts == two._order.starts and one._order.seqs == two._order.seqs
    assert one._order.tail_start == two._order.tail_start
    for cursor in range(one._next_seq + 1):
        assert one.scan(cursor, NOW, count=2) == two.scan(cursor, NOW, count=2)
    body = [(k, v, e) for k, (v, e) in reference.items()]
    assert list(one.view(0, 0, 0)) == list(two.view(0, 0, 0)) == body
    assert _merged(one) == _merged(two) == body
    del views


@pytest.mark.parametrize("seg_bits", [2, 16], indirect=True)
@pytest.mark.parametrize("capacity", [None, 37])
def test_restored_store_keeps_order_through_rewrites(seg_bits: int, capacity: int | None) -> None:
    entries = [SnapshotEntry(b"r%d" % n, b"v%d" % n, None) for n in range(100)]
    store = Store.from_entries(entries, capacity)
    store.check_invariants()
    model = ListModel(capacity)
    for entry in entries:
        model.write(entry.key, entry.value)
    assert store.keys(NOW) == list(model.items)
    rng = random.Random(3)
    for step in range(3000):
        key = b"r%d" % rng.randrange(100)
        store.write(key, b"%d" % step, None, NOW)
        model.write(key, b"%d" % step)
    store.check_invariants()
    _bounded(store)
    assert [(k, v) for k, v, _ in store.view(0, 0, 0)] == list(model.items.items())

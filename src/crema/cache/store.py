"""The in-memory key space: entries, write order, expiry index (layer L0).

Rules (see ``docs/state-machine.md``):

- Every stored entry is ``key -> (value, expiry_ms | None, seq)``. ``seq`` is
  the entry's position in *write order*: each write (value or TTL) gives the
  key a new, larger ``seq``. Write order depends only on the applied command
  sequence, never on reads, so it is the same on every replica; snapshot
  iteration, ``KEYS`` and capacity eviction (least recently written first)
  all follow it.
- The write-order index maps ``seq -> key``. Seqs are never renumbered, so
  it gives ``SCAN`` a stable integer cursor (the last ``seq`` visited): a
  key present for a whole scan is never skipped, because rewriting it only
  moves it *later*. The index is a list of segments, each a dict over a
  range of seqs, iterating in ascending seq, so that no single dict grows
  with the key space (resizing a million-entry dict stalls a write for tens
  of ms). Appends go to the *tail* (``_tail``), which spans :data:`SEGMENT`
  consecutive seqs; then it is *frozen* and a new tail starts. A frozen
  segment only loses seqs; it keeps a sorted list of its seqs (``_seqs``,
  a superset: gone seqs are skipped lazily) so that ``SCAN`` and eviction
  walk its live items, not every seq of a range that may be mostly empty.
  Memory follows the live count, not the number of writes: when two
  adjacent frozen segments hold fewer than ``SEGMENT // 4`` seqs together
  they merge (a merge keeps every seq: order and cursors are unaffected),
  and a segment whose live seqs fall below a quarter of what it was built
  for is rebuilt smaller. So there are at most ``2 * n / (SEGMENT // 4) + 1``
  frozen segments for ``n`` entries, every piece of work is bounded by one
  segment (about a millisecond), and all of it amortises to O(1) per write.
  Every decision depends only on the applied commands, so the segments, and
  ``SCAN`` results for a cursor, are the same on every replica.
- Expiry is absolute. An entry is live while ``now_ms < expiry_ms``. The heap
  ``_heap`` holds ``(expiry_ms, key)`` and is lazily cleaned: an item is valid
  only while the entry still has that exact expiry.
- The store holds expired entries until they are purged; purging happens in
  ``(expiry_ms, key)`` order, so it is deterministic too.
- The key table is split into :data:`SHARDS` dicts by ``hash(key)``. Each
  shard dict iterates in ascending ``seq`` (a rewritten key is removed and
  inserted again, so it moves to the end), which lets a snapshot merge the
  shards into write order without sorting. Hashes differ between processes,
  but nothing observable depends on which shard holds a key: every ordered
  walk uses ``seq``.
- A snapshot view keeps the current shard dicts. A shard is copied before a
  mutation whenever anything besides the store still references it (its
  reference count says so), so a view never changes and the copying cost is
  paid only for shards written while a view is alive.
- Entries are made by the optional C helper ``crema.cache._entries`` as tuples
  the cyclic garbage collector never tracks, so the shard dicts stay untracked
  too and full collections do not walk the key space. Without the helper they
  are plain tuples: same behaviour, slower full collections.
"""

from __future__ import annotations

import gc
import heapq
import sys
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator
from itertools import chain, islice
from types import ModuleType
from typing import Final, cast

from crema.cache.glob import compile_pattern
from crema.cache.view import EntriesView, Entry, EntryLike
from crema.errors import SnapshotError

__all__ = ["SEGMENT", "SHARDS", "EntriesView", "Entry", "EntryLike", "Store", "accelerated"]

SHARDS: Final = 256
"""Copy-on-write units of the key table (a power of two)."""

_MASK: Final = SHARDS - 1


def _refs(shards: list[dict[bytes, Entry]], i: int) -> int:
    return sys.getrefcount(shards[i])  # the same expression as in Store._own


_UNSHARED: Final = _refs([{}], 0)
"""Reference count of a shard that only the store's list holds, seen as ``_own`` sees it."""

_accel: ModuleType | None
try:  # untracked entries (src/crema/cache/_entries.c); same results without it
    from crema.cache import _entries as _accel
except ImportError:  # pragma: no cover - depends on the build
    _accel = None


def accelerated() -> bool:
    """Whether store entries are built by the C helper (untracked by the GC)."""
    return _accel is not None


_SEG_BITS: Final = 16
SEGMENT: Final = 1 << _SEG_BITS
"""Consecutive write sequence numbers the tail segment of the write-order index spans."""

_FILL_SLICE: Final = 4096
"""Snapshot entries inserted per call of the C helper (a few ms holding the GIL)."""

_SLACK: Final = 1024
"""Lower bound on stale expiry heap items before a rebuild."""


class Store:
    """Key space with write-order tracking, an expiry heap and an optional bound.

    Args:
        capacity: maximum number of stored entries, or None for no bound.
    """

    def __init__(self, capacity: int | None = None) -> None:
        if capacity is not None and capacity < 1:
            raise ValueError(f"capacity must be >= 1 or None, got {capacity}")
        self.capacity = capacity
        self._shards: list[dict[bytes, Entry]] = [{} for _ in range(SHARDS)]
        self._count = 0
        self._bytes = 0  # keys plus values stored, kept as entries come and go
        self._seg = 1 << _SEG_BITS  # read once: tests shrink the segments
        self._seg_min = max(2, self._seg // 4)
        # The write-order index: frozen segments (ascending, disjoint) and the tail.
        self._starts: list[int] = []  # first seq of each frozen segment's range
        self._segs: list[dict[int, bytes]] = []  # seq -> key, iterating in ascending seq
        self._seqs: list[list[int]] = []  # ascending; a superset of the segment's seqs
        self._tail: dict[int, bytes] = {}  # seqs in [_tail_start, _tail_end)
        self._tail_start = 0
        self._tail_end = self._seg
        self._heap: list[tuple[int, bytes]] = _untracked_list([])
        self._next_seq = 1
        self._low_seq = 1  # no live entry has a smaller seq

    def _own(self, key: bytes) -> dict[bytes, Entry]:
        """The shard of ``key``, copied first if anything else (a view) references it."""
        shards = self._shards
        i = hash(key) & _MASK
        if sys.getrefcount(shards[i]) > _UNSHARED:
            shards[i] = shards[i].copy()
        return shards[i]

    def _entry(self, key: bytes) -> Entry:
        return self._shards[hash(key) & _MASK][key]

    def _order_get(self, seq: int) -> bytes | None:
        if seq >= self._tail_start:
            return self._tail.get(seq)
        i = bisect_right(self._starts, seq) - 1
        return None if i < 0 else self._segs[i].get(seq)

    def _order_remove(self, seq: int) -> None:
        """Drop ``seq`` from the index, then keep the segments dense (amortised O(1))."""
        if seq >= self._tail_start:
            del self._tail[seq]
            return
        i = bisect_right(self._starts, seq) - 1
        seg = self._segs[i]
        del seg[seq]
        n = len(seg)
        if n < self._seg_min or 4 * n < len(self._seqs[i]):
            self._tidy(i)

    def _tidy(self, i: int) -> None:
        """Merge frozen segment ``i`` into a neighbour when the pair is small, else compact it.

        Keeps two invariants that bound the index by the live count: any two
        adjacent frozen segments hold at least ``_seg_min`` seqs together, and
        a segment's dict and seq list were built for at most 4x its live seqs.
        Neither changes a seq, so write order and SCAN cursors are unaffected.
        """
        segs = self._segs
        for j in (i - 1, i):
            if j >= 0 and j + 1 < len(segs) and len(segs[j]) + len(segs[j + 1]) < self._seg_min:
                self._merge(j)
                return
        if 4 * len(segs[i]) < len(self._seqs[i]):
            if not segs[i]:
                del self._starts[i], segs[i], self._seqs[i]
                return
            segs[i] = dict(segs[i])  # a copy is sized for the live items only
            self._seqs[i] = _seq_list(segs[i])

    def _merge(self, j: int) -> None:
        """Join frozen segments ``j`` and ``j + 1`` (fewer than ``_seg_min`` seqs)."""
        merged = dict(self._segs[j])
        merged.update(self._segs[j + 1])  # all larger seqs: the dict stays ascending
        self._segs[j] = merged
        self._seqs[j] = _seq_list(merged)
        del self._starts[j + 1], self._segs[j + 1], self._seqs[j + 1]

    def _freeze_tail(self, seq: int) -> None:
        """Start a new tail at ``seq``; the old one becomes the last frozen segment."""
        tail = self._tail
        if tail:
            if 2 * len(tail) < self._tail_end - self._tail_start:
                tail = dict(tail)  # many seqs are gone: the copy is smaller
            self._starts.append(self._tail_start)
            self._segs.append(tail)
            self._seqs.append(_seq_list(tail))
            last = len(self._segs) - 1
            if last and len(self._segs[last - 1]) + len(tail) < self._seg_min:
                self._merge(last - 1)
        self._tail = {}
        self._tail_start = seq
        self._tail_end = seq + self._seg

    def _order_keys(self) -> Iterator[bytes]:
        return chain(chain.from_iterable(seg.values() for seg in self._segs), self._tail.values())

    def _adopt_blocks(self, blocks: dict[int, dict[int, bytes]], bits: int) -> None:
        """Use restored blocks (block number -> seq -> key, ascending) as the index."""
        numbers = sorted(blocks)
        if not numbers:
            return
        for n in numbers[:-1]:
            self._starts.append(n << bits)
            self._segs.append(blocks[n])
            self._seqs.append(_seq_list(blocks[n]))
        self._tail = blocks[numbers[-1]]
        self._tail_start = numbers[-1] << bits
        self._tail_end = self._tail_start + (1 << bits)

    # ----------------------------------------------------------------- reads

    def __len__(self) -> int:
        return self._count

    @property
    def nbytes(self) -> int:
        """Bytes of keys plus values stored (a running total: O(1); no per-entry overhead)."""
        return self._bytes

    def live(self, key: bytes, now_ms: int) -> Entry | None:
        """The entry of ``key`` if it is stored and not expired at ``now_ms``."""
        entry = self._shards[hash(key) & _MASK].get(key)
        if entry is None:
            return None
        expiry = entry[1]
        if expiry is not None and expiry <= now_ms:
            return None
        return entry

    def keys(self, now_ms: int, pattern: bytes | None = None) -> list[bytes]:
        """Live keys matching ``pattern`` (all when None), in write order."""
        matches = _matcher(pattern)
        shards = self._shards
        out: list[bytes] = []
        for key in self._order_keys():
            expiry = shards[hash(key) & _MASK][key][1]
            if (expiry is None or expiry > now_ms) and matches(key):
                out.append(key)
        return out

    def scan(
        self, cursor: int, now_ms: int, pattern: bytes | None = None, count: int = 10
    ) -> tuple[int, list[bytes]]:
        """One step of a ``SCAN`` iteration; see :meth:`CacheStateMachine.scan`."""
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        matches = _matcher(pattern)
        shards, budget = self._shards, 10 * count
        examined = slots = 0
        out: list[bytes] = []
        last = cursor  # the last seq visited
        segs, seqs = self._segs, self._seqs
        i = max(bisect_right(self._starts, cursor + 1) - 1, 0)
        while i < len(segs) and examined < count and slots < budget:
            # A frozen segment: walk its seq list, not every seq of its range.
            seg, order = segs[i], seqs[i]
            pos = first = bisect_left(order, last + 1)
            stop = min(len(order), pos + budget - slots)
            while pos < stop and examined < count:
                key = seg.get(order[pos])
                pos += 1
                if key is not None:
                    examined += 1
                    expiry = shards[hash(key) & _MASK][key][1]
                    if (expiry is None or expiry > now_ms) and matches(key):
                        out.append(key)
            slots += pos - first
            if pos > first:
                last = order[pos - 1]
            if pos < len(order):
                return last, out
            i += 1
        if i < len(segs):
            return last, out
        tail, end = self._tail, self._next_seq
        seq = max(last + 1, self._tail_start)
        while seq < end and examined < count and slots < budget:  # the tail: probe each seq
            slots += 1
            key = tail.get(seq)
            if key is not None:
                examined += 1
                expiry = shards[hash(key) & _MASK][key][1]
                if (expiry is None or expiry > now_ms) and matches(key):
                    out.append(key)
            seq += 1
        return (0 if seq >= end else seq - 1), out

    def view(self, index: int, term: int, clock_ms: int) -> EntriesView:
        """A consistent, immutable :class:`EntriesView` of the current contents."""
        return EntriesView(index, term, clock_ms, tuple(self._shards), self._bytes)

    # ------------------------------------------------------------- mutations

    def write(self, key: bytes, value: bytes, expiry_ms: int | None, now_ms: int) -> None:
        """Store ``key``, making it the most recently written entry.

        The caller handles an expiry at or before ``now_ms`` (by deleting
        instead); ``now_ms`` is used only to purge before a capacity eviction.
        """
        shard = self._own(key)
        old = shard.pop(key, None)  # re-inserted below: the shard stays in write order
        if old is None:
            self._count += 1
            self._bytes += len(key) + len(value)
        else:
            old_seq = old[2]
            if old_seq >= self._tail_start:
                del self._tail[old_seq]
            else:
                self._order_remove(old_seq)
            self._bytes += len(value) - len(old[0])
        seq = self._next_seq
        self._next_seq = seq + 1
        shard[key] = _new_entry(value, expiry_ms, seq)
        if seq >= self._tail_end:
            self._freeze_tail(seq)
        self._tail[seq] = key
        if expiry_ms is not None and (old is None or old[1] != expiry_ms):
            heapq.heappush(self._heap, (expiry_ms, key))
            if len(self._heap) > 2 * self._count + _SLACK:
                self._rebuild_heap()
        if self.capacity is not None and self._count > self.capacity:
            self._evict(now_ms)

    def delete(self, key: bytes) -> bool:
        """Remove ``key`` (live or expired); return whether it was stored."""
        if key not in self._shards[hash(key) & _MASK]:
            return False
        entry = self._own(key).pop(key)
        self._order_remove(entry[2])
        self._count -= 1
        self._bytes -= len(key) + len(entry[0])
        return True

    def clear(self) -> None:
        """Remove every entry (sequence numbers keep growing)."""
        self._shards = [{} for _ in range(SHARDS)]
        self._count = 0
        self._bytes = 0
        self._starts, self._segs, self._seqs = [], [], []
        self._tail = {}
        self._tail_start = self._next_seq
        self._tail_end = self._next_seq + self._seg
        self._heap = _untracked_list([])
        self._low_seq = self._next_seq

    def purge_expired(self, now_ms: int, limit: int | None) -> int:
        """Remove up to ``limit`` entries expired at ``now_ms`` (all when None).

        Entries go in ``(expiry_ms, key)`` order, so every replica purges the
        same ones. Returns how many were removed.
        """
        heap = self._heap
        removed = 0
        while heap and heap[0][0] <= now_ms and (limit is None or removed < limit):
            expiry, key = heapq.heappop(heap)
            entry = self._shards[hash(key) & _MASK].get(key)
            if entry is not None and entry[1] == expiry:
                self.delete(key)
                removed += 1
        return removed

    def _evict(self, now_ms: int) -> None:
        # Expired entries go first, so no live key is evicted while dead ones
        # take room. Amortised: each heap item is popped once.
        self.purge_expired(now_ms, None)
        while self.capacity is not None and self._count > self.capacity:
            seq = self._oldest_seq()
            self._low_seq = seq + 1
            key = self._order_get(seq)
            assert key is not None
            self.delete(key)

    def _oldest_seq(self) -> int:
        """The smallest live seq (the store is not empty); amortised O(1) as eviction goes."""
        if self._segs:
            seg, order = self._segs[0], self._seqs[0]
            pos = bisect_left(order, self._low_seq)
            while order[pos] not in seg:  # a seq gone since the list was built
                pos += 1
            return order[pos]
        seq, tail = max(self._low_seq, self._tail_start), self._tail
        while seq not in tail:
            seq += 1
        return seq

    def _rebuild_heap(self) -> None:
        self._heap = _untracked_list(
            [(e[1], k) for shard in self._shards for k, e in shard.items() if e[1] is not None]
        )
        heapq.heapify(self._heap)

    def check_invariants(self) -> None:
        """Verify the internal tables agree (for tests; O(n)).

        Raises:
            AssertionError: an invariant is broken.
        """
        by_key = {k: e for shard in self._shards for k, e in shard.items()}
        self._check_index()
        order = [(seq, key) for seg in [*self._segs, self._tail] for seq, key in seg.items()]
        assert len(by_key) == self._count == len(order)
        assert self._bytes == sum(len(k) + len(e[0]) for k, e in by_key.items())
        for i, shard in enumerate(self._shards):
            assert all(hash(k) & _MASK == i for k in shard)
            shard_seqs = [e[2] for e in shard.values()]
            assert shard_seqs == sorted(shard_seqs), "a shard is not in write order"
        seqs = [seq for seq, _ in order]
        assert seqs == sorted(seqs)
        assert all(self._low_seq <= seq < self._next_seq for seq in seqs)
        assert all(self._order_get(seq) == key for seq, key in order)
        assert all(by_key[key][2] == seq for seq, key in order)
        assert not self._heap or not _accel or not gc.is_tracked(self._heap)
        pending = set(self._heap)
        assert all((e[1], k) in pending for k, e in by_key.items() if e[1] is not None)
        if self.capacity is not None:
            assert self._count <= self.capacity

    def _check_index(self) -> None:
        """The write-order index's own invariants, including its size bound."""
        starts, segs, seqs = self._starts, self._segs, self._seqs
        assert len(starts) == len(segs) == len(seqs) and starts == sorted(starts)
        bounds = [*starts, self._tail_start]
        for i, (seg, order) in enumerate(zip(segs, seqs, strict=True)):
            assert seg and order == sorted(order) and set(seg) <= set(order)
            assert all(bounds[i] <= seq < bounds[i + 1] for seq in order)
            assert len(order) <= 4 * len(seg)
            if i:
                assert len(segs[i - 1]) + len(seg) >= self._seg_min
        assert len(segs) <= 2 * self.index_live() // self._seg_min + 1
        assert all(self._tail_start <= seq < self._tail_end for seq in self._tail)
        assert self._tail_end - self._tail_start == self._seg
        if _accel is not None:  # int-only tables: a full GC pass need not walk them
            assert not any(map(gc.is_tracked, [*segs, *seqs, self._tail]))

    def index_live(self) -> int:
        """Entries held by the frozen segments of the write-order index (for tests)."""
        return sum(map(len, self._segs))

    def index_size(self) -> tuple[int, int]:
        """``(frozen segments, seq list slots)`` of the write-order index (for tests).

        Both are bounded by the live entry count, never by the number of writes.
        """
        return len(self._segs), sum(map(len, self._seqs))

    # --------------------------------------------------------------- restore

    @classmethod
    def from_entries(cls, entries: Iterable[EntryLike], capacity: int | None) -> Store:
        """Build a store holding ``entries`` in the order given.

        With a capacity bound, only the last ``capacity`` entries are kept
        (the most recently written ones).

        Raises:
            SnapshotError: an entry has a wrong type, a non-positive expiry,
                or repeats a key.
        """
        store = cls(capacity)
        seq = nbytes = 0
        rest: Iterable[EntryLike] = entries
        blocks: dict[int, dict[int, bytes]] = {}  # seq >> bits -> seq -> key
        bits = store._seg.bit_length() - 1
        if _accel is not None and type(entries) is list and entries:
            seq, nbytes, rest = store._fill_accelerated(entries, blocks, bits)
        seq, nbytes = store._fill(rest, seq, nbytes, blocks, bits)
        store._adopt_blocks(blocks, bits)
        store._count = seq
        store._bytes = nbytes
        store._next_seq = seq + 1
        if capacity is not None and seq > capacity:
            # Evict oldest-written without purging: restore keeps exact state.
            for old_seq in range(1, seq - capacity + 1):
                key = store._order_get(old_seq)
                assert key is not None
                store.delete(key)
            store._low_seq = seq - capacity + 1
            store._rebuild_heap()
        else:
            heapq.heapify(store._heap)
        return store

    def _fill_accelerated(
        self, entries: list[EntryLike], blocks: dict[int, dict[int, bytes]], bits: int
    ) -> tuple[int, int, Iterable[EntryLike]]:
        """Insert ``entries`` in C as far as it can go; return seq, bytes and what is left.

        C takes items of the first item's type when it is a named tuple with
        the fields ``(key, value, expiry_ms)`` (the reader's ``SnapshotEntry``).
        """
        assert _accel is not None
        cls = type(entries[0])
        if not issubclass(cls, tuple) or getattr(cls, "_fields", None) != _FIELDS:
            return 0, 0, entries
        seq = nbytes = 0
        # In slices, so that a restore in a worker thread (a snapshot install
        # on a serving follower) lets the event loop take the GIL in between.
        for start in range(0, len(entries), _FILL_SLICE):
            done, seq, added, status = _accel.fill(
                entries[start : start + _FILL_SLICE],
                self._shards,
                _MASK,
                blocks,
                bits,
                self._heap,
                seq,
                cls,
            )
            nbytes += added
            if status:  # 1 or 2 (a bad or repeated entry): the Python path raises the error
                return seq, nbytes, islice(entries, start + done, None)
        return seq, nbytes, ()

    def _fill(
        self,
        entries: Iterable[EntryLike],
        seq: int,
        nbytes: int,
        blocks: dict[int, dict[int, bytes]],
        bits: int,
    ) -> tuple[int, int]:
        """Insert ``entries`` after ``seq`` entries already in; return the new seq and bytes.

        The write order goes to ``blocks`` (``seq >> bits -> seq -> key``), as the C helper's.
        """
        shards, heap, new = self._shards, self._heap, _new_entry
        for entry in entries:
            key, value, expiry = entry.key, entry.value, entry.expiry_ms
            _check_entry(key, value, expiry)
            shard = shards[hash(key) & _MASK]
            if key in shard:
                raise SnapshotError(f"duplicate key in snapshot entries: {key[:64]!r}")
            seq += 1
            nbytes += len(key) + len(value)
            shard[key] = new(value, expiry, seq)
            block = blocks.get(seq >> bits)
            if block is None:
                block = blocks[seq >> bits] = {}
            block[seq] = key
            if expiry is not None:
                heap.append((expiry, key))
        return seq, nbytes


_FIELDS: Final = ("key", "value", "expiry_ms")


def _plain_entry(value: bytes, expiry: int | None, seq: int) -> Entry:
    return (value, expiry, seq)


def _untracked_list(items: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    """``items``, untracked by the GC when the C helper is built (for the expiry heap).

    The heap holds only ``(int, bytes)`` tuples, which cannot form a cycle, so
    the collector need not walk it (one cache miss per item on every full pass).
    """
    if _accel is not None:
        _accel.untrack_list(items)
    return items


def _seq_list(segment: dict[int, bytes]) -> list[int]:
    """The seqs of ``segment`` in order, as a list the GC does not track (ints only)."""
    seqs = list(segment)
    if _accel is not None:
        _accel.untrack_list(cast("list[tuple[int, bytes]]", seqs))  # any list works
    return seqs


_new_entry: Callable[[bytes, int | None, int], Entry] = (
    _plain_entry if _accel is None else _accel.entry
)


def _check_entry(key: object, value: object, expiry: object) -> None:
    if type(key) is not bytes or type(value) is not bytes:
        raise SnapshotError("snapshot entry key and value must be bytes")
    if expiry is not None and (type(expiry) is not int or not 0 < expiry < 2**64):
        raise SnapshotError(f"snapshot entry expiry must be None or in [1, 2**64), got {expiry!r}")


def _matcher(pattern: bytes | None) -> Callable[[bytes], bool]:
    if pattern is None:
        return lambda key: True
    return compile_pattern(pattern)

"""The in-memory key space: entries, write order, expiry index (layer L0).

Rules (see ``docs/state-machine.md``):

- Every stored entry is ``key -> (value, expiry_ms | None, seq)``. ``seq`` is
  the entry's position in *write order*: each write (value or TTL) gives the
  key a new, larger ``seq``. Write order depends only on the applied command
  sequence, never on reads, so it is the same on every replica; snapshot
  iteration, ``KEYS`` and capacity eviction (least recently written first)
  all follow it.
- The write-order index (:class:`~crema.cache.order.WriteOrder`) maps
  ``seq -> key`` in segments that merge and shrink as seqs go, so its size
  follows the live count and no write does more than a few segments' work.
  Seqs are never renumbered, so it gives ``SCAN`` a stable integer cursor
  (the last ``seq`` visited): a key present for a whole scan is never
  skipped, because rewriting it only moves it *later*.
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
from collections.abc import Callable, Iterable
from itertools import islice
from types import ModuleType
from typing import Final, cast

from crema.cache.glob import compile_pattern
from crema.cache.order import WriteOrder
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
        self._ttl = 0  # entries with an expiry (INFO keyspace's expires=)
        self._bits = _SEG_BITS  # read once: tests shrink the segments
        self._order = WriteOrder(self._bits, 0, _seq_list)
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

    # ----------------------------------------------------------------- reads

    def __len__(self) -> int:
        return self._count

    @property
    def nbytes(self) -> int:
        """Bytes of keys plus values stored (a running total: O(1); no per-entry overhead)."""
        return self._bytes

    @property
    def ttl_count(self) -> int:
        """Entries with an expiry, expired-but-unpurged included (a running count: O(1))."""
        return self._ttl

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
        for key in self._order.in_order():
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
        examined = 0
        out: list[bytes] = []
        last = cursor  # the last seq visited
        for slots, (seq, key) in enumerate(self._order.walk(cursor, self._next_seq)):
            if examined >= count or slots >= budget:
                return last, out
            last = seq
            if key is not None:
                examined += 1
                expiry = shards[hash(key) & _MASK][key][1]
                if (expiry is None or expiry > now_ms) and matches(key):
                    out.append(key)
        return 0, out

    def view(self, index: int, term: int, clock_ms: int) -> EntriesView:
        """A consistent, immutable :class:`EntriesView` of the current contents."""
        return EntriesView(index, term, clock_ms, tuple(self._shards), self._bytes)

    # ------------------------------------------------------------- mutations

    def write(self, key: bytes, value: bytes, expiry_ms: int | None, now_ms: int) -> None:
        """Store ``key``, making it the most recently written entry.

        The caller handles an expiry at or before ``now_ms`` (by deleting
        instead); ``now_ms`` is used only to purge before a capacity eviction.
        """
        shard, order = self._own(key), self._order
        old = shard.pop(key, None)  # re-inserted below: the shard stays in write order
        if old is None:
            self._count += 1
            self._bytes += len(key) + len(value)
            if expiry_ms is not None:
                self._ttl += 1
        else:
            self._ttl += (expiry_ms is not None) - (old[1] is not None)
            old_seq = old[2]
            if old_seq >= order.tail_start:
                del order.tail[old_seq]
            else:
                order.remove(old_seq)
            self._bytes += len(value) - len(old[0])
        seq = self._next_seq
        self._next_seq = seq + 1
        shard[key] = _new_entry(value, expiry_ms, seq)
        if seq >= order.tail_end:
            order.freeze_tail(seq)
        order.tail[seq] = key
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
        self._order.remove(entry[2])
        self._count -= 1
        self._bytes -= len(key) + len(entry[0])
        if entry[1] is not None:
            self._ttl -= 1
        return True

    def clear(self) -> None:
        """Remove every entry (sequence numbers keep growing)."""
        self._shards = [{} for _ in range(SHARDS)]
        self._count = 0
        self._bytes = 0
        self._ttl = 0
        self._order = WriteOrder(self._bits, self._next_seq, _seq_list)
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
            seq, key = self._order.oldest(self._low_seq)
            self._low_seq = seq + 1
            self.delete(key)

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
        order = self._order.check()
        assert len(by_key) == self._count == len(order)
        assert self._ttl == sum(1 for e in by_key.values() if e[1] is not None)
        assert self._bytes == sum(len(k) + len(e[0]) for k, e in by_key.items())
        for i, shard in enumerate(self._shards):
            assert all(hash(k) & _MASK == i for k in shard)
            shard_seqs = [e[2] for e in shard.values()]
            assert shard_seqs == sorted(shard_seqs), "a shard is not in write order"
        seqs = [seq for seq, _ in order]
        assert seqs == sorted(seqs)
        assert all(self._low_seq <= seq < self._next_seq for seq in seqs)
        if _accel is not None:  # int-only tables: a full GC pass need not walk them
            index = self._order
            assert not any(map(gc.is_tracked, [*index.segs, *index.seqs, index.tail]))
        assert all(by_key[key][2] == seq for seq, key in order)
        assert not self._heap or not _accel or not gc.is_tracked(self._heap)
        pending = set(self._heap)
        assert all((e[1], k) in pending for k, e in by_key.items() if e[1] is not None)
        if self.capacity is not None:
            assert self._count <= self.capacity

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
        bits = store._bits
        if _accel is not None and type(entries) is list and entries:
            seq, nbytes, rest = store._fill_accelerated(entries, blocks, bits)
        seq, nbytes = store._fill(rest, seq, nbytes, blocks, bits)
        store._order = WriteOrder.from_blocks(blocks, bits, _seq_list)
        store._count = seq
        store._bytes = nbytes
        store._next_seq = seq + 1
        if capacity is not None and seq > capacity:
            # Evict oldest-written without purging: restore keeps exact state.
            for old_seq in range(1, seq - capacity + 1):
                key = store._order.get(old_seq)
                assert key is not None
                store.delete(key)
            store._low_seq = seq - capacity + 1
            store._rebuild_heap()
        else:
            heapq.heapify(store._heap)
        store._ttl = len(store._heap)  # one item per entry with an expiry, none stale yet
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

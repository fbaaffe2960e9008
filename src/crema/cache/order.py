"""The store's write-order index: ``seq -> key`` in mergeable segments (layer L0).

Rules (see ``docs/state-machine.md``, *Write-order index*):

- Every write gives its key a new, larger ``seq``; seqs are never
  renumbered. The index maps each live ``seq`` to its key; walking it in
  ascending seq is write order. A ``SCAN`` cursor is a seq, so it stays
  valid across any number of writes.
- The index is a list of segments, each a dict over a range of seqs that
  iterates in ascending seq, so that no single dict grows with the key
  space (resizing a million-entry dict stalls a write for tens of ms).
- Appends go to the *tail*, which spans ``2 ** bits`` consecutive seqs;
  then it is *frozen* and a new tail starts. A frozen segment only loses
  seqs. It keeps a sorted list of its seqs (a superset: gone seqs are
  skipped lazily), so walks visit its live items, not every seq of a range
  that may be mostly empty.
- Memory follows the live count, not the number of writes: two adjacent
  frozen segments holding fewer than ``seg_min`` (a quarter segment) seqs
  together are merged, and a segment whose live seqs fall below a quarter
  of its seq list is rebuilt. Neither changes a seq. So there are at most
  ``2 * n / seg_min + 1`` frozen segments and ``4 * n`` list slots for
  ``n`` frozen entries; each step of upkeep is bounded by one segment
  (about a millisecond) and all of it amortises to O(1) per write.
- Every decision depends only on the sequence of appends and removals, so
  replicas that applied the same commands have the same segments.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator
from itertools import chain

SeqList = Callable[[dict[int, bytes]], list[int]]
"""Builds a segment's sorted seq list (the store's untracks it from the GC)."""


class WriteOrder:
    """``seq -> key`` for every stored entry, in ascending seq.

    The store reads and writes ``tail``, ``tail_start`` and ``tail_end``
    directly on its hot path (a write removes the key's old seq, then
    appends: ``freeze_tail`` first when ``seq >= tail_end``).

    Args:
        bits: the tail spans ``2 ** bits`` seqs.
        start: the first seq the tail covers.
        seq_list: makes a frozen segment's seq list.
    """

    __slots__ = (
        "_head",
        "seg",
        "seg_min",
        "segs",
        "seq_list",
        "seqs",
        "starts",
        "tail",
        "tail_end",
        "tail_start",
    )

    def __init__(self, bits: int, start: int, seq_list: SeqList) -> None:
        self.seg = 1 << bits
        self.seg_min = max(2, self.seg // 4)
        self.seq_list = seq_list
        self.starts: list[int] = []  # first seq of each frozen segment's range
        self.segs: list[dict[int, bytes]] = []  # seq -> key, iterating in ascending seq
        self.seqs: list[list[int]] = []  # ascending; a superset of the segment's seqs
        self.tail: dict[int, bytes] = {}  # seqs in [tail_start, tail_end)
        self.tail_start = start
        self.tail_end = start + self.seg
        self._head: tuple[list[int], int] = ([], 0)  # a seq list and a position in it

    @classmethod
    def from_blocks(
        cls, blocks: dict[int, dict[int, bytes]], bits: int, seq_list: SeqList
    ) -> WriteOrder:
        """An index over restored blocks (``seq >> bits -> seq -> key``, each ascending)."""
        numbers = sorted(blocks)
        order = cls(bits, numbers[-1] << bits if numbers else 0, seq_list)
        for n in numbers[:-1]:
            order.starts.append(n << bits)
            order.segs.append(blocks[n])
            order.seqs.append(seq_list(blocks[n]))
        if numbers:
            order.tail = blocks[numbers[-1]]
        return order

    def get(self, seq: int) -> bytes | None:
        """The key written at ``seq``, or None if that seq is gone."""
        if seq >= self.tail_start:
            return self.tail.get(seq)
        i = bisect_right(self.starts, seq) - 1
        return None if i < 0 else self.segs[i].get(seq)

    def in_order(self) -> Iterator[bytes]:
        """Every key, in write order."""
        return chain(chain.from_iterable(seg.values() for seg in self.segs), self.tail.values())

    def walk(self, after: int, end: int) -> Iterator[tuple[int, bytes | None]]:
        """``(seq, key or None if gone)`` for the slots after ``after``, up to ``end``.

        Frozen segments yield the slots of their seq lists (at most 4x their
        live seqs); the tail yields each seq of its range.
        """
        segs, seqs = self.segs, self.seqs
        for i in range(max(bisect_right(self.starts, after + 1) - 1, 0), len(segs)):
            seg, order = segs[i], seqs[i]
            for pos in range(bisect_left(order, after + 1), len(order)):
                seq = order[pos]
                yield seq, seg.get(seq)
        tail = self.tail
        for seq in range(max(after + 1, self.tail_start), end):
            yield seq, tail.get(seq)

    def oldest(self, low: int) -> tuple[int, bytes]:
        """The smallest live seq and its key, given that no live seq is below ``low``.

        The index must not be empty. Amortised O(1) when ``low`` only grows
        (eviction): each gone seq is passed once, and the position reached in
        the first segment's seq list is kept for the next call.
        """
        if self.segs:
            seg, order = self.segs[0], self.seqs[0]
            pos = self._head[1] if self._head[0] is order else bisect_left(order, low)
            key = seg.get(order[pos])
            while key is None:  # a seq gone since the list was built
                pos += 1
                key = seg.get(order[pos])
            self._head = (order, pos)
            return order[pos], key
        seq, tail = max(low, self.tail_start), self.tail
        while seq not in tail:
            seq += 1
        return seq, tail[seq]

    def remove(self, seq: int) -> None:
        """Drop ``seq``, then keep the frozen segments dense (amortised O(1))."""
        if seq >= self.tail_start:
            del self.tail[seq]
            return
        i = bisect_right(self.starts, seq) - 1
        seg = self.segs[i]
        del seg[seq]
        n = len(seg)
        if n < self.seg_min:  # a merge is due if a neighbour is small too
            segs = self.segs
            if (i and n + len(segs[i - 1]) < self.seg_min) or (
                i + 1 < len(segs) and n + len(segs[i + 1]) < self.seg_min
            ):
                self._tidy(i)
                return
        if 4 * n < len(self.seqs[i]):
            self._tidy(i)

    def freeze_tail(self, seq: int) -> None:
        """Start a new tail at ``seq``; the old one becomes the last frozen segment."""
        tail = self.tail
        if tail:
            if 2 * len(tail) < self.tail_end - self.tail_start:
                tail = dict(tail)  # many seqs are gone: the copy is smaller
            self.starts.append(self.tail_start)
            self.segs.append(tail)
            self.seqs.append(self.seq_list(tail))
            last = len(self.segs) - 1
            if last and len(self.segs[last - 1]) + len(tail) < self.seg_min:
                self._merge(last - 1)
        self.tail = {}
        self.tail_start = seq
        self.tail_end = seq + self.seg

    def _tidy(self, i: int) -> None:
        """Merge frozen segment ``i`` into a neighbour when the pair is small, else compact it.

        Keeps the two invariants that bound the index by the live count: any
        two adjacent frozen segments hold at least ``seg_min`` seqs together,
        and a segment's seq list is at most 4x its live seqs.
        """
        segs = self.segs
        for j in (i - 1, i):
            if j >= 0 and j + 1 < len(segs) and len(segs[j]) + len(segs[j + 1]) < self.seg_min:
                self._merge(j)
                return
        if 4 * len(segs[i]) < len(self.seqs[i]):
            if not segs[i]:
                del self.starts[i], segs[i], self.seqs[i]
                return
            segs[i] = dict(segs[i])  # a copy is sized for the live items only
            self.seqs[i] = self.seq_list(segs[i])

    def _merge(self, j: int) -> None:
        """Join frozen segments ``j`` and ``j + 1``."""
        merged = dict(self.segs[j])
        merged.update(self.segs[j + 1])  # all larger seqs: the dict stays ascending
        self.segs[j] = merged
        self.seqs[j] = self.seq_list(merged)
        del self.starts[j + 1], self.segs[j + 1], self.seqs[j + 1]

    def live_frozen(self) -> int:
        """Entries held by the frozen segments."""
        return sum(map(len, self.segs))

    def size(self) -> tuple[int, int]:
        """``(frozen segments, seq list slots)``: both bounded by the live count."""
        return len(self.segs), sum(map(len, self.seqs))

    def check(self) -> list[tuple[int, bytes]]:
        """Verify the invariants, including the size bound; return ``(seq, key)`` in order.

        Raises:
            AssertionError: an invariant is broken.
        """
        starts, segs, seqs = self.starts, self.segs, self.seqs
        assert len(starts) == len(segs) == len(seqs) and starts == sorted(starts)
        bounds = [*starts, self.tail_start]
        for i, (seg, order) in enumerate(zip(segs, seqs, strict=True)):
            assert seg and order == sorted(order) and set(seg) <= set(order)
            assert all(bounds[i] <= seq < bounds[i + 1] for seq in order)
            assert len(order) <= 4 * len(seg)
            if i:
                assert len(segs[i - 1]) + len(seg) >= self.seg_min
        assert len(segs) <= 2 * self.live_frozen() // self.seg_min + 1
        assert all(self.tail_start <= seq < self.tail_end for seq in self.tail)
        assert self.tail_end - self.tail_start == self.seg
        items = [(seq, key) for seg in [*segs, self.tail] for seq, key in seg.items()]
        assert [seq for seq, _ in items] == sorted(seq for seq, _ in items)
        assert all(self.get(seq) == key for seq, key in items)
        return items

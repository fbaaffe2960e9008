"""Immutable views of the store's contents, for snapshots (layer L0).

An :class:`EntriesView` keeps the store's shard dicts as they were at one
applied index; the store copies a shard before writing to it while a view
references it (see :mod:`crema.cache.store`), so the view never changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import chain
from typing import Protocol

Entry = tuple[bytes, int | None, int]
"""A stored entry: (value, expiry_ms or None, write sequence number)."""


class EntryLike(Protocol):
    """A snapshot entry as the checkpoint reader yields it."""

    @property
    def key(self) -> bytes:
        """The key bytes."""
        ...

    @property
    def value(self) -> bytes:
        """The value bytes."""
        ...

    @property
    def expiry_ms(self) -> int | None:
        """Absolute expiry in Unix milliseconds, or None."""
        ...


class EntriesView:
    """An immutable view of every stored entry as of one applied index.

    Taking it costs O(:data:`SHARDS`): it keeps the store's shard tables,
    which the store never mutates while the view holds them (it copies a
    shard before writing to it). So the view stays valid and unchanged while
    the state machine keeps applying commands. Iterating it, later and off
    the event loop, yields ``(key, value, expiry_ms | None)`` in write order;
    two replicas at the same index yield identical sequences.
    Expired-but-unpurged entries are included: the view is the exact
    replicated state. :meth:`shard_tables` gives the raw tables to a faster
    encoder (each iterates in ascending write sequence number).
    """

    __slots__ = ("_count", "_shards", "clock_ms", "index", "nbytes", "term")

    def __init__(
        self,
        index: int,
        term: int,
        clock_ms: int,
        shards: tuple[dict[bytes, Entry], ...],
        nbytes: int = 0,
    ) -> None:
        self.index = index
        self.term = term
        self.clock_ms = clock_ms
        self._shards = shards
        self._count = sum(map(len, shards))
        self.nbytes = nbytes
        """Bytes of keys plus values in the view (0 when unknown)."""

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[tuple[bytes, bytes, int | None]]:
        items = chain.from_iterable(shard.items() for shard in self._shards)
        for key, (value, expiry, _) in sorted(items, key=_write_seq):
            yield key, value, expiry

    def shard_tables(self) -> tuple[dict[bytes, Entry], ...]:
        """The shard dicts ``key -> (value, expiry_ms | None, seq)``; do not mutate them.

        Each iterates in ascending ``seq``; merged by ``seq`` they give the
        order of :meth:`__iter__`.
        """
        return self._shards

    def release(self, pause: Callable[[], object] = lambda: None) -> None:
        """Drop the view's tables one at a time, calling ``pause()`` after each.

        The view is empty afterwards. Shards the store has copied since the
        view was taken are freed here, and freeing all of them at once could
        hold the GIL for a while: a worker thread passes a ``pause`` that
        lets other threads run (``time.sleep(0)``).
        """
        shards, self._shards = list(self._shards), ()
        self._count = 0
        while shards:
            shards.pop()
            pause()


def _write_seq(item: tuple[bytes, Entry]) -> int:
    return item[1][2]

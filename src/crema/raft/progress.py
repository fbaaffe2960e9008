"""What a leader knows about each follower's log (etcd ``tracker/progress.go``).

A follower's :class:`Progress` is in one of three states:

* ``PROBE``: the leader does not know where the follower's log matches; it
  sends at most one append per heartbeat interval and backs off on rejection.
* ``REPLICATE``: the follower's log matches up to ``match``; the leader
  pipelines appends optimistically (``next`` advances on send), bounded by a
  window of in-flight messages (:class:`Inflights`).
* ``SNAPSHOT``: the follower needs entries the leader compacted; a snapshot
  is being sent and nothing else is until it is reported done.

Invariant: ``match < next``.
"""

from __future__ import annotations

import enum
from collections import deque

from crema.raft.types import Index


class ProgressState(enum.Enum):
    """Replication state of one follower."""

    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


class Inflights:
    """A window of in-flight append messages, each remembered by its last index."""

    __slots__ = ("_items", "capacity")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: deque[int] = deque()

    def add(self, last_index: int) -> None:
        """Record a message whose last entry is ``last_index`` (increasing order)."""
        self._items.append(last_index)

    def free_le(self, index: int) -> None:
        """Forget messages whose last entry is at or below ``index`` (acknowledged)."""
        items = self._items
        while items and items[0] <= index:
            items.popleft()

    def free_first_one(self) -> None:
        """Forget the oldest message in flight (it may have been lost)."""
        if self._items:
            self._items.popleft()

    def full(self) -> bool:
        """Whether no further message may be sent."""
        return len(self._items) >= self.capacity

    def count(self) -> int:
        """Messages in flight."""
        return len(self._items)

    def reset(self) -> None:
        """Forget everything in flight."""
        self._items.clear()


class Progress:
    """Replication progress of one peer as tracked by the leader."""

    __slots__ = (
        "inflights",
        "is_learner",
        "match",
        "next",
        "paused",
        "pending_snapshot",
        "recent_active",
        "sent_commit",
        "state",
    )

    def __init__(self, next_index: Index, max_inflight: int, is_learner: bool = False) -> None:
        self.match = Index(0)
        self.next = next_index
        self.state = ProgressState.PROBE
        self.pending_snapshot = Index(0)
        self.recent_active = False
        self.paused = False
        """PROBE only: one probe was sent and is unanswered (reset on heartbeat response)."""
        self.inflights = Inflights(max_inflight)
        self.is_learner = is_learner
        self.sent_commit = Index(0)
        """The highest commit index sent in an append (skips redundant empty appends)."""

    def __repr__(self) -> str:
        return (
            f"Progress(state={self.state.value}, match={self.match}, next={self.next}"
            f"{', learner' if self.is_learner else ''}"
            f"{f', snap={self.pending_snapshot}' if self.pending_snapshot else ''})"
        )

    def _reset_state(self, state: ProgressState) -> None:
        self.paused = False
        self.pending_snapshot = Index(0)
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        """Go back to probing, resuming after a pending snapshot if there was one."""
        if self.state is ProgressState.SNAPSHOT:
            pending = self.pending_snapshot
            self._reset_state(ProgressState.PROBE)
            self.next = Index(max(self.match + 1, pending + 1))
        else:
            self._reset_state(ProgressState.PROBE)
            self.next = Index(self.match + 1)

    def become_replicate(self) -> None:
        """Start pipelining after a successful probe."""
        self._reset_state(ProgressState.REPLICATE)
        self.next = Index(self.match + 1)

    def become_snapshot(self, snapshot_index: Index) -> None:
        """Wait for the snapshot at ``snapshot_index`` to be installed."""
        self._reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot_index

    def maybe_update(self, index: Index) -> bool:
        """Record that the follower's log matches up to ``index``.

        Returns:
            whether ``match`` advanced.
        """
        updated = False
        if self.match < index:
            self.match = index
            updated = True
            self.paused = False
        if self.next < index + 1:
            self.next = Index(index + 1)
        return updated

    def sent_entries(self, last_index: Index, count: int) -> None:
        """Account for an append message just sent whose last entry is ``last_index``."""
        if self.state is ProgressState.REPLICATE:
            if count:
                self.next = Index(last_index + 1)
                self.inflights.add(last_index)
        elif self.state is ProgressState.PROBE:
            self.paused = True

    def maybe_decr_to(self, rejected: Index, match_hint: Index) -> bool:
        """Handle a rejected append of index ``rejected``; back off to ``match_hint + 1``.

        Returns:
            False when the rejection is stale (out of order) and was ignored.
        """
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = Index(self.match + 1)
            return True
        if self.next - 1 != rejected:
            return False
        self.next = Index(max(min(rejected, match_hint + 1), self.match + 1, 1))
        self.paused = False
        return True

    def is_paused(self) -> bool:
        """Whether the leader must hold back appends to this follower."""
        if self.state is ProgressState.PROBE:
            return self.paused
        if self.state is ProgressState.REPLICATE:
            return self.inflights.full()
        return True

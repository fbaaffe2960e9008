"""Bookkeeping for ReadIndex linearizable reads (thesis §6.4, etcd ``read_only.go``).

The leader records the commit index when a read arrives, tags a heartbeat
round with the read's context, and releases the read (and every read queued
before it) once a majority acknowledged that round: at that moment it was
still leader, so its commit index then covers every write acknowledged before
the read began.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from crema.raft.types import Index, NodeId


@dataclass(frozen=True, slots=True)
class ReadState:
    """A read the application may serve once it has applied up to ``index``.

    Attributes:
        index: the commit index the read must wait for.
        context: the request id given to ``RawNode.read_index``.
    """

    index: Index
    context: bytes


@dataclass(slots=True)
class ReadIndexStatus:
    """One pending read on the leader."""

    index: Index
    requester: NodeId
    context: bytes
    acks: set[NodeId] = field(default_factory=set)


class ReadOnly:
    """Pending ReadIndex requests of a leader, in arrival order."""

    __slots__ = ("pending", "queue")

    def __init__(self) -> None:
        self.pending: dict[bytes, ReadIndexStatus] = {}
        self.queue: list[bytes] = []

    def add_request(self, index: Index, requester: NodeId, context: bytes, me: NodeId) -> bool:
        """Queue a read at commit ``index``; False when ``context`` is already pending."""
        if context in self.pending:
            return False
        self.pending[context] = ReadIndexStatus(index, requester, context, {me})
        self.queue.append(context)
        return True

    def recv_ack(self, node: NodeId, context: bytes) -> set[NodeId] | None:
        """Record that ``node`` acknowledged the heartbeat round of ``context``."""
        status = self.pending.get(context)
        if status is None:
            return None
        status.acks.add(node)
        return status.acks

    def advance(self, context: bytes) -> list[ReadIndexStatus]:
        """Release the read of ``context`` and every read queued before it."""
        if context not in self.pending:
            return []
        position = self.queue.index(context)
        released = [self.pending.pop(ctx) for ctx in self.queue[: position + 1]]
        del self.queue[: position + 1]
        return released

    def last_pending_context(self) -> bytes | None:
        """Context of the newest pending read, tagged on heartbeats."""
        return self.queue[-1] if self.queue else None

    def reset(self) -> None:
        """Drop every pending read (on losing leadership)."""
        self.pending.clear()
        self.queue.clear()

"""Value types shared by the Raft core and its storage implementations.

These are the types of the storage contract (:mod:`crema.raft.storage`):
log entries, hard state, membership and snapshot metadata. They are frozen,
slotted dataclasses, checked once where they are built.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NewType

Term = NewType("Term", int)
Index = NewType("Index", int)
NodeId = NewType("NodeId", int)


class EntryType(enum.IntEnum):
    """What a log entry carries."""

    NORMAL = 0
    """Application data (a state-machine command); empty data is the leader's no-op."""
    CONF_CHANGE = 1
    """A membership change, encoded by the Raft core."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One Raft log entry."""

    index: Index
    term: Term
    type: EntryType = EntryType.NORMAL
    data: bytes = b""

    def __post_init__(self) -> None:
        if self.index < 1:
            raise ValueError(f"entry index must be >= 1, got {self.index}")
        if self.term < 0:
            raise ValueError(f"entry term must be >= 0, got {self.term}")

    def size(self) -> int:
        """Approximate encoded size in bytes, used for byte limits."""
        return len(self.data) + 24


_ENTRY_INDEX, _ENTRY_TERM, _ENTRY_TYPE, _ENTRY_DATA = (
    Entry.__dict__[name].__set__ for name in ("index", "term", "type", "data")
)
_new = object.__new__


def entry_unchecked(index: int, term: int, type: EntryType, data: bytes) -> Entry:
    """Build an :class:`Entry` without the dataclass ``__init__`` and its checks.

    Only for hot paths whose caller already guarantees ``index >= 1`` and
    ``term >= 0`` (a frozen dataclass's ``__init__`` costs a few microseconds,
    which is a good part of a follower's work per entry).
    """
    entry: Entry = _new(Entry)
    _ENTRY_INDEX(entry, index)
    _ENTRY_TERM(entry, term)
    _ENTRY_TYPE(entry, type)
    _ENTRY_DATA(entry, data)
    return entry


@dataclass(frozen=True, slots=True)
class HardState:
    """The state Raft must persist before acting on it: term, vote, commit."""

    term: Term = Term(0)
    vote: NodeId | None = None
    commit: Index = Index(0)


@dataclass(frozen=True, slots=True)
class ConfState:
    """Cluster membership: the voters and the non-voting learners."""

    voters: frozenset[NodeId] = field(default_factory=frozenset)
    learners: frozenset[NodeId] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        both = self.voters & self.learners
        if both:
            raise ValueError(f"nodes cannot be both voter and learner: {sorted(both)}")


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """Where a snapshot sits in the log, and the membership as of that point.

    An empty storage has ``SnapshotMeta(Index(0), Term(0), ConfState())``.
    """

    index: Index = Index(0)
    term: Term = Term(0)
    conf_state: ConfState = field(default_factory=ConfState)

"""Majority quorum arithmetic (Raft §5.2, §5.3): vote tallies and the commit index."""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping

from crema.raft.types import Index, NodeId


class VoteResult(enum.Enum):
    """Outcome of an election so far."""

    PENDING = 0
    WON = 1
    LOST = 2


def majority(n: int) -> int:
    """Votes needed among ``n`` voters."""
    return n // 2 + 1


def committed_index(voters: Collection[NodeId], match: Mapping[NodeId, Index]) -> Index:
    """The largest index replicated on a majority of ``voters``.

    An empty voter set commits nothing it does not need to: it returns a huge
    index so that a caller taking ``min`` with other bounds is not limited.

    Args:
        voters: the voting members.
        match: highest index known replicated per node (missing means 0).
    """
    if not voters:
        return Index(1 << 62)
    values = sorted((match.get(v, 0) for v in voters), reverse=True)
    return Index(values[majority(len(values)) - 1])


def vote_result(voters: Collection[NodeId], votes: Mapping[NodeId, bool]) -> VoteResult:
    """Tally ``votes`` (granted or rejected per voter) against ``voters``."""
    if not voters:
        return VoteResult.WON
    granted = sum(1 for v in voters if votes.get(v) is True)
    rejected = sum(1 for v in voters if votes.get(v) is False)
    need = majority(len(voters))
    if granted >= need:
        return VoteResult.WON
    if len(voters) - rejected >= need:
        return VoteResult.PENDING
    return VoteResult.LOST


def has_quorum(voters: Collection[NodeId], active: Collection[NodeId]) -> bool:
    """Whether the ``active`` nodes include a majority of ``voters``."""
    if not voters:
        return True
    return sum(1 for v in voters if v in active) >= majority(len(voters))

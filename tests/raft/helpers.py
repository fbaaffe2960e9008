"""Building single Raft cores with a prepared log, for unit tests."""

from __future__ import annotations

import random

from crema.raft.config import RaftConfig
from crema.raft.core import Raft
from crema.raft.memory_storage import MemoryStorage
from crema.raft.messages import Message, MessageType
from crema.raft.types import ConfState, Entry, HardState, Index, NodeId, Term


def make_storage(
    terms: list[int], peers: list[int], term: int = 0, commit: int = 0
) -> MemoryStorage:
    """A storage holding one entry per element of ``terms`` (index 1..n)."""
    storage = MemoryStorage()
    storage.append([Entry(Index(i + 1), Term(t)) for i, t in enumerate(terms)])
    top = max([term, *terms]) if terms else term
    storage.set_hard_state(HardState(Term(top), None, Index(commit)))
    storage.set_conf_state(ConfState(frozenset(NodeId(p) for p in peers)))
    return storage


def make_raft(
    node_id: int,
    peers: list[int],
    terms: list[int] | None = None,
    term: int = 0,
    commit: int = 0,
    pre_vote: bool = False,
    check_quorum: bool = False,
    seed: int = 0,
    **kwargs: object,
) -> Raft:
    """A Raft core over :func:`make_storage` (pre-vote and check-quorum off by default)."""
    storage = make_storage(terms or [], peers, term, commit)
    config = RaftConfig(
        id=NodeId(node_id),
        pre_vote=pre_vote,
        check_quorum=check_quorum,
        **kwargs,  # type: ignore[arg-type]
    )
    return Raft(config, storage, random.Random(seed))


def msg(kind: MessageType, frm: int, to: int, term: int, **kwargs: object) -> Message:
    """A message with the given fields."""
    return Message(kind, NodeId(to), NodeId(frm), Term(term), **kwargs)  # type: ignore[arg-type]


def take(r: Raft) -> list[Message]:
    """The messages ``r`` queued, removing them."""
    out, r.msgs = r.msgs, []
    return out


def elect(r: Raft) -> None:
    """Make ``r`` leader by granting it every vote (pre-vote off)."""
    r.step(msg(MessageType.HUP, r.id, r.id, 0))
    for node in sorted(r.conf.voters - {r.id}):
        r.step(msg(MessageType.VOTE_RESP, node, r.id, r.term))
    take(r)

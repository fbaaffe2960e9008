"""Messages exchanged by Raft cores, and the local inputs that reuse the same shape.

A :class:`Message` is a frozen value. The runtime moves it between nodes (the
transport codec encodes it with msgpack); the core never looks at the wire.
Field meanings follow etcd raft's ``raftpb.Message``:

* ``term``: the sender's term; 0 only for local messages (``HUP``, ``BEAT``).
* ``log_term``/``index``: for ``APP`` the entry preceding ``entries``; for
  votes the candidate's last entry; for ``APP_RESP`` the highest index
  matched (accept) or the rejected probe index (reject).
* ``reject_hint``/``log_term`` on a rejected ``APP_RESP``: the follower's
  hint for fast backtracking (an index whose term is at most ``log_term``).
* ``context``: opaque bytes, the ReadIndex request id, or ``b"transfer"`` on
  votes caused by a leadership transfer.
* ``snapshot``: the snapshot metadata of a ``SNAP`` message; the snapshot
  bytes travel outside the core.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from crema.raft.types import Entry, Index, NodeId, SnapshotMeta, Term


class MessageType(enum.IntEnum):
    """What a message asks for or answers."""

    HUP = 0
    """Local: start an election (pre-vote first when enabled)."""
    BEAT = 1
    """Local: a leader's heartbeat timer fired."""
    APP = 2
    """Append entries (also the probe)."""
    APP_RESP = 3
    """Answer to ``APP`` or ``SNAP``."""
    VOTE = 4
    """Request a vote (Raft §5.2)."""
    VOTE_RESP = 5
    """Answer to ``VOTE``."""
    PRE_VOTE = 6
    """Ask whether a vote would be granted, without disrupting terms (thesis §9.6)."""
    PRE_VOTE_RESP = 7
    """Answer to ``PRE_VOTE``."""
    SNAP = 8
    """Install the snapshot described by ``snapshot``; the runtime attaches the bytes."""
    HEARTBEAT = 9
    """Leader heartbeat; carries a commit index the follower can trust."""
    HEARTBEAT_RESP = 10
    """Answer to ``HEARTBEAT``, echoing its context (ReadIndex acks)."""
    TIMEOUT_NOW = 11
    """Leadership transfer: campaign now, ignoring the election timer."""
    READ_INDEX = 12
    """A follower asks the leader for a read index on behalf of a client."""
    READ_INDEX_RESP = 13
    """The leader's answer to ``READ_INDEX``; ``reject`` when it could not serve it."""


_T0 = Term(0)
_I0 = Index(0)

LOCAL_MESSAGES = frozenset({MessageType.HUP, MessageType.BEAT})
VOTE_REQUESTS = frozenset({MessageType.VOTE, MessageType.PRE_VOTE})

TRANSFER_CONTEXT = b"transfer"
"""``context`` of vote requests sent because of ``TIMEOUT_NOW``: they bypass leases."""


@dataclass(frozen=True, slots=True)
class Message:
    """One Raft message; see the module docstring for the meaning of each field."""

    type: MessageType
    to: NodeId
    frm: NodeId
    term: Term = _T0
    log_term: Term = _T0
    index: Index = _I0
    entries: tuple[Entry, ...] = ()
    commit: Index = _I0
    reject: bool = False
    reject_hint: Index = _I0
    context: bytes = b""
    snapshot: SnapshotMeta | None = None


_SETTERS = tuple(
    Message.__dict__[name].__set__
    for name in (
        "type", "to", "frm", "term", "log_term", "index",
        "entries", "commit", "reject", "reject_hint", "context", "snapshot",
    )
)  # fmt: skip
_new = object.__new__


def make_message(
    type: MessageType,
    to: NodeId,
    frm: NodeId,
    term: Term,
    log_term: Term,
    index: Index,
    entries: tuple[Entry, ...],
    commit: Index,
    reject: bool,
    reject_hint: Index,
    context: bytes,
    snapshot: SnapshotMeta | None,
) -> Message:
    """``Message(...)`` with every field given, without the dataclass ``__init__``.

    The same value, built about three times faster (hot paths: appends and
    their responses, decoding).
    """
    m: Message = _new(Message)
    s = _SETTERS
    s[0](m, type)
    s[1](m, to)
    s[2](m, frm)
    s[3](m, term)
    s[4](m, log_term)
    s[5](m, index)
    s[6](m, entries)
    s[7](m, commit)
    s[8](m, reject)
    s[9](m, reject_hint)
    s[10](m, context)
    s[11](m, snapshot)
    return m

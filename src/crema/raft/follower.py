"""The follower's side of the core: appends (§5.3), heartbeats, snapshots (§7), TimeoutNow.

Functions here take the :class:`~crema.raft.core.Raft` they act on, like
:mod:`crema.raft.replication` does for the leader's side.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crema.raft.messages import Message, MessageType, make_message
from crema.raft.read_only import ReadState
from crema.raft.types import Index, Term

if TYPE_CHECKING:
    from crema.raft.core import Raft

_APP = MessageType.APP
_APP_RESP = MessageType.APP_RESP
_T0 = Term(0)
_I0 = Index(0)
_HEARTBEAT = MessageType.HEARTBEAT
_SNAP = MessageType.SNAP


def step_follower(r: Raft, m: Message) -> None:
    """Handle a message addressed to a follower (§5.3, §7, thesis §3.10 and §6.4)."""
    kind = m.type
    if kind is _APP:
        r.election_elapsed = 0
        r.lead = m.frm
        _handle_append(r, m)
    elif kind is _HEARTBEAT:
        r.election_elapsed = 0
        r.lead = m.frm
        r.log.commit_to(min(m.commit, r.log.last_index()))
        r.send(Message(MessageType.HEARTBEAT_RESP, m.frm, r.id, r.term, context=m.context))
    elif kind is _SNAP:
        r.election_elapsed = 0
        r.lead = m.frm
        _handle_snapshot(r, m)
    elif kind is MessageType.TIMEOUT_NOW:
        r.hup(transfer=True)
    elif kind is MessageType.READ_INDEX_RESP and not m.reject:
        r.read_states.append(ReadState(m.index, m.context))


def _handle_append(r: Raft, m: Message) -> None:
    log = r.log
    if m.index < log.committed:
        r.send(Message(MessageType.APP_RESP, m.frm, r.id, r.term, index=log.committed))
        return
    last_new = log.maybe_append(m.index, m.log_term, m.commit, m.entries)
    if last_new is not None:
        r.msgs.append(
            make_message(
                _APP_RESP, m.frm, r.id, r.term, _T0, last_new, (), _I0, False, _I0, b"", None
            )
        )
        return
    hint, hint_term = log.find_conflict_by_term(min(m.index, log.last_index()), m.log_term)
    r.send(
        Message(
            MessageType.APP_RESP,
            m.frm,
            r.id,
            r.term,
            hint_term,
            m.index,
            reject=True,
            reject_hint=hint,
        )
    )


def _handle_snapshot(r: Raft, m: Message) -> None:
    meta = m.snapshot
    assert meta is not None, "SNAP message without snapshot metadata"
    log = r.log
    if meta.index <= log.committed:
        index = log.committed
    elif log.match_term(meta.index, meta.term):
        log.commit_to(meta.index)
        index = log.committed
    else:
        log.restore(meta)
        r.conf = meta.conf_state
        r.reset_progress()
        index = log.last_index()
    r.send(Message(MessageType.APP_RESP, m.frm, r.id, r.term, index=index))

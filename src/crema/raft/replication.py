"""The leader's side of the core: replication, commitment, heartbeats, reads, transfers.

Functions here take the :class:`~crema.raft.core.Raft` they act on; they
are split out of ``core.py`` only to keep modules small. Sections of the Raft
paper: §5.3 (log replication), §5.4.2 (commit only current-term entries by
counting replicas), thesis §6.4 (ReadIndex), thesis §3.10 (leadership
transfer), etcd's flow control (probe/replicate/snapshot, inflights).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crema.errors import CompactedError
from crema.raft import quorum
from crema.raft.messages import Message, MessageType, make_message
from crema.raft.progress import Progress, ProgressState
from crema.raft.read_only import ReadState
from crema.raft.types import Index, NodeId

if TYPE_CHECKING:
    from crema.raft.core import Raft

_APP = MessageType.APP
_I0 = Index(0)
_REPLICATE = ProgressState.REPLICATE


def send_append(r: Raft, to: NodeId, send_if_empty: bool = True) -> bool:
    """Send ``to`` the entries it lacks, or a snapshot when they were compacted.

    Returns:
        whether a message was sent.
    """
    pr = r.progress[to]
    if pr.is_paused():
        return False
    log = r.log
    prev = pr.next - 1
    prev_term = log.term(prev)
    entries = None
    if prev_term is not None:
        try:
            entries = log.entries_from(pr.next, r.max_size_per_msg)
        except CompactedError:
            entries = None
    if entries is None or prev_term is None:
        return _send_snapshot(r, to, pr)
    if not entries and not send_if_empty:
        return False
    prev_index: Index = prev  # type: ignore[assignment]  # Index() is a call on the hot path
    last = entries[-1].index if entries else prev_index
    message = make_message(
        _APP, to, r.id, r.term, prev_term, prev_index, tuple(entries), log.committed,
        False, _I0, b"", None,
    )  # fmt: skip
    r.msgs.append(message)
    pr.sent_entries(last, len(entries))
    pr.sent_commit = log.committed
    return True


def _send_snapshot(r: Raft, to: NodeId, pr: Progress) -> bool:
    meta = r.log.snapshot_meta()
    assert meta.index > 0, "entries are compacted but no snapshot exists"
    r.msgs.append(Message(MessageType.SNAP, to, r.id, r.term, snapshot=meta))
    pr.become_snapshot(meta.index)
    return True


def bcast_append(r: Raft) -> None:
    """Send every follower what it lacks, or the commit index if it was not sent yet."""
    committed = r.log.committed
    for node, pr in r.progress.items():
        if node != r.id:
            send_append(r, node, send_if_empty=pr.sent_commit < committed)


def bcast_heartbeat(r: Raft, context: bytes = b"") -> None:
    """Send a heartbeat to every follower, tagged with a ReadIndex ``context``."""
    committed = r.log.committed
    for node, pr in r.progress.items():
        if node != r.id:
            commit = Index(min(pr.match, committed))
            r.msgs.append(
                Message(MessageType.HEARTBEAT, node, r.id, r.term, commit=commit, context=context)
            )


def maybe_commit(r: Raft) -> bool:
    """Advance the commit index to what a majority replicated, if from this term (§5.4.2)."""
    match = {node: pr.match for node, pr in r.progress.items()}
    if r.config.testing_bug == "count-own-before-durable" and r.id in match:
        match[r.id] = r.log.last_index()  # deliberate bug: count our unpersisted entries
    index = quorum.committed_index(r.conf.voters, match)
    log = r.log
    if index <= log.committed:
        return False
    if r.config.testing_bug == "commit-old-term":
        # Deliberate bug for the simulation: commit by counting replicas of old-term entries.
        log.commit_to(min(index, log.last_index()))
        committed = True
    else:
        committed = log.maybe_commit(index, r.term)
    if committed and r.pending_reads and log.term(log.committed) == r.term:
        pending, r.pending_reads = r.pending_reads, []
        for context, requester in pending:
            leader_read(r, context, requester)
    return committed


def step_leader(r: Raft, m: Message) -> None:
    """Handle a message addressed to the leader."""
    kind = m.type
    if kind is MessageType.BEAT:
        bcast_heartbeat(r, r.read_only.last_pending_context() or b"")
        return
    if kind is MessageType.READ_INDEX:
        leader_read(r, m.context, m.frm)
        return
    pr = r.progress.get(m.frm)
    if pr is None:
        return
    if kind is MessageType.APP_RESP:
        pr.recent_active = True
        _handle_append_response(r, m, pr)
    elif kind is MessageType.HEARTBEAT_RESP:
        pr.recent_active = True
        _handle_heartbeat_response(r, m, pr)


def _handle_reject(r: Raft, m: Message, pr: Progress) -> None:
    next_probe = m.reject_hint
    if m.log_term > 0:
        next_probe = r.log.find_conflict_by_term(m.reject_hint, m.log_term)[0]
    if pr.maybe_decr_to(m.index, next_probe):
        if pr.state is _REPLICATE:
            pr.become_probe()
        send_append(r, m.frm)


def _handle_append_response(r: Raft, m: Message, pr: Progress) -> None:
    if m.reject:
        _handle_reject(r, m, pr)
        return
    was_paused = pr.is_paused()
    if not pr.maybe_update(m.index):
        return
    state = pr.state
    if state is ProgressState.PROBE:
        pr.become_replicate()
    elif state is ProgressState.SNAPSHOT:
        if pr.match + 1 >= r.log.first_index():
            pr.become_probe()
            pr.become_replicate()
    else:
        pr.inflights.free_le(m.index)
    log = r.log
    # Only this follower's match moved: nothing new can commit unless it passed
    # the commit index.
    if pr.match > log.committed and maybe_commit(r):
        r.commit_pending = True
    elif was_paused:
        send_append(r, m.frm)
    while pr.next <= log.last_index() and send_append(r, m.frm, send_if_empty=False):
        pass
    if m.frm == r.lead_transferee and pr.match == r.log.last_index():
        send_timeout_now(r, m.frm)


def _handle_heartbeat_response(r: Raft, m: Message, pr: Progress) -> None:
    pr.paused = False
    if pr.state is _REPLICATE and pr.inflights.full():
        # Appends may have been lost; free a slot so that replication resumes
        # (a gap makes the follower reject and the leader probe again).
        pr.inflights.free_first_one()
    if pr.match < r.log.last_index() or pr.state is ProgressState.PROBE:
        send_append(r, m.frm)
    if not m.context:
        return
    acks = r.read_only.recv_ack(m.frm, m.context)
    if acks is None or not quorum.has_quorum(r.conf.voters, acks):
        return
    for status in r.read_only.advance(m.context):
        _respond_read(r, status.requester, status.index, status.context)


def leader_read(r: Raft, context: bytes, requester: NodeId) -> None:
    """Serve a ReadIndex request on the leader (thesis §6.4)."""
    log = r.log
    if r.conf.voters == {r.id}:
        _respond_read(r, requester, log.committed, context)
        return
    if log.term(log.committed) != r.term:
        # Our commit index is only known current once an entry of this term committed.
        r.pending_reads.append((context, requester))
        return
    if r.read_only.add_request(log.committed, requester, context, r.id):
        bcast_heartbeat(r, context)


def _respond_read(r: Raft, requester: NodeId, index: Index, context: bytes) -> None:
    if requester == r.id:
        r.read_states.append(ReadState(index, context))
    else:
        r.msgs.append(
            Message(
                MessageType.READ_INDEX_RESP, requester, r.id, r.term, index=index, context=context
            )
        )


def send_timeout_now(r: Raft, to: NodeId) -> None:
    """Tell ``to`` to campaign immediately (the end of a leadership transfer)."""
    r.msgs.append(Message(MessageType.TIMEOUT_NOW, to, r.id, r.term))


def check_quorum_active(r: Raft) -> bool:
    """Whether a quorum was heard from since the last check; resets the marks."""
    active = {r.id}
    for node, pr in r.progress.items():
        if pr.recent_active:
            active.add(node)
        if node != r.id:
            pr.recent_active = False
    return quorum.has_quorum(r.conf.voters, active)

"""The Raft state machine (layer L0): roles, terms, elections and the follower side.

Driven by :class:`crema.raft.rawnode.RawNode`; leader-side replication lives in
:mod:`crema.raft.replication`. Messages to send accumulate in ``Raft.msgs``.

Invariants (checked by the simulation in ``tests/sim`` after every step):

* Election safety (§5.2): at most one leader per term; a node votes at most
  once per term (``vote`` is persisted before the vote response is sent).
* Log matching (§5.3): an append is accepted only when the log holds the
  preceding entry with the same term; conflicting uncommitted entries are
  truncated, committed ones never are.
* Leader completeness (§5.4): a vote (and a pre-vote) is granted only to a
  candidate whose log is at least as up-to-date (§5.4.1).
* Commitment (§5.4.2): the leader commits by counting replicas only entries
  of its own term; each new leader appends an empty entry to get there.
  The leader counts its own replica of an entry only once the runtime reports
  it durable (``persisted_to``), so it may send appends before its own fsync
  (thesis §10.2.1).
* Membership: one change at a time; a change takes effect when applied; a
  new conf change is refused while an earlier one is unapplied; a node with
  unapplied conf changes does not campaign; a leader removed (or demoted)
  steps down once it applies its removal.
* Leases (check-quorum): a leader steps down when it has not heard from a
  quorum within an election timeout; a node that heard from a leader within
  the election timeout ignores vote requests, unless they come from a
  leadership transfer.
"""

from __future__ import annotations

import enum
import random

from crema.errors import (
    InvalidConfChangeError,
    NotLeaderError,
    ProposalDroppedError,
    ProposalInProgressError,
)
from crema.raft import follower, quorum, replication
from crema.raft.confchange import ConfChange
from crema.raft.config import RaftConfig
from crema.raft.log import RaftLog
from crema.raft.messages import TRANSFER_CONTEXT, VOTE_REQUESTS, Message, MessageType
from crema.raft.progress import Progress
from crema.raft.read_only import ReadOnly, ReadState
from crema.raft.storage import Storage
from crema.raft.types import (
    ConfState,
    Entry,
    EntryType,
    HardState,
    Index,
    NodeId,
    Term,
    entry_unchecked,
)

_APP = MessageType.APP
_HEARTBEAT = MessageType.HEARTBEAT
_SNAP = MessageType.SNAP
_NORMAL = EntryType.NORMAL
_FROM_LEADER = frozenset({_APP, _HEARTBEAT, _SNAP})


class Role(enum.Enum):
    """The role a node plays."""

    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


class Raft:
    """One node's Raft state; see the module docstring for the invariants."""

    def __init__(self, config: RaftConfig, storage: Storage, rng: random.Random) -> None:
        hard_state, conf = storage.initial_state()
        self.config = config
        self.id = config.id
        self.rng = rng
        self.log = RaftLog(storage, config.applied)
        # Everything up to the compaction point is committed even if a crash
        # came between installing a snapshot and persisting the hard state.
        commit = Index(max(hard_state.commit, storage.first_index() - 1))
        if commit > self.log.last_index():
            raise RuntimeError(
                f"hard state commit {commit} beyond the last index {self.log.last_index()}"
            )
        if config.applied > commit:
            raise RuntimeError(f"applied {config.applied} beyond commit {commit}")
        self.log.committed = commit
        self.max_size_per_msg = config.max_size_per_msg
        self.term = hard_state.term
        self.vote: NodeId | None = hard_state.vote
        self.lead: NodeId | None = None
        self.role = Role.FOLLOWER
        self.conf = conf
        self.progress: dict[NodeId, Progress] = {}
        self.votes: dict[NodeId, bool] = {}
        self.msgs: list[Message] = []
        self.read_states: list[ReadState] = []
        self.read_only = ReadOnly()
        self.pending_reads: list[tuple[bytes, NodeId]] = []
        self.pending_conf_index = Index(0)
        self.lead_transferee: NodeId | None = None
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = config.election_tick
        self.bcast_pending = False
        self.commit_pending = False
        """Leader: the commit index advanced and followers were not told yet."""
        self.become_follower(self.term, None)

    # -- state -------------------------------------------------------------------

    def hard_state(self) -> HardState:
        """The state that must be persisted before messages depending on it are sent."""
        return HardState(self.term, self.vote, self.log.committed)

    def promotable(self) -> bool:
        """Whether this node may campaign: a voter without a pending snapshot."""
        return self.id in self.conf.voters and self.log.pending_snapshot is None

    def _reset(self, term: Term) -> None:
        if term != self.term:
            self.term = term
            self.vote = None
        self.lead = None
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        election = self.config.election_tick
        self.randomized_election_timeout = election + self.rng.randrange(election)
        self.lead_transferee = None
        self.votes = {}
        self.reset_progress()
        self.pending_conf_index = Index(0)
        self.read_only.reset()
        self.pending_reads = []
        self.bcast_pending = False
        self.commit_pending = False

    def reset_progress(self) -> None:
        """Forget what we knew of every peer's log (a new term or a new membership)."""
        last = self.log.last_index()
        inflight = self.config.max_inflight
        self.progress = {}
        for node in self.conf.voters:
            self.progress[node] = Progress(Index(last + 1), inflight)
        for node in self.conf.learners:
            self.progress[node] = Progress(Index(last + 1), inflight, is_learner=True)
        mine = self.progress.get(self.id)
        if mine is not None:
            mine.match = last
            mine.recent_active = True

    def become_follower(self, term: Term, lead: NodeId | None) -> None:
        """Follow ``lead`` (None when unknown) in ``term``."""
        self._reset(term)
        self.lead = lead
        self.role = Role.FOLLOWER

    def become_pre_candidate(self) -> None:
        """Start a pre-vote round; the term and vote do not change (thesis §9.6)."""
        assert self.role is not Role.LEADER, "a leader cannot become pre-candidate"
        self.votes = {}
        self.lead = None
        self.role = Role.PRE_CANDIDATE

    def become_candidate(self) -> None:
        """Start an election in a new term, voting for ourselves (§5.2)."""
        assert self.role is not Role.LEADER, "a leader cannot become candidate"
        self._reset(Term(self.term + 1))
        self.vote = self.id
        self.role = Role.CANDIDATE

    def become_leader(self) -> None:
        """Lead the current term; append the term's no-op entry (§5.4.2, §8)."""
        assert self.role is not Role.FOLLOWER, "a follower cannot become leader directly"
        self._reset(self.term)
        self.lead = self.id
        self.role = Role.LEADER
        self.progress[self.id].become_replicate()
        # Conf changes wait until everything of earlier terms is applied.
        self.pending_conf_index = self.log.last_index()
        self.append_entries([(EntryType.NORMAL, b"")])

    # -- ticks -------------------------------------------------------------------

    def tick(self) -> None:
        """Advance the logical clock by one tick."""
        if self.role is Role.LEADER:
            self._tick_heartbeat()
            return
        self.election_elapsed += 1
        if self.election_elapsed >= self.randomized_election_timeout:
            self.election_elapsed = 0
            if self.promotable():
                self.step(Message(MessageType.HUP, self.id, self.id))

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.config.election_tick:
            self.election_elapsed = 0
            if self.config.check_quorum and not replication.check_quorum_active(self):
                self.become_follower(self.term, None)
                return
            self.lead_transferee = None
        if self.heartbeat_elapsed >= self.config.heartbeat_tick:
            self.heartbeat_elapsed = 0
            self.step(Message(MessageType.BEAT, self.id, self.id))

    # -- stepping ------------------------------------------------------------------

    def step(self, m: Message) -> None:
        """Handle one message: term bookkeeping (§5.1), then role dispatch."""
        if m.term > self.term:
            if m.type in VOTE_REQUESTS:
                in_lease = (
                    self.config.check_quorum
                    and self.lead is not None
                    and self.election_elapsed < self.config.election_tick
                )
                if in_lease and m.context != TRANSFER_CONTEXT:
                    return
            if m.type is MessageType.PRE_VOTE or (
                m.type is MessageType.PRE_VOTE_RESP and not m.reject
            ):
                pass  # pre-votes use a future term without changing ours
            else:
                self.become_follower(m.term, m.frm if m.type in _FROM_LEADER else None)
        elif 0 < m.term < self.term:
            self._step_stale(m)
            return
        if m.type is MessageType.HUP:
            self.hup(transfer=False)
        elif m.type in VOTE_REQUESTS:
            self._handle_vote_request(m)
        elif self.role is Role.LEADER:
            replication.step_leader(self, m)
        elif self.role is Role.FOLLOWER:
            follower.step_follower(self, m)
        else:
            self._step_candidate(m)

    def _step_stale(self, m: Message) -> None:
        if (self.config.check_quorum or self.config.pre_vote) and m.type in (_APP, _HEARTBEAT):
            # Tell a stale leader about our term so it steps down (and a node
            # isolated by pre-vote/check-quorum can rejoin).
            self.send(Message(MessageType.APP_RESP, m.frm, self.id, self.term))
        elif m.type is MessageType.PRE_VOTE:
            self.send(Message(MessageType.PRE_VOTE_RESP, m.frm, self.id, self.term, reject=True))

    def send(self, m: Message) -> None:
        """Queue ``m`` for the next Ready."""
        self.msgs.append(m)

    # -- elections ------------------------------------------------------------------

    def hup(self, transfer: bool) -> None:
        """Campaign (pre-vote first unless ``transfer``) if this node may."""
        if self.role is Role.LEADER or not self.promotable():
            return
        if self._has_unapplied_conf_changes():
            return
        if self.config.pre_vote and not transfer:
            self._campaign(pre=True, transfer=False)
        else:
            self._campaign(pre=False, transfer=transfer)

    def _has_unapplied_conf_changes(self) -> bool:
        log = self.log
        lo = max(log.applied + 1, log.first_index())
        if lo > log.committed:
            return False
        entries = log.slice(lo, log.committed + 1)
        return any(e.type is EntryType.CONF_CHANGE for e in entries)

    def _campaign(self, pre: bool, transfer: bool) -> None:
        if pre:
            self.become_pre_candidate()
            kind, term = MessageType.PRE_VOTE, Term(self.term + 1)
        else:
            self.become_candidate()
            kind, term = MessageType.VOTE, self.term
        if self._poll(self.id, granted=True) is quorum.VoteResult.WON:
            self._won(pre)
            return
        context = TRANSFER_CONTEXT if transfer else b""
        last, last_term = self.log.last_index(), self.log.last_term()
        for node in sorted(self.conf.voters):
            if node != self.id:
                self.send(Message(kind, node, self.id, term, last_term, last, context=context))

    def _poll(self, node: NodeId, granted: bool) -> quorum.VoteResult:
        self.votes.setdefault(node, granted)
        return quorum.vote_result(self.conf.voters, self.votes)

    def _won(self, pre: bool) -> None:
        if pre:
            self._campaign(pre=False, transfer=False)
        else:
            self.become_leader()
            replication.bcast_append(self)

    def _handle_vote_request(self, m: Message) -> None:
        pre = m.type is MessageType.PRE_VOTE
        can_vote = (
            self.vote == m.frm
            or (self.vote is None and self.lead is None)
            or (pre and m.term > self.term)
        )
        up_to_date = self.config.testing_bug == "vote-without-log-check" or (
            self.log.is_up_to_date(m.index, m.log_term)
        )
        reply = MessageType.PRE_VOTE_RESP if pre else MessageType.VOTE_RESP
        if can_vote and up_to_date:
            self.send(Message(reply, m.frm, self.id, m.term))
            if not pre:
                self.election_elapsed = 0
                self.vote = m.frm
        else:
            self.send(Message(reply, m.frm, self.id, self.term, reject=True))

    def _step_candidate(self, m: Message) -> None:
        kind = m.type
        if kind in _FROM_LEADER:
            self.become_follower(m.term, m.frm)
            follower.step_follower(self, m)
            return
        pre = self.role is Role.PRE_CANDIDATE
        expected = MessageType.PRE_VOTE_RESP if pre else MessageType.VOTE_RESP
        if kind is not expected:
            return
        result = self._poll(m.frm, granted=not m.reject)
        if result is quorum.VoteResult.WON:
            self._won(pre)
        elif result is quorum.VoteResult.LOST:
            self.become_follower(self.term, None)

    # -- local requests ---------------------------------------------------------------

    def _check_proposal(self) -> None:
        if self.role is not Role.LEADER:
            raise NotLeaderError(f"node {self.id} is not the leader", self.lead)
        if self.lead_transferee is not None:
            raise ProposalDroppedError(
                f"leadership transfer to {self.lead_transferee} in progress", self.lead
            )
        if self.id not in self.progress:
            raise NotLeaderError(f"node {self.id} was removed from the cluster", None)

    def propose(self, data: bytes) -> Entry:
        """Append a command to the leader's log; it replicates on the next Ready.

        Raises:
            NotLeaderError: this node is not the leader (``leader_hint`` says who is).
            ProposalDroppedError: a leadership transfer is in progress.
        """
        if (
            self.role is not Role.LEADER
            or self.lead_transferee is not None
            or self.id not in self.progress
        ):
            self._check_proposal()
        log = self.log
        unstable = log.unstable
        # Hot path: plain ints (Index() is a Python-level call).
        index: Index = log.unstable_offset + len(unstable)  # type: ignore[assignment]
        entry = entry_unchecked(index, self.term, _NORMAL, data)  # index >= 1, term >= 0
        unstable.append(entry)
        # Our own replica counts once the runtime reports the entry durable
        # (persisted_to): the leader sends before its fsync (thesis §10.2.1).
        self.bcast_pending = True
        return entry

    def propose_conf_change(self, change: ConfChange) -> Entry:
        """Append a membership change; it takes effect when applied.

        Raises:
            NotLeaderError, ProposalDroppedError: as for :meth:`propose`.
            ProposalInProgressError: an earlier conf change is not applied yet.
            InvalidConfChangeError: the change would leave no voter.
        """
        self._check_proposal()
        if self.pending_conf_index > self.log.applied:
            raise ProposalInProgressError(
                f"conf change at {self.pending_conf_index} not applied yet", self.lead
            )
        change.apply_to(self.conf)  # validate before it enters the log
        entry = self.append_entries([(EntryType.CONF_CHANGE, change.encode())])[0]
        self.pending_conf_index = entry.index
        self.bcast_pending = True
        return entry

    def append_entries(self, items: list[tuple[EntryType, bytes]]) -> list[Entry]:
        """Leader: append entries of the current term (counted once durable)."""
        log = self.log
        first = log.last_index() + 1
        term = self.term
        entries = [Entry(Index(first + i), term, t, d) for i, (t, d) in enumerate(items)]
        log.append(entries)
        return entries

    def persisted_to(self, index: Index, term: Term) -> None:
        """The runtime made our log durable up to ``index`` (with ``term``).

        A leader counts its own replica toward the commit index only here, so
        that it may send appends before its own fsync (thesis §10.2.1; etcd
        raft's self-addressed append response after a storage write).
        """
        if self.role is not Role.LEADER or self.log.term(index) != term:
            return
        mine = self.progress.get(self.id)
        if mine is not None and mine.maybe_update(index) and replication.maybe_commit(self):
            self.commit_pending = True

    def read_index(self, context: bytes) -> None:
        """Request a linearizable read; a ``ReadState`` with ``context`` follows.

        Raises:
            NotLeaderError: no leader is known to forward the request to.
        """
        if self.role is Role.LEADER:
            replication.leader_read(self, context, self.id)
        elif self.lead is not None:
            self.send(
                Message(MessageType.READ_INDEX, self.lead, self.id, self.term, context=context)
            )
        else:
            raise NotLeaderError(f"node {self.id} knows no leader to read from", None)

    def transfer_leadership(self, to: NodeId) -> None:
        """Hand leadership to voter ``to`` once it is caught up (thesis §3.10).

        Raises:
            NotLeaderError: this node is not the leader.
            ProposalDroppedError: ``to`` is not a voter.
        """
        if self.role is not Role.LEADER:
            raise NotLeaderError(f"node {self.id} is not the leader", self.lead)
        if to in (self.id, self.lead_transferee):
            return
        if to not in self.conf.voters:
            raise ProposalDroppedError(f"transfer target {to} is not a voter", self.lead)
        self.election_elapsed = 0
        self.lead_transferee = to
        if self.progress[to].match == self.log.last_index():
            replication.send_timeout_now(self, to)
        else:
            replication.send_append(self, to)

    def apply_conf_change(self, change: ConfChange) -> ConfState:
        """Make a committed membership change effective; returns the new membership."""
        try:
            conf = change.apply_to(self.conf)
        except InvalidConfChangeError:
            return self.conf
        self.conf = conf
        last = self.log.last_index()
        for node in list(self.progress):
            if node not in conf.voters and node not in conf.learners:
                del self.progress[node]
        for node in conf.voters | conf.learners:
            pr = self.progress.get(node)
            if pr is None:
                pr = self.progress[node] = Progress(Index(last + 1), self.config.max_inflight)
            pr.is_learner = node in conf.learners
        if self.role is Role.LEADER:
            if self.id not in conf.voters:
                self.become_follower(self.term, None)
                return conf
            if self.lead_transferee is not None and self.lead_transferee not in conf.voters:
                self.lead_transferee = None
            replication.maybe_commit(self)
            self.bcast_pending = True
        return conf

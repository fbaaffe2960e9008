"""RawNode: the application-facing driver of the Raft core (etcd ``rawnode.go``).

The runtime owns a :class:`RawNode` and a :class:`~crema.raft.storage.LogStorage`
and loops::

    node.tick()                       # on every timer tick
    node.step(message)                # for every message from a peer
    node.propose(data)                # for client writes (raises if not leader)
    if node.has_ready():
        rd = node.ready()
        # 1. persist: rd.snapshot (install the snapshot file and
        #    storage.apply_snapshot), storage.append(rd.entries),
        #    storage.set_hard_state(rd.hard_state); storage.sync() if rd.must_sync
        #    (the first rd.early_messages of rd.messages may be sent before
        #    step 1: the leader's appends and heartbeats, thesis §10.2.1)
        # 2. send rd.messages (a SNAP message carries the snapshot file)
        # 3. apply rd.committed_entries in order; for CONF_CHANGE entries call
        #    node.apply_conf_change(ConfChange.decode(e.data)) and
        #    storage.set_conf_state(result); serve rd.read_states once applied
        #    reaches their index
        # 4. node.advance(rd)

Messages are only sent after the state they depend on (votes, terms,
appended entries) is durable, which the fixed order above guarantees. The one
exception is the leader's appends and heartbeats when its term and vote are
unchanged: they depend on nothing the Ready persists, and the leader counts
its own entries toward the commit index only after :meth:`RawNode.advance`
reports them durable, so its fsync overlaps the followers' (thesis §10.2.1).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from crema.errors import RaftError
from crema.raft import replication
from crema.raft.confchange import ConfChange, ConfChangeType
from crema.raft.config import RaftConfig
from crema.raft.core import Raft, Role
from crema.raft.messages import LOCAL_MESSAGES, Message, MessageType
from crema.raft.progress import ProgressState
from crema.raft.read_only import ReadState
from crema.raft.storage import LogStorage, Storage
from crema.raft.types import (
    ConfState,
    Entry,
    EntryType,
    HardState,
    Index,
    NodeId,
    SnapshotMeta,
    Term,
)

_APP = MessageType.APP
_HEARTBEAT = MessageType.HEARTBEAT


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state worth reporting: who leads and our role. Never persisted."""

    lead: NodeId | None
    role: Role


@dataclass(frozen=True, slots=True)
class Ready:
    """Work for the runtime, to be done in field order, then :meth:`RawNode.advance`.

    Attributes:
        snapshot: step 1, a snapshot received from the leader: install the
            snapshot file into the state machine and call
            ``storage.apply_snapshot(snapshot)`` before appending ``entries``.
        entries: step 1, entries to append to storage (replacing any at the
            same indexes and after).
        hard_state: step 1, the new hard state to persist (None when unchanged).
        must_sync: step 1, fsync storage before step 2 (entries, a snapshot, or
            a new term or vote; a commit-only change needs no fsync).
        messages: step 2, send only after step 1 is durable, except the first
            ``early_messages`` of them, which may be sent before step 1.
        early_messages: how many leading ``messages`` may be sent before step 1
            (a leader's appends and heartbeats; 0 when the term or vote changed).
        committed_entries: step 3, apply in order (they were persisted earlier
            or in step 1 of this Ready).
        read_states: step 3, serve each read once the applied index reaches its ``index``.
        soft_state: leader and role when they changed (for metrics and routing).
    """

    entries: list[Entry] = field(default_factory=list)
    hard_state: HardState | None = None
    must_sync: bool = False
    messages: list[Message] = field(default_factory=list)
    committed_entries: list[Entry] = field(default_factory=list)
    snapshot: SnapshotMeta | None = None
    read_states: list[ReadState] = field(default_factory=list)
    soft_state: SoftState | None = None
    early_messages: int = 0


@dataclass(frozen=True, slots=True)
class SnapshotPlan:
    """What the runtime does to storage after writing an application snapshot.

    ``storage.create_snapshot(meta)`` then ``storage.compact(compact_index)``.
    """

    meta: SnapshotMeta
    compact_index: Index


@dataclass(frozen=True, slots=True)
class Status:
    """A read-only view of a node for tests, metrics and the admin endpoint."""

    id: NodeId
    term: Term
    vote: NodeId | None
    lead: NodeId | None
    role: Role
    commit: Index
    applied: Index
    last_index: Index
    conf_state: ConfState
    progress: dict[NodeId, tuple[str, Index, Index]]
    """Leader only: node -> (state, match, next)."""


class RawNode:
    """The Raft core as the runtime drives it; see the module docstring for the loop."""

    def __init__(
        self, config: RaftConfig, storage: Storage, rng: random.Random | None = None
    ) -> None:
        self.raft = Raft(config, storage, rng if rng is not None else random.Random(config.id))
        self._prev_hard = storage.initial_state()[0]
        self._prev_soft = SoftState(None, Role.FOLLOWER)

    # -- inputs ------------------------------------------------------------------

    @property
    def id(self) -> NodeId:
        """This node's id."""
        return self.raft.id

    def tick(self) -> None:
        """Advance the logical clock by one tick (elections, heartbeats, leases)."""
        self.raft.tick()

    def campaign(self) -> None:
        """Start an election now (pre-vote first when enabled)."""
        self.raft.hup(transfer=False)

    def step(self, message: Message) -> None:
        """Handle a message received from a peer (a ``SNAP`` installs a snapshot).

        Raises:
            RaftError: the message is a local message type or addressed elsewhere.
        """
        if message.type in LOCAL_MESSAGES:
            raise RaftError(f"local message {message.type.name} cannot come from the network")
        if message.to != self.raft.id:
            raise RaftError(f"message for node {message.to} stepped into node {self.raft.id}")
        self.raft.step(message)

    def propose(self, data: bytes) -> Entry:
        """Propose a command; returns the entry, whose (index, term) identify it.

        The proposal succeeded when a committed entry with that index *and*
        term is applied; an entry with another term at that index means it
        was lost with the leader.

        Raises:
            NotLeaderError: this node is not the leader; ``leader_hint`` names one.
            ProposalDroppedError: a leadership transfer is in progress.
        """
        return self.raft.propose(data)

    def propose_conf_change(self, change: ConfChange) -> Entry:
        """Propose one membership change (see :meth:`Raft.propose_conf_change`)."""
        return self.raft.propose_conf_change(change)

    def add_voter(self, node: NodeId) -> Entry:
        """Propose adding ``node`` as a voter (or promoting the learner ``node``)."""
        return self.propose_conf_change(ConfChange(ConfChangeType.ADD_VOTER, node))

    def add_learner(self, node: NodeId) -> Entry:
        """Propose adding ``node`` as a non-voting learner."""
        return self.propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, node))

    def remove_node(self, node: NodeId) -> Entry:
        """Propose removing ``node``."""
        return self.propose_conf_change(ConfChange(ConfChangeType.REMOVE_NODE, node))

    def apply_conf_change(self, change: ConfChange) -> ConfState:
        """Make a committed membership change effective, when applying its entry.

        Returns:
            the new membership; the runtime records it with ``storage.set_conf_state``.
        """
        return self.raft.apply_conf_change(change)

    def read_index(self, context: bytes) -> None:
        """Ask for a linearizable read; a ``ReadState`` with ``context`` arrives in a Ready.

        ``context`` must be unique in the cluster (prefix it with the node id).
        The request may be silently dropped (leader change, lost message): the
        runtime times it out.

        Raises:
            NotLeaderError: no leader is known.
        """
        self.raft.read_index(context)

    def transfer_leadership(self, to: NodeId) -> None:
        """Hand leadership to ``to``; proposals are refused until done or timed out."""
        self.raft.transfer_leadership(to)

    def report_unreachable(self, to: NodeId) -> None:
        """The transport failed to deliver to ``to``: stop pipelining, probe again."""
        pr = self.raft.progress.get(to)
        leader = self.raft.role is Role.LEADER
        if leader and pr is not None and pr.state is ProgressState.REPLICATE:
            pr.become_probe()

    def report_snapshot(self, to: NodeId, success: bool) -> None:
        """The snapshot send to ``to`` finished; on failure it is retried later."""
        pr = self.raft.progress.get(to)
        if self.raft.role is not Role.LEADER or pr is None:
            return
        if pr.state is not ProgressState.SNAPSHOT:
            return
        if not success:
            pr.pending_snapshot = Index(0)
        pr.become_probe()
        pr.paused = True  # wait for the follower's answer (or a heartbeat) before probing

    def snapshot_created(self, index: Index, keep_entries: int = 0) -> SnapshotPlan:
        """The application wrote a snapshot of its state at ``index`` (at most applied).

        Args:
            index: the applied index the snapshot includes.
            keep_entries: trailing entries to keep before ``index`` so that
                slightly lagging followers need no snapshot.

        Returns:
            the plan to carry out on storage (record the snapshot, then compact).

        Raises:
            RaftError: ``index`` is beyond the applied index or not in the log.
        """
        log = self.raft.log
        if index > log.applied:
            raise RaftError(f"snapshot index {index} is beyond the applied index {log.applied}")
        term = log.term(index)
        if term is None:
            raise RaftError(f"snapshot index {index} is no longer in the log")
        meta = SnapshotMeta(index, term, self.raft.conf)
        return SnapshotPlan(meta, Index(max(0, index - max(0, keep_entries))))

    # -- outputs -----------------------------------------------------------------

    def _soft_state(self) -> SoftState:
        return SoftState(self.raft.lead, self.raft.role)

    def _flush(self, hold_commit: bool) -> None:
        raft = self.raft
        if raft.bcast_pending or (raft.commit_pending and not hold_commit):
            raft.bcast_pending = raft.commit_pending = False
            if raft.role is Role.LEADER:
                replication.bcast_append(raft)

    def has_ready(self, hold_commit: bool = False) -> bool:
        """Whether :meth:`ready` has something to hand out.

        Args:
            hold_commit: leave a new commit index unsent when no new entries go
                out (the runtime sends it a moment later with :meth:`ready`
                without ``hold_commit``, so that one append covers several
                commits, or rides along with the next entries).
        """
        self._flush(hold_commit)
        raft = self.raft
        log = raft.log
        return bool(
            raft.msgs
            or log.unstable
            or log.pending_snapshot is not None
            or raft.read_states
            or log.has_next_committed_entries()
            or self._prev_hard.term != raft.term
            or self._prev_hard.vote != raft.vote
            or self._prev_hard.commit != log.committed
            or self._prev_soft.lead != raft.lead
            or self._prev_soft.role is not raft.role
        )

    def commit_held(self) -> bool:
        """Whether a new commit index waits to be sent (see ``hold_commit``)."""
        return self.raft.commit_pending

    def ready(self, hold_commit: bool = False) -> Ready:
        """Collect the work to do; call :meth:`advance` with it once done.

        Args:
            hold_commit: as for :meth:`has_ready`.
        """
        self._flush(hold_commit)
        raft = self.raft
        log = raft.log
        hard = raft.hard_state()
        prev = self._prev_hard
        new_hard = None if hard == prev else hard
        soft = self._soft_state()
        messages, raft.msgs = raft.msgs, []
        read_states, raft.read_states = raft.read_states, []
        entries = list(log.unstable)
        snapshot = log.pending_snapshot
        must_sync = bool(entries) or snapshot is not None
        early = 0
        if new_hard is not None and (hard.term != prev.term or hard.vote != prev.vote):
            must_sync = True
        elif raft.role is Role.LEADER:
            for m in messages:
                if m.type is not _APP and m.type is not _HEARTBEAT:
                    break
                early += 1
        return Ready(
            entries=entries,
            hard_state=new_hard,
            must_sync=must_sync,
            messages=messages,
            committed_entries=log.next_committed_entries(raft.config.max_committed_size_per_ready),
            snapshot=snapshot,
            read_states=read_states,
            soft_state=None if soft == self._prev_soft else soft,
            early_messages=early,
        )

    def _leads_durably(self) -> bool:
        """Whether this node leads with its term and vote persisted (the last Ready's)."""
        raft, prev = self.raft, self._prev_hard
        return raft.role is Role.LEADER and raft.term == prev.term and raft.vote == prev.vote

    def take_early_messages(self, hold_commit: bool = False) -> list[Message]:
        """A leader's appends and heartbeats that may go out before the pending Ready is done.

        Between :meth:`ready` and :meth:`advance` (while the runtime waits for
        its fsync) new proposals and read requests need not wait: a leader
        whose term and vote are persisted may send the appends that carry them
        at once (thesis §10.2.1; it counts its own entries only when a later
        Ready's :meth:`advance` reports them durable). The rest stays for the
        next :meth:`ready`.

        Args:
            hold_commit: as for :meth:`has_ready`.
        """
        if not self._leads_durably():
            return []
        raft = self.raft
        self._flush(hold_commit)
        msgs = raft.msgs
        count = 0
        for m in msgs:
            if m.type is not _APP and m.type is not _HEARTBEAT:
                break
            count += 1
        if not count:
            return []
        early = msgs[:count]
        del msgs[:count]
        return early

    def take_applicable(self, written: int) -> tuple[list[Entry], list[ReadState]]:
        """A leader's new committed entries and read states, usable before the Ready is done.

        What :meth:`take_early_messages` is to messages: while the runtime
        waits for a Ready's fsync, a leader whose term and vote are persisted
        may apply entries a quorum committed (etcd raft applies committed
        entries before they are stable locally too, with asynchronous storage
        writes) and serve read states. The entries count as applied once
        handed out: apply them now, in order, after the pending Ready's own
        committed entries.

        Args:
            written: the last index written to storage (at least handed to the
                OS): entries beyond it wait for the Ready that writes them, so
                that the commit index the runtime records never passes the log.
        """
        if not self._leads_durably():
            return [], []
        raft = self.raft
        log = raft.log
        committed: list[Entry] = []
        hi = min(int(log.committed), written)
        if log.pending_snapshot is None and hi > log.applied:
            lo = max(log.applied + 1, log.first_index())
            committed = log.slice(lo, hi + 1, raft.config.max_committed_size_per_ready)
            if committed:
                log.applied_to(committed[-1].index)
        states, raft.read_states = raft.read_states, []
        return committed, states

    def mark_applied(self, index: Index) -> None:
        """The runtime applied a Ready's committed entries up to ``index`` before advancing."""
        self.raft.log.applied_to(index)

    def advance(self, rd: Ready) -> None:
        """Acknowledge that ``rd`` was persisted, sent and applied."""
        log = self.raft.log
        if rd.hard_state is not None:
            self._prev_hard = rd.hard_state
        if rd.soft_state is not None:
            self._prev_soft = rd.soft_state
        if rd.snapshot is not None:
            log.stable_snapshot_to(rd.snapshot.index)
            log.applied_to(rd.snapshot.index)
        if rd.entries:
            last = rd.entries[-1]
            log.stable_to(last.index, last.term)
            self.raft.persisted_to(last.index, last.term)
        if rd.committed_entries:
            log.applied_to(rd.committed_entries[-1].index)

    def status(self) -> Status:
        """A snapshot of this node's state."""
        raft = self.raft
        progress = {}
        if raft.role is Role.LEADER:
            progress = {n: (p.state.value, p.match, p.next) for n, p in raft.progress.items()}
        return Status(
            raft.id,
            raft.term,
            raft.vote,
            raft.lead,
            raft.role,
            raft.log.committed,
            raft.log.applied,
            raft.log.last_index(),
            raft.conf,
            progress,
        )


def bootstrap(storage: LogStorage, voters: list[NodeId]) -> None:
    """Initialise an empty storage for a new cluster of ``voters``.

    Writes one ``ADD_VOTER`` entry per voter at term 1 (committed), so that a
    node joining later learns the initial membership by replaying the log.
    Every initial member must be bootstrapped with the same list; a node added
    later starts from an empty storage.

    Raises:
        RaftError: the storage is not empty or ``voters`` is empty.
    """
    if storage.last_index() != 0:
        raise RaftError("cannot bootstrap a non-empty storage")
    if not voters:
        raise RaftError("cannot bootstrap a cluster without voters")
    entries = [
        Entry(
            Index(i + 1),
            Term(1),
            EntryType.CONF_CHANGE,
            ConfChange(ConfChangeType.ADD_VOTER, node).encode(),
        )
        for i, node in enumerate(voters)
    ]
    storage.append(entries)
    storage.set_hard_state(HardState(Term(1), None, Index(len(entries))))
    storage.set_conf_state(ConfState(frozenset(voters)))
    storage.sync()

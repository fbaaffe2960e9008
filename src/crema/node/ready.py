"""Handling a Ready: persist, the leader's fsync thread, apply, the commit hold (layer L2).

Every Ready is handled in the fixed order: the leader's early appends,
persist (entries, hard state, one fsync when the Ready must sync), send,
apply committed entries (resolving the futures of proposals by index and
term), serve read states, advance. Then a checkpoint is considered.

A new commit index that no new entry carries is held (``hold_commit``) for
up to :data:`COMMIT_HOLD_S`: writers woken by the commit propose meanwhile,
and the appends of their entries carry the commit too, instead of one
commit-only append (and its answer) per follower and commit. A commit that a
follower waits for (a write it forwarded) goes out in the next loop turn.

On disk storage the leader's fsync runs on the node's fsync thread
(:class:`~crema.node.fsyncer.FsyncThread`): the records are written, the
early messages sent, and the rest of that Ready (its other messages, applying,
advance) waits for the thread's answer while the loop keeps reading clients
and peers; appends of new proposals go out meanwhile
(:meth:`~crema.raft.rawnode.RawNode.take_early_messages`), and entries the
followers committed are applied as far as this node has written them
(:meth:`~crema.raft.rawnode.RawNode.take_applicable`). No other Ready is
handled meanwhile; whatever arrived goes into the next one, which the answer
starts (one fsync for all of it). Followers fsync on the loop: they have
nothing to do before the fsync ends, and a thread would cost them CPU.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import TYPE_CHECKING, Any

from crema.cache.results import CommandFailure
from crema.cache.state_machine import CacheStateMachine
from crema.cache.store import EntriesView
from crema.config import CacheConfig
from crema.errors import CommandDecodeError, LeadershipLostError
from crema.node.checkpoints import Checkpointer
from crema.node.fsyncer import FsyncThread
from crema.node.install import SnapshotReceiver, SnapshotSender
from crema.node.peers import load_peers, save_peers
from crema.node.proposals import PendingProposals
from crema.node.reads import AppliedWaiters, ReadBatcher
from crema.raft.confchange import ConfChange, ConfChangeType
from crema.raft.core import Role
from crema.raft.messages import Message, MessageType
from crema.raft.rawnode import RawNode, Ready
from crema.raft.read_only import ReadState
from crema.raft.storage import LogStorage
from crema.raft.types import Entry, EntryType, Index, NodeId
from crema.storage import DiskStorage, SyncTicket
from crema.transport.tcp import TcpTransport

if TYPE_CHECKING:
    from crema.checkpoint import CheckpointManager

log = logging.getLogger("crema.node")

COMMIT_HOLD_S = 0.002
"""How long a new commit index that no new entry carries may wait to ride on one.

Followers need it only to apply (their clients' forwarded writes are sent
at once: :meth:`Replica.commit_wanted`); under load the next append carries
it well before, and one commit-only append per follower and round is saved."""


class ReadyHandling:
    """The Ready half of :class:`~crema.node.replica.Replica`: a mixin, its state the replica's."""

    config: CacheConfig
    id: NodeId
    storage: LogStorage
    sm: CacheStateMachine
    manager: CheckpointManager
    transport: TcpTransport
    node: RawNode
    pending: PendingProposals
    reads: ReadBatcher
    applied_waiters: AppliedWaiters
    checkpointer: Checkpointer
    sender: SnapshotSender
    receiver: SnapshotReceiver
    leader_changed: asyncio.Event
    leader_changes: int
    closed: bool
    storage_closed: bool
    _wake: asyncio.Event
    _soon: bool
    _commit_timer: asyncio.TimerHandle | None
    _wanted_commit: int
    _sent_commit: int
    _staged_commit: int
    _durable_commit: int
    _loop: asyncio.AbstractEventLoop | None
    _fsync: FsyncThread | None
    _disk: DiskStorage | None
    _syncing: Ready | None
    _sync_idle: asyncio.Event
    _leader_seen: tuple[int, int] | None

    if TYPE_CHECKING:  # provided by Replica

        def _fail(self, exc: Exception) -> None: ...
        def loop(self) -> asyncio.AbstractEventLoop: ...
        def view(self) -> EntriesView: ...

    def _ready_now(self, hold_commit: bool) -> None:
        """Handle the Ready outside the driver loop (same failure handling)."""
        try:
            self._handle_ready(hold_commit)
        except Exception as exc:
            self._fail(exc)
            return
        if hold_commit:
            if self.node.commit_held():
                self._hold_commit()
        else:
            self._sent_commit = int(self.node.raft.log.committed)

    def _hold_commit(self) -> None:
        """Send a held commit index soon: next turn if a follower waits for it, else later."""
        loop = self.loop()
        if self._wanted_commit > self._sent_commit:
            if not self._soon:
                self._soon = True
                loop.call_soon(self._ready_soon)
        elif self._commit_timer is None:
            self._commit_timer = loop.call_later(COMMIT_HOLD_S, self._send_held_commit)

    def _send_held_commit(self) -> None:
        self._commit_timer = None
        if not self.closed and self.node.commit_held():
            self._ready_now(hold_commit=False)

    def commit_wanted(self, index: int) -> None:
        """Leader: a follower waits to apply ``index`` (a write it forwarded): no commit hold."""
        self._wanted_commit = max(self._wanted_commit, index)

    def _ready_soon(self) -> None:
        self._soon = False
        if not self.closed:
            self._ready_now(hold_commit=False)

    # -- the Ready ------------------------------------------------------------------

    def _handle_ready(self, hold_commit: bool = False) -> None:
        node = self.node
        if self._syncing is not None:  # the rest of that Ready waits for the fsync thread
            for message in node.take_early_messages(hold_commit):
                self._send(message)
            committed, states = node.take_applicable(int(self.storage.last_index()))
            if committed or states:
                if committed:
                    self._commit_to_os(int(committed[-1].index))
                self._after_ready(*self._use(committed, states, False))
            return
        round_done = applied_any = False
        while node.has_ready(hold_commit):
            rd = node.ready(hold_commit)
            messages, early = rd.messages, rd.early_messages
            for message in messages[:early]:
                self._send(message)  # the leader's appends overlap its fsync (§10.2.1)
            if self._persist(rd):
                # The leader's fsync runs on the thread. What a quorum committed and the
                # read states need not wait for it (the commit index is written).
                committed = rd.committed_entries
                if committed:
                    node.mark_applied(committed[-1].index)
                done, applied = self._use(committed, rd.read_states, False)
                round_done |= done
                applied_any |= applied
                break  # the rest of rd waits for the fsync thread
            done, applied = self._finish_ready(rd, False)
            round_done |= done
            applied_any |= applied
        self._after_ready(round_done, applied_any)

    def _finish_ready(self, rd: Ready, used: bool) -> tuple[bool, bool]:
        """Send, apply and advance a persisted Ready: ``(a read round finished, applied)``.

        ``used``: its committed entries and read states were used already.
        """
        messages, early = rd.messages, rd.early_messages
        for message in messages[early:] if early else messages:
            self._send(message)
        if rd.soft_state is not None:
            self._count_leader(rd.soft_state.lead)
            self._on_soft_state(rd.soft_state.role)
        if used:
            self.node.advance(rd)
            return (False, False) if rd.snapshot is None else self._use([], [], True)
        committed = rd.committed_entries
        if committed:
            self._apply(committed)
        self.node.advance(rd)
        return self._use([], rd.read_states, bool(committed) or rd.snapshot is not None)

    def _use(
        self, committed: list[Entry], states: list[ReadState], applied_any: bool
    ) -> tuple[bool, bool]:
        """Apply ``committed``, serve read ``states``: ``(a read round finished, applied)``."""
        if committed:
            self._apply(committed)
        if committed or states or applied_any:
            applied = self.sm.applied_index
            round_done = self.reads.on_read_states(states, applied)
            self.reads.release(applied)
            self.applied_waiters.release(applied)
            return round_done, True
        return False, False

    def _commit_to_os(self, commit: int) -> None:
        """Hand a hard state with ``commit`` to the OS before applying up to it (see _persist).

        ``commit`` is at most the last index written: a restarted node never
        finds a commit index beyond its log.
        """
        if commit > self._durable_commit:
            hard = self.node.raft.hard_state()
            self.storage.set_hard_state(dataclasses.replace(hard, commit=Index(commit)))
            self._hand_to_os()
            self._staged_commit = self._durable_commit = commit

    def _hand_to_os(self) -> None:
        """Hand what the storage staged to the OS, without fsync (disk storage only)."""
        flush = getattr(self.storage, "flush", None)
        if flush is not None:
            flush()

    def _after_ready(self, round_done: bool, applied_any: bool) -> None:
        if round_done and self.reads.wants_round():
            self._wake.set()  # reads queued behind the finished round go now
        if applied_any:
            self.checkpointer.maybe_start(self.view, self.sm.applied_index)

    def _persist(self, rd: Ready) -> bool:
        """Write ``rd``; True when its fsync went to the fsync thread (see :meth:`_synced`)."""
        storage = self.storage
        if rd.snapshot is not None:
            self.sm = self.receiver.take(rd.snapshot)
            storage.apply_snapshot(rd.snapshot)
            self.checkpointer.installed(rd.snapshot.index)
            self.manager._apply_retention()
        if rd.entries:
            storage.append(rd.entries)
        if rd.hard_state is not None:
            storage.set_hard_state(rd.hard_state)
            self._staged_commit = int(rd.hard_state.commit)
        committed = rd.committed_entries
        if rd.must_sync:
            fsync, disk = self._fsync, self._disk  # both set, or neither
            leading = rd.snapshot is None and self.node.raft.role is Role.LEADER
            if fsync is not None and disk is not None and leading:
                ticket = disk.begin_sync()
                if ticket is not None:
                    self._syncing = rd
                    self._sync_idle.clear()
                    fsync.submit(ticket, self._synced)
                    return True
            else:
                storage.sync()
            self._durable_commit = self._staged_commit
        elif committed and committed[-1].index > self._durable_commit:
            # Applying beyond the persisted commit index would let a node restarted
            # after a crash show older state than before: hand the commit record to
            # the OS first (an fsync here would cost a third fsync per write).
            self._hand_to_os()
            self._durable_commit = self._staged_commit
        return False

    def _synced(self, ticket: SyncTicket, error: OSError | None) -> None:
        """The fsync thread's answer: finish the Ready it made durable, then the next."""
        rd, self._syncing = self._syncing, None
        self._sync_idle.set()
        if self.storage_closed or rd is None:
            return
        if error is not None:
            self._fail(error)  # not known durable: nothing it carries may be acknowledged
            return
        assert self._disk is not None  # the fsync thread runs only with disk storage
        self._disk.end_sync(ticket)
        self._durable_commit = self._staged_commit
        if self.closed:
            return
        try:
            self._after_ready(*self._finish_ready(rd, True))
        except Exception as exc:
            self._fail(exc)
            return
        self._ready_now(hold_commit=True)

    def _send(self, message: Message) -> None:
        if message.type is MessageType.SNAP:
            self.sender.send(message)
        elif not self.transport.send(message.to, message):
            self.node.report_unreachable(message.to)

    def _count_leader(self, lead: NodeId | None) -> None:
        """Count a leader change: a new leader, or the same one elected in a new term."""
        if lead is None:
            return
        seen = (int(lead), int(self.node.raft.term))
        if seen != self._leader_seen:
            self._leader_seen = seen
            self.leader_changes += 1

    def _on_soft_state(self, role: Role) -> None:
        if role is not Role.LEADER and len(self.pending):
            self.pending.fail_all(LeadershipLostError(f"node {self.id} stopped leading"))
        self.leader_changed.set()
        self.leader_changed = asyncio.Event()

    def _apply(self, entries: list[Entry]) -> None:
        sm, pending = self.sm, self.pending
        mine = len(pending) > 0  # none waits (a follower): no lookups per entry
        for entry in entries:
            if entry.index <= sm.applied_index:
                continue
            result: Any = None
            if entry.type is EntryType.CONF_CHANGE:
                self._apply_conf_change(entry)
                sm.mark_applied(entry.index, entry.term)
            elif not mine:
                try:
                    sm.apply_encoded(entry.index, entry.term, entry.data)
                except CommandDecodeError:
                    sm.mark_applied(entry.index, entry.term)
                continue
            elif (command := pending.command(entry.index, entry.term)) is not None:
                # This node proposed this very entry (same index and term): apply the
                # SET it encoded rather than decode it again (see propose_command).
                result = sm.apply(entry.index, entry.term, command)  # type: ignore[arg-type]
            else:
                try:
                    result = sm.apply_encoded(entry.index, entry.term, entry.data)
                except CommandDecodeError as exc:
                    sm.mark_applied(entry.index, entry.term)
                    result = CommandFailure(f"ERR {exc}")
            pending.applied(entry.index, entry.term, result)

    def _apply_conf_change(self, entry: Entry) -> None:
        change = ConfChange.decode(entry.data)
        conf = self.node.apply_conf_change(change)
        self.storage.set_conf_state(conf)
        node = change.node_id
        if node == self.id:
            return
        learned = load_peers(self.config.data_directory)
        if change.type is ConfChangeType.REMOVE_NODE:
            asyncio.get_running_loop().create_task(self.transport.remove_peer(node))
            learned.pop(node, None)
        elif change.context:
            self.transport.add_peer(node, change.context.decode())
            learned[node] = change.context.decode()
        save_peers(self.config.data_directory, learned)

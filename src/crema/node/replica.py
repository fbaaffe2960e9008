"""The driver loop: one Raft core, its log, the state machine and the transport (layer L2).

Everything here runs in one event loop. Inbound Raft messages are stepped
into the core as they arrive, and once the transport delivered everything one
read brought in, their Ready is handled in that same callback (one batch, one
fsync). Proposals schedule one Ready handling for the next loop turn, so the
proposals of every writer woken in this turn share it. A tick timer wakes the
driver loop, which advances the core's clock, times out writes and polls
reads (a read request starts its ReadIndex round at once: ``start_reads``).
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
import random
import time
from collections.abc import Callable
from typing import Any

from crema.cache.codec import encode_command
from crema.cache.commands import Command, Set, set_unchecked
from crema.cache.results import CommandFailure, Result
from crema.cache.store import EntriesView
from crema.checkpoint import CheckpointManager, CheckpointPolicy
from crema.config import CacheConfig
from crema.errors import (
    CommandDecodeError,
    LeadershipLostError,
    RaftError,
    ShutdownError,
)
from crema.node.checkpoints import Checkpointer
from crema.node.fsyncer import FsyncThread
from crema.node.install import SnapshotReceiver, SnapshotSender
from crema.node.peers import load_peers, save_peers
from crema.node.proposals import PendingProposals
from crema.node.reads import AppliedWaiters, ReadBatcher
from crema.node.recovery import Recovered, core_config_for
from crema.raft.confchange import ConfChange, ConfChangeType
from crema.raft.core import Role
from crema.raft.messages import Message, MessageType
from crema.raft.rawnode import RawNode, Ready
from crema.raft.read_only import ReadState
from crema.raft.types import Entry, EntryType, Index, NodeId
from crema.storage import DiskStorage, FsyncPolicy, SyncTicket
from crema.storage.wal import remove_segments
from crema.transport.codec import Forward, ForwardResp, Kind, Payload, SnapshotAck, SnapshotChunk
from crema.transport.tcp import TcpTransport

log = logging.getLogger("crema.node")

COMMIT_HOLD_S = 0.002
"""How long a new commit index that no new entry carries may wait to ride on one.

Followers need it only to apply (their clients' forwarded writes are sent
at once: :meth:`Replica.commit_wanted`); under load the next append carries
it well before, and one commit-only append per follower and round is saved."""

ClockMs = Callable[[], int]


class Replica:
    """One node's replication runtime; :class:`DistributedCache` is its facade."""

    def __init__(
        self,
        config: CacheConfig,
        recovered: Recovered,
        manager: CheckpointManager,
        transport: TcpTransport,
        clock_ms: ClockMs,
    ) -> None:
        self.config = config
        self.id = NodeId(config.node_id)
        self.storage = recovered.storage
        self.sm = recovered.state_machine
        self.manager = manager
        self.transport = transport
        self.clock_ms = clock_ms
        self.node = RawNode(
            core_config_for(config, self.sm.applied_index),
            self.storage,
            random.Random(),
        )
        rc = config.raft_config
        self.tick_s = rc.tick_interval_ms / 1000
        self.write_timeout = rc.write_timeout_s
        self.pending = PendingProposals()
        self.reads = ReadBatcher(config.node_id, self.tick_s * rc.election_ticks * 2)
        self.applied_waiters = AppliedWaiters()
        self._init_snapshots(recovered.snapshot_index)
        self.on_forward: Callable[[NodeId, Forward], None] = lambda frm, item: None
        self.on_forward_resp: Callable[[ForwardResp], None] = lambda item: None
        self.leader_changed = asyncio.Event()
        self._last_stamp = 0
        self._wake = asyncio.Event()
        self._inbound = False  # Raft messages were stepped since the last Ready
        self._soon = False  # a Ready handling is scheduled for the next loop turn
        self._commit_timer: asyncio.TimerHandle | None = None  # sends a held commit
        self._wanted_commit = 0  # the newest forwarded write's index (see commit_wanted)
        self._sent_commit = 0  # the commit index when the last Ready was handled unheld
        self._ticks_due = 0
        self._peer_check = 0
        self._removals: set[asyncio.Task[None]] = set()
        self._staged_commit = self._durable_commit = int(self.storage.initial_state()[0].commit)
        # The running loop, kept: asyncio.get_running_loop() costs a getpid() call.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fsync: FsyncThread | None = None  # started with the loop, disk storage only
        self._syncing: Ready | None = None  # the Ready whose fsync the thread is doing
        self._sync_idle = asyncio.Event()
        self._sync_idle.set()
        self._reconnects: dict[NodeId, int] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self.closed = False
        self.storage_closed = False
        self.failure: BaseException | None = None
        # Counters for metrics (plain ints: an increment on the hot path).
        self.proposals = 0
        self.leader_changes = 0
        self._leader_seen: tuple[int, int] | None = None  # (leader, term) last counted
        self.tick_hooks: list[Callable[[float], None]] = []
        """Called with the loop time on every tick of the driver loop (write deadlines)."""
        self.recovery_snapshot_index = recovered.snapshot_index
        self.recovery_entries_replayed = 0
        self.recovery_seconds = recovered.seconds

    def _init_snapshots(self, snapshot_index: int) -> None:
        config, manager, transport = self.config, self.manager, self.transport
        self.checkpointer = Checkpointer(
            manager,
            CheckpointPolicy(config.checkpoints),
            config.min_free_bytes,
            self._compact_after_snapshot,
        )
        self.checkpointer.last_index = snapshot_index
        self.sender = SnapshotSender(transport, manager, self._report_snapshot)
        self.receiver = SnapshotReceiver(
            transport, manager, config.max_capacity, self.clock_ms, lambda: self.sm.applied_index
        )

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        """Catch up on the durable log, then start the tick timer and the loop."""
        started = time.perf_counter()
        self._handle_ready()
        self.recovery_seconds += time.perf_counter() - started
        self.recovery_entries_replayed = max(
            0, self.sm.applied_index - self.recovery_snapshot_index
        )
        loop = self._loop = asyncio.get_running_loop()
        if isinstance(self.storage, DiskStorage) and self.storage.policy is not FsyncPolicy.NEVER:
            self._fsync = FsyncThread(loop, f"crema-fsync-{self.id}")
        self._timer = loop.call_later(self.tick_s, self._on_tick)
        self._task = loop.create_task(self._run())

    def _on_tick(self) -> None:
        self._ticks_due += 1
        self._wake.set()
        if not self.closed:
            self._timer = asyncio.get_running_loop().call_later(self.tick_s, self._on_tick)

    def _watch_peers(self) -> None:
        """Probe a peer afresh after it reconnected: it may have restarted without its log."""
        self._peer_check += 1
        if self._peer_check % 5 or not self.is_leader():
            return
        for peer, stats in self.transport.stats().peers.items():
            seen = self._reconnects.get(peer)
            if seen is not None and seen != stats.reconnects:
                self.node.report_unreachable(peer)
            self._reconnects[peer] = stats.reconnects

    def loop(self) -> asyncio.AbstractEventLoop:
        """The running loop (kept once started: each lookup costs a ``getpid()`` call)."""
        return self._loop or asyncio.get_running_loop()

    def wake(self) -> None:
        """Ask the loop to handle new work."""
        self._wake.set()

    def start_reads(self) -> None:
        """Start a ReadIndex round for the queued reads now, its messages sent in this turn.

        Not from within a Ready handling (call it from a loop callback). When
        no round may start now (rounds in flight at most, no leader known),
        the driver loop starts one later.
        """
        if self.closed or not self.reads.wants_round():
            self._wake.set()
            return
        self.reads.poll(self.node, asyncio.get_running_loop().time())
        self._ready_now(hold_commit=True)
        if self.reads.wants_round():  # not started (no leader yet): the loop retries
            self._wake.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.closed:
            if self._wake.is_set():
                await asyncio.sleep(0)  # Event.wait() would not yield: let others run
            await self._wake.wait()
            self._wake.clear()
            try:
                ticks, self._ticks_due = min(self._ticks_due, 5), 0
                for _ in range(ticks):
                    self.node.tick()
                now = loop.time()
                if ticks:
                    self._watch_peers()
                    self.pending.expire(now, self.write_timeout)
                    for hook in self.tick_hooks:
                        hook(now)
                self.reads.poll(self.node, now)
                self._handle_ready()
                if ticks:  # the policy's time trigger (applies trigger it too)
                    self.checkpointer.maybe_start(self.view, self.sm.applied_index)
            except Exception as exc:  # a storage failure: stop serving, loudly
                self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        log.exception("node %d: driver loop failed", self.id, exc_info=exc)
        self.failure = exc
        self._fail_waiters(LeadershipLostError(f"node failed: {exc}"))
        self.closed = True
        self._wake.set()

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
        loop = self._loop or asyncio.get_running_loop()
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

    async def stop(self) -> None:
        """Stop the loop, fail whatever waits, flush the log."""
        if self.closed and self._task is None:
            return
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        if self._commit_timer is not None:
            self._commit_timer.cancel()
        self._wake.set()
        if self._task is not None:
            await asyncio.wait({self._task})
            self._task = None
        self._fail_waiters(ShutdownError(f"node {self.id} is shutting down"))
        await self.sender.stop()
        await self.receiver.stop()
        await self.checkpointer.stop()
        if self._removals:
            await asyncio.wait(self._removals)
        await self._sync_idle.wait()
        if self._fsync is not None:
            self._fsync.close()
        self.storage.sync()
        self.storage.close()
        self.storage_closed = True

    def _fail_waiters(self, exc: Exception) -> None:
        lost = LeadershipLostError(f"node {self.id} stopped before the write was confirmed")
        self.pending.fail_all(lost if isinstance(exc, ShutdownError) else exc)
        self.reads.fail_all(exc)
        self.applied_waiters.fail_all(exc)

    # -- inbound -------------------------------------------------------------------

    def on_message(self, frm: NodeId, kind: Kind, item: Payload) -> None:
        """The transport's callback: route one inbound item."""
        if self.closed:
            return
        if type(item) is Message:
            self._step(item)
            self._inbound = True  # handled in on_drained, this same turn
            return
        if isinstance(item, Forward):
            self.on_forward(frm, item)
        elif isinstance(item, ForwardResp):
            self.on_forward_resp(item)
        elif isinstance(item, SnapshotChunk):
            self.receiver.on_chunk(frm, item)
        elif isinstance(item, SnapshotAck):
            self.sender.on_ack(frm, item)
        self._wake.set()

    def on_drained(self) -> None:
        """The transport's callback after a batch of inbound items: handle their Ready."""
        if self._inbound and not self.closed:
            self._inbound = False
            self._ready_now(hold_commit=True)

    def _step(self, message: Message) -> None:
        if message.type is MessageType.SNAP and not self.receiver.ready_for(message.snapshot):
            return  # the file has not arrived (or failed): the leader will retry
        try:
            self.node.step(message)
        except RaftError as exc:
            log.warning("node %d: dropped message from %d: %s", self.id, message.frm, exc)

    # -- proposals -----------------------------------------------------------------

    def stamp(self) -> int:
        """A leader timestamp: never behind the state machine or the last stamp."""
        stamp = max(self.clock_ms(), self.sm.clock_ms, self._last_stamp)
        self._last_stamp = stamp
        return stamp

    async def propose_command(self, command: Command) -> tuple[int, Result]:
        """Propose on this node (the leader); return (index, result) once applied.

        Raises:
            ShutdownError, NotLeaderError, ProposalDroppedError: not proposed.
            WriteTimeoutError, LeadershipLostError: proposed, outcome unknown.
        """
        index, fut = self.submit_command(command)
        return index, await fut

    def submit_command(self, command: Command) -> tuple[int, asyncio.Future[Result]]:
        """Like :meth:`propose_command` without waiting: ``(index, future of the result)``.

        Proposals made one after the other get increasing indexes (in order).
        """
        if self.closed:
            self._check_open()  # raises
        # stamp(), inline: never behind the state machine or the last stamp
        stamp = max(self.clock_ms(), self.sm.clock_ms, self._last_stamp)
        self._last_stamp = stamp
        kept: Set | None = None
        if type(command) is Set:  # the hot path: fields checked when it was built
            c = command
            expiry = c.expiry_ms if c.expiry_ms is None else int(c.expiry_ms)
            command = kept = set_unchecked(
                c.key, c.value, stamp, expiry, c.condition, c.keep_ttl, c.get
            )
        else:
            command = dataclasses.replace(command, now_ms=stamp)
        entry = self.node.propose(encode_command(command))
        self.proposals += 1
        # A SET is applied from ``kept`` on this node: its fields are exactly what
        # decoding the entry gives (bytes, bytes, plain ints, the enum, bools).
        return entry.index, self._pending(entry, kept)

    async def propose_conf_change(self, change: ConfChange) -> tuple[int, Result]:
        """Propose a membership change on this node (the leader)."""
        self._check_open()
        entry = self.node.propose_conf_change(change)
        self.proposals += 1
        return entry.index, await self._pending(entry)

    def _pending(self, entry: Entry, command: Command | None = None) -> asyncio.Future[Any]:
        """The future of ``entry``'s result, with its write deadline; schedule a Ready."""
        loop = self._loop or asyncio.get_running_loop()
        # The deadline is checked on ticks (no timer per write); cancelling the
        # awaiting task cancels the future.
        fut = self.pending.add(
            entry.index, entry.term, command, loop.time() + self.write_timeout, loop
        )
        if not self._soon:
            self._soon = True
            loop.call_soon(self._ready_soon)
        return fut

    def _check_open(self) -> None:
        if self.closed:
            raise ShutdownError(f"node {self.id} is shut down")

    def is_leader(self) -> bool:
        """Whether this node leads."""
        return self.node.raft.role is Role.LEADER

    def leader_id(self) -> int | None:
        """The leader this node knows of."""
        return self.node.raft.lead

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
            flush = getattr(self.storage, "flush", None)
            if flush is not None:
                flush()
            self._staged_commit = self._durable_commit = commit

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
            fsync = self._fsync
            if fsync is not None and rd.snapshot is None and self.node.raft.role is Role.LEADER:
                ticket = storage.begin_sync()  # type: ignore[attr-defined]
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
            flush = getattr(storage, "flush", None)
            if flush is not None:
                flush()
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
        self.storage.end_sync(ticket)  # type: ignore[attr-defined]
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

    # -- snapshots ------------------------------------------------------------------

    def view(self) -> EntriesView:
        """A consistent view of the current state machine at its applied index."""
        return self.sm.entries_view()

    def _report_snapshot(self, node: NodeId, ok: bool) -> None:
        if not self.closed:
            self.node.report_snapshot(node, ok)
            self._wake.set()

    def _compact_after_snapshot(self, index: int) -> None:
        if self.closed:
            return
        storage = self.storage
        if index <= storage.snapshot_meta().index:
            return
        try:
            plan = self.node.snapshot_created(
                Index(index), self.config.raft_config.trailing_entries
            )
        except RaftError as exc:
            log.info("node %d: snapshot at %d not recorded: %s", self.id, index, exc)
            return
        storage.create_snapshot(plan.meta)
        storage.compact(plan.compact_index)
        storage.sync()
        if isinstance(storage, DiskStorage):
            removals = storage.take_removals()
            if removals:
                durable = storage.policy is not FsyncPolicy.NEVER
                work = asyncio.to_thread(remove_segments, removals, storage.directory, durable)
                task = asyncio.get_running_loop().create_task(work)
                self._removals.add(task)
                task.add_done_callback(self._removals.discard)

    def forget_progress(self, node: NodeId) -> None:
        """Leader: ``node`` lost its log; probe it from index 1 (a snapshot will follow).

        The core never lets a follower's match index go backwards (Raft assumes
        durable logs), so the runtime resets it when the follower says it
        discarded its state on purpose (``auto_recover=False``).
        """
        pr = self.node.raft.progress.get(node)
        if pr is None or not self.is_leader() or node == self.id:
            return
        pr.match = Index(0)
        pr.become_probe()
        pr.next = Index(1)
        self.node.raft.bcast_pending = True
        self._wake.set()

"""The driver loop: one Raft core, its log, the state machine and the transport (layer L2).

Everything here runs in one event loop. Inbound Raft messages are stepped
into the core as they arrive, and once the transport delivered everything one
read brought in, their Ready is handled in that same callback (one batch, one
fsync). Proposals schedule one Ready handling for the next loop turn, so the
proposals of every writer woken in this turn share it. A tick timer wakes the
driver loop, which advances the core's clock, times out writes and polls
reads (a read request starts its ReadIndex round at once: ``start_reads``).
How a Ready is handled (persist, the leader's fsync thread, apply, the commit
hold) lives in :mod:`crema.node.ready`.
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
from crema.cache.results import Result
from crema.cache.store import EntriesView
from crema.checkpoint import CheckpointManager, CheckpointPolicy
from crema.config import CacheConfig
from crema.errors import (
    LeadershipLostError,
    RaftError,
    ShutdownError,
)
from crema.node.checkpoints import Checkpointer
from crema.node.fsyncer import FsyncThread
from crema.node.install import SnapshotReceiver, SnapshotSender
from crema.node.proposals import PendingProposals
from crema.node.reads import AppliedWaiters, ReadBatcher
from crema.node.ready import ReadyHandling
from crema.node.recovery import Recovered, core_config_for
from crema.raft.confchange import ConfChange
from crema.raft.core import Role
from crema.raft.messages import Message, MessageType
from crema.raft.rawnode import RawNode, Ready
from crema.raft.types import Entry, Index, NodeId
from crema.storage import DiskStorage, FsyncPolicy
from crema.storage.wal import remove_segments
from crema.transport.codec import Forward, ForwardResp, Kind, Payload, SnapshotAck, SnapshotChunk
from crema.transport.tcp import TcpTransport

log = logging.getLogger("crema.node")

ClockMs = Callable[[], int]


class Replica(ReadyHandling):
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
        self._disk: DiskStorage | None = None  # the storage the fsync thread syncs
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
            self._disk = self.storage
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
        if isinstance(exc, OSError):  # the disk: one line says it all (the trace at debug)
            log.error("node %d: storage failed, the node stops: %s", self.id, exc)
            log.debug("node %d: storage failure", self.id, exc_info=exc)
        else:
            log.exception("node %d: driver loop failed", self.id, exc_info=exc)
        self.failure = exc
        self._fail_waiters(LeadershipLostError(f"node failed: {exc}"))
        self.closed = True
        self._wake.set()

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
        self.storage_closed = True
        if self.failure is not None and isinstance(self.storage, DiskStorage):
            self.storage.abandon()  # a write failed: what is staged was never acknowledged
            return
        try:
            self.storage.sync()
        finally:
            self.storage.close()

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
        # The leader's stamp: never behind the state machine or the last stamp.
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
        loop = self.loop()
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

"""``DistributedCache``: the embedded API of a crema node (layer L2).

Writes are linearizable from any node: the leader proposes them, a follower
forwards them to the leader and then waits until its own applied index
reaches the write's, so a ``get`` on the same node afterwards sees it.
``get`` reads the local replica (possibly stale on a follower);
``consistent_get`` first runs a (batched) ReadIndex round.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Iterator
from datetime import timedelta
from types import TracebackType
from typing import Any

from crema.cache.commands import Clear, Command, Delete, Set, SetCondition, set_unchecked
from crema.cache.results import Result
from crema.cache.state_machine import CacheStateMachine
from crema.cache.store import EntryLike
from crema.checkpoint import CheckpointManager, SnapshotInfo
from crema.config import CacheConfig, DurationLike, to_timedelta
from crema.errors import (
    ShutdownError,
)
from crema.histogram import Histogram
from crema.node.discovery import PeerDiscovery
from crema.node.forward import Forwarder
from crema.node.peers import load_peers
from crema.node.recovery import recover
from crema.node.replica import ClockMs, Replica
from crema.node.routing import Router
from crema.node.status import histograms_of, status_of
from crema.raft.confchange import ConfChange, ConfChangeType
from crema.raft.types import NodeId
from crema.transport.codec import Kind, Payload
from crema.transport.config import TransportConfig
from crema.transport.tcp import TcpTransport

KeyLike = bytes | str
_ALWAYS = SetCondition.ALWAYS


def _b(value: KeyLike) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"expected bytes or str, got {type(value).__name__}")


def wall_clock_ms() -> int:
    """The wall clock in Unix milliseconds."""
    return time.time_ns() // 1_000_000


def _make_transport(
    config: CacheConfig, transport_config: TransportConfig | None, holder: list[Replica]
) -> TcpTransport:
    """The peer transport; inbound items go to the replica in ``holder``."""
    known = {**load_peers(config.data_directory), **config.voters()}
    peers = {i: a for i, a in known.items() if i != config.node_id}

    def on_message(frm: NodeId, kind: Kind, item: Payload) -> None:
        holder[0].on_message(frm, kind, item)

    return TcpTransport(
        config.node_id,
        config.addr,
        peers,
        config.peer_cluster_id,
        config.cluster_secret,
        on_message,
        config=transport_config or TransportConfig(),
    )


class _LiveTarget:
    """``restore_from`` target: whichever state machine the node serves now."""

    def __init__(self, replica: Replica) -> None:
        self._replica = replica

    def restore_entries(self, entries: Iterable[EntryLike]) -> None:
        self._replica.sm.restore_entries(entries)


class DistributedCache:
    """One node of a crema cluster; build it with :meth:`create`.

    Implements the server's ``Backend`` protocol (``state_machine``,
    ``clock_ms``, ``execute``, ``read_barrier``, ``status``).
    """

    def __init__(self, replica: Replica, router: Router, forwarder: Forwarder) -> None:
        self._replica = replica
        self._router = router
        self._forwarder = forwarder
        self.config = replica.config
        self.transport = replica.transport
        self._rejoin: asyncio.Task[None] | None = None
        self.discovery: PeerDiscovery | None = None
        """Asks the leader for members' addresses this node lacks (set by ``start``)."""

    @classmethod
    async def create(
        cls,
        config: CacheConfig,
        *,
        clock_ms: ClockMs | None = None,
        transport_config: TransportConfig | None = None,
    ) -> DistributedCache:
        """Recover local state, start the peer transport and the driver loop.

        Args:
            config: the node's configuration.
            clock_ms: the wall clock in Unix ms (injectable for tests).
            transport_config: peer transport tuning.

        Raises:
            ConfigError: bad configuration.
            StorageError, SnapshotError: local state cannot be opened.
        """
        clock = clock_ms or wall_clock_ms
        manager = CheckpointManager(config.checkpoints)
        started = time.perf_counter()
        recovered = await asyncio.to_thread(recover, config, manager, clock())
        recovered.seconds = time.perf_counter() - started
        holder: list[Replica] = []
        transport = _make_transport(config, transport_config, holder)
        replica = Replica(config, recovered, manager, transport, clock)
        holder.append(replica)
        transport.set_handlers(replica.on_message, replica.on_drained)
        router = Router(replica)
        forwarder = Forwarder(
            config.node_id, transport, router.serve_forwarded, router.propose_forwarded
        )
        router.forwarder = forwarder
        replica.on_forward = forwarder.on_forward
        replica.on_forward_resp = forwarder.on_forward_resp
        cache = cls(replica, router, forwarder)
        cache.discovery = PeerDiscovery(replica, forwarder, config.data_directory)
        manager.target = _LiveTarget(replica)
        try:
            await transport.start()
        except BaseException:  # e.g. the address is in use: release the WAL lock
            recovered.storage.close()
            raise
        replica.start()
        if recovered.discarded:
            cache._rejoin = asyncio.get_running_loop().create_task(router.rejoin())
        return cache

    async def __aenter__(self) -> DistributedCache:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()

    # -- Backend ----------------------------------------------------------------------

    @property
    def state_machine(self) -> CacheStateMachine:
        """The local replica of the state machine (swapped on snapshot install)."""
        return self._replica.sm

    def clock_ms(self) -> int:
        """This node's wall clock in Unix ms."""
        return self._replica.clock_ms()

    async def execute(self, command: Command) -> Result:
        """Run a write through Raft; return its result once applied on this node.

        Raises:
            WriteRejectedError: definitely not applied (no leader, shut down, ...).
            OutcomeUnknownError: proposed but not confirmed (may have been applied).
        """
        return await self._router.execute(command)

    def submit(self, command: Command) -> asyncio.Future[Result] | None:
        """Start a write now; a future of its result (see the server's ``Backend.submit``)."""
        return self._router.submit(command)

    def read_barrier(self) -> asyncio.Future[None]:
        """A future done once this node's state covers every write acknowledged before the call.

        The future fails with ``UnavailableError`` when no leader confirmed a
        read index in time, ``ShutdownError`` when the node is shutting down.
        """
        replica = self._replica
        if replica.closed:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            fut.set_exception(ShutdownError(f"node {replica.id} is shut down"))
            return fut
        fut = replica.reads.request(replica.write_timeout)
        replica.start_reads()
        return fut

    def status(self) -> dict[str, Any]:
        """Same as :meth:`cluster_status`."""
        return self.cluster_status()

    # -- writes ------------------------------------------------------------------------

    def _expiry(self, ttl: DurationLike | None) -> int | None:
        delta = to_timedelta("ttl", ttl) if ttl is not None else self.config.default_ttl
        if delta is None:
            return None
        return self.clock_ms() + delta // timedelta(milliseconds=1)

    async def put(self, key: KeyLike, value: KeyLike) -> None:
        """Store ``value`` under ``key`` (with the default TTL, if configured)."""
        now = self._replica.clock_ms()
        if self.config.default_ttl is None and type(now) is int and now >= 0:
            # The hot path: _b gives bytes and the clock a plain int >= 0, which is
            # everything Set.__post_init__ would check.
            await self._router.execute(
                set_unchecked(_b(key), _b(value), now, None, _ALWAYS, False, False)
            )
            return
        expiry = self._expiry(None)
        await self.execute(Set(_b(key), _b(value), self.clock_ms(), expiry))

    async def put_with_ttl(self, key: KeyLike, value: KeyLike, ttl: DurationLike) -> None:
        """Store ``value`` under ``key`` for ``ttl`` (a ``timedelta`` or seconds)."""
        expiry = self._expiry(ttl)
        await self.execute(Set(_b(key), _b(value), self.clock_ms(), expiry))

    async def delete(self, key: KeyLike) -> bool:
        """Remove ``key``; whether it existed."""
        result = await self.execute(Delete((_b(key),), self.clock_ms()))
        return isinstance(result, int) and result > 0

    async def clear(self) -> None:
        """Remove every key."""
        await self.execute(Clear(self.clock_ms()))

    # -- reads -------------------------------------------------------------------------

    async def get(self, key: KeyLike) -> bytes | None:
        """The local value of ``key`` (may be stale on a follower)."""
        return self._replica.sm.get(_b(key), self.clock_ms())

    async def consistent_get(self, key: KeyLike) -> bytes | None:
        """The value of ``key``, linearizable (ReadIndex), from any node."""
        await self.read_barrier()
        return self._replica.sm.get(_b(key), self.clock_ms())

    def contains(self, key: KeyLike) -> bool:
        """Whether ``key`` is live in the local replica."""
        return self._replica.sm.contains(_b(key), self.clock_ms())

    def __len__(self) -> int:
        return self._replica.sm.count_live(self.clock_ms())

    def entry_count(self) -> int:
        """Live entries in the local replica."""
        return len(self)

    def entries(self) -> Iterator[tuple[bytes, bytes, int | None]]:
        """Live ``(key, value, expiry_ms | None)`` as of one applied index."""
        view = self._replica.sm.entries_view()
        now = self.clock_ms()
        for key, value, expiry in view:
            if expiry is None or expiry > now:
                yield key, value, expiry

    # -- introspection -----------------------------------------------------------------

    def raft_index(self) -> int:
        """The applied index."""
        return self._replica.sm.applied_index

    def raft_term(self) -> int:
        """The term of the entry at the applied index."""
        return self._replica.sm.applied_term

    @property
    def failure(self) -> BaseException | None:
        """Why the node stopped working (a WAL write or fsync failed, ...), or None.

        A failed node refuses every request (``ShutdownError``) and must be
        shut down and started again once the cause (a full disk, say) is fixed;
        ``cluster_status()["failure"]`` has the same as text.
        """
        return self._replica.failure

    def is_leader(self) -> bool:
        """Whether this node is the leader."""
        return self._replica.is_leader()

    def leader_id(self) -> int | None:
        """The leader this node knows of, or None."""
        return self._replica.leader_id()

    def cluster_status(self) -> dict[str, Any]:
        """Node id, role, term, leader, membership, indexes and counters."""
        return status_of(self._replica, self._forwarder)

    def histograms(self) -> dict[str, Histogram]:
        """Latency histograms for metrics: ``wal_fsync_seconds`` (disk storage only) and
        ``checkpoint_seconds``; live objects, read at scrape time."""
        return histograms_of(self._replica)

    # -- membership --------------------------------------------------------------------

    async def add_node(self, node_id: int, addr: str, voter: bool = True) -> None:
        """Add a node (voter or learner) listening on ``addr``."""
        kind = ConfChangeType.ADD_VOTER if voter else ConfChangeType.ADD_LEARNER
        await self._router.conf_change(ConfChange(kind, NodeId(node_id), addr.encode()))

    async def remove_node(self, node_id: int) -> None:
        """Remove a node from the cluster."""
        await self._router.conf_change(ConfChange(ConfChangeType.REMOVE_NODE, NodeId(node_id)))

    async def transfer_leadership(self, node_id: int) -> None:
        """Hand leadership to ``node_id`` and wait until it leads."""
        await self._router.transfer(NodeId(node_id))

    # -- checkpoints -------------------------------------------------------------------

    @property
    def checkpoint_manager(self) -> CheckpointManager:
        """The node's checkpoint manager (its restore target is this node's store)."""
        return self._replica.manager

    async def checkpoint(self) -> SnapshotInfo:
        """Snapshot the state at the current applied index now; compact the log after it."""
        replica = self._replica
        return await replica.checkpointer.checkpoint(replica.view)

    # -- shutdown ----------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Stop accepting writes, fail pending ones, flush the WAL, close connections."""
        replica = self._replica
        if replica.closed and replica.storage_closed:
            return
        if self._rejoin is not None:
            self._rejoin.cancel()
        if self.discovery is not None:
            await self.discovery.stop()
        await self._forwarder.stop()
        await replica.stop()
        await self.transport.stop()

"""Per-connection and per-server state the command handlers work with (layer L2).

:class:`ServerState` is shared by every connection of one
:class:`~crema.server.server.RespServer`: the backend, the configuration, the
callbacks, the read-barrier batcher and the counters ``INFO`` reports.
:class:`Session` is one client connection's state: protocol version, name,
authentication, read mode, and the ticket of the batch being served.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from crema.histogram import Histogram
from crema.server.backend import Backend
from crema.server.read_barrier import ReadBarrier

__all__ = [
    "LATENCY_BUCKETS",
    "READ_MODES",
    "CheckpointCallback",
    "MembershipOps",
    "ServerState",
    "Session",
    "ShutdownCallback",
    "Stats",
    "latency_histogram",
]

READ_MODES = ("linearizable", "local")
"""``linearizable`` (ReadIndex before reading) or ``local`` (read this node's state)."""

ShutdownCallback = Callable[[], None]
"""Called by ``SHUTDOWN``; must not block (typically sets an event the owner waits on)."""

CheckpointCallback = Callable[[], Awaitable[dict[str, Any]]]
"""Called by ``CREMA.CHECKPOINT``; returns the snapshot's index, term, path, size."""


LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0)  # fmt: skip
"""Upper bounds (seconds) of the latency histogram buckets; one more bucket catches the rest."""


def latency_histogram() -> Histogram:
    """A latency histogram over :data:`LATENCY_BUCKETS`."""
    return Histogram(LATENCY_BUCKETS)


@dataclass(frozen=True, slots=True)
class MembershipOps:
    """The node's membership operations, run by ``CREMA.ADDNODE``, ``REMOVENODE``, ``TRANSFER``.

    Attributes:
        add_node: ``add_node(node_id, addr, voter)``.
        remove_node: ``remove_node(node_id)``.
        transfer: ``transfer(node_id)``: hand leadership over and wait until it leads.
    """

    add_node: Callable[[int, str, bool], Awaitable[None]]
    remove_node: Callable[[int], Awaitable[None]]
    transfer: Callable[[int], Awaitable[None]]


@dataclass(slots=True)
class Stats:
    """Counters for ``INFO stats``."""

    connections_received: int = 0
    rejected_connections: int = 0
    commands_processed: int = 0
    keyspace_hits: int = 0
    keyspace_misses: int = 0
    net_input_bytes: int = 0
    net_output_bytes: int = 0
    error_replies: int = 0
    calls: dict[str, int] = field(default_factory=dict)
    """Commands run, by name (unknown commands and NOAUTH refusals are not counted here)."""
    failed_calls: dict[str, int] = field(default_factory=dict)
    """Commands that replied with an error, by name."""
    write_latency: Histogram = field(default_factory=latency_histogram)
    """Seconds from proposing a write to its result (failures included)."""
    read_wait: Histogram = field(default_factory=latency_histogram)
    """Seconds a linearizable read waited for its read barrier (when it had to wait)."""


@dataclass(slots=True)
class ServerState:
    """What every connection of one server shares.

    Attributes:
        backend: the node (or a :class:`~crema.server.backend.LocalBackend`).
        requirepass: the password clients must send with AUTH, or None.
        read_mode: the default read mode of new connections.
        max_clients: connections accepted at most at once.
        on_shutdown: called by ``SHUTDOWN``, or None (SHUTDOWN is refused).
        on_checkpoint: called by ``CREMA.CHECKPOINT``, or None (refused).
        membership: run by the ``CREMA.ADDNODE`` family, or None (refused).
        host: the address the server is bound to.
        port: the port the server is bound to (0 until started).
    """

    backend: Backend
    requirepass: bytes | None = None
    read_mode: str = "linearizable"
    max_clients: int = 10000
    on_shutdown: ShutdownCallback | None = None
    on_checkpoint: CheckpointCallback | None = None
    membership: MembershipOps | None = None
    host: str = "127.0.0.1"
    port: int = 0
    barrier: ReadBarrier = field(init=False)
    stats: Stats = field(default_factory=Stats)
    clients: dict[int, Session] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)
    _next_id: int = 0

    def __post_init__(self) -> None:
        if self.read_mode not in READ_MODES:
            raise ValueError(f"read_mode must be one of {READ_MODES}, got {self.read_mode!r}")
        self.barrier = ReadBarrier(self.backend.read_barrier)

    def new_client_id(self) -> int:
        """The next connection id (``CLIENT ID``), starting at 1."""
        self._next_id += 1
        return self._next_id

    def check_password(self, username: bytes, password: bytes) -> bool:
        """Whether (``username``, ``password``) authenticates: user ``default`` only."""
        if self.requirepass is None or username != b"default":
            return False
        return hmac.compare_digest(password, self.requirepass)


@dataclass(slots=True, eq=False)
class Session:
    """One client connection as the command handlers see it.

    Attributes:
        server: the shared server state.
        id: the connection id (``CLIENT ID``).
        addr: the peer's ``host:port``.
        laddr: the local ``host:port``.
        protocol: 2 or 3 (switched by ``HELLO``).
        name: the name set by ``CLIENT SETNAME`` (empty: none).
        authenticated: False until AUTH when ``requirepass`` is set.
        read_mode: ``linearizable`` or ``local`` (``CREMA.READMODE``).
        lib_name: ``CLIENT SETINFO LIB-NAME``.
        lib_ver: ``CLIENT SETINFO LIB-VER``.
        closing: set by QUIT and SHUTDOWN: close once the reply is sent.
        silent: set by SHUTDOWN: close without a reply.
        ticket: the read-barrier ticket of the batch being served.
        last_command: the last command's name (``CLIENT INFO`` ``cmd=``).
        serial_write: set by a write that could not be submitted at once: the
            connection runs no later command until it is done.
        write_seq: writes submitted so far (see ``commands.common.may_retry``).
        retrying: writes being sent again after a refusal; while nonzero the
            connection starts no new command.
    """

    server: ServerState
    id: int
    addr: str = ""
    laddr: str = ""
    protocol: int = 2
    name: bytes = b""
    authenticated: bool = True
    read_mode: str = "linearizable"
    lib_name: bytes = b""
    lib_ver: bytes = b""
    closing: bool = False
    silent: bool = False
    ticket: int = 0
    last_command: str = "NULL"
    serial_write: bool = False
    write_seq: int = 0
    retrying: int = 0
    created_at: float = field(default_factory=time.monotonic)
    last_active: float = field(default_factory=time.monotonic)

    @classmethod
    def open(cls, server: ServerState, addr: str = "", laddr: str = "") -> Session:
        """A new session for a just-accepted connection (registered in ``server.clients``)."""
        session = cls(
            server,
            server.new_client_id(),
            addr,
            laddr,
            authenticated=server.requirepass is None,
            read_mode=server.read_mode,
        )
        server.clients[session.id] = session
        return session

    def close(self) -> None:
        """Unregister from the server (idempotent)."""
        self.server.clients.pop(self.id, None)

    def begin_batch(self) -> None:
        """A batch of pipelined commands has arrived: take a read-barrier ticket."""
        self.ticket = self.server.barrier.ticket()
        self.last_active = time.monotonic()

    async def read_ready(self) -> None:
        """Wait until this session may read the local state machine.

        In ``linearizable`` mode, waits for a read barrier that started after
        the current batch arrived (shared with other reads); ``local`` returns
        at once.

        Raises:
            WriteRejectedError: no leader confirmed a read index.
        """
        if self.read_mode == "local":
            return
        barrier = self.server.barrier
        if not barrier.satisfied(self.ticket):
            started = time.perf_counter()
            try:
                await barrier.wait(self.ticket)
            finally:
                self.server.stats.read_wait.observe(time.perf_counter() - started)

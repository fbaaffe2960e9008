"""TCP peer transport: one listener, outbound lanes per peer, bounded queues (L2).

Topology (etcd-style streams): every node dials every peer for its own
outbound traffic; an inbound connection is receive-only. Each peer gets two
outbound lanes, each its own TCP connection with its own queue:

* ``Lane.RAFT``: Raft messages, forwarded requests and replies, snapshot acks.
* ``Lane.SNAPSHOT``: snapshot chunks only, dialed on first use, so a
  multi-megabyte transfer never sits in front of a heartbeat.

Rules: :meth:`TcpTransport.send` never blocks and never raises because a peer
is down (a full queue drops and counts); peer identity comes only from the
handshake; every inbound frame is size-checked before it is buffered and
fully validated before the callback sees it; any protocol error drops the
connection; :meth:`TcpTransport.stop` is idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from crema.errors import ConfigError, PeerProtocolError
from crema.raft.messages import Message
from crema.raft.types import NodeId
from crema.transport.codec import (
    HANDSHAKE_KINDS,
    Kind,
    Lane,
    Payload,
    SnapshotChunk,
    decode,
    encode,
    encode_frame,
    encode_message_frame,
)
from crema.transport.config import TransportConfig, parse_addr
from crema.transport.conn import FrameReader, accept, close_writer, set_nodelay
from crema.transport.link import OutboundLane

log = logging.getLogger("crema.transport")
_RAFT = Kind.RAFT

OnMessage = Callable[[NodeId, Kind, Payload], None]
"""``on_message(from_id, kind, item)``: called in the event loop for every valid inbound item."""


@dataclass(frozen=True, slots=True)
class PeerStats:
    """Counters of one peer's outbound lanes."""

    addr: str
    connected: bool
    snapshot_connected: bool
    sent: int
    dropped: int
    queued: int
    queued_bytes: int
    reconnects: int
    connect_failures: int


@dataclass(frozen=True, slots=True)
class TransportStats:
    """Counters of the whole transport; ``dropped`` includes sends to unknown peers."""

    sent: int
    dropped: int
    reconnects: int
    received: int
    rejected_handshakes: int
    protocol_errors: int
    peers: dict[NodeId, PeerStats]


class _Peer:
    """The two outbound lanes to one peer."""

    def __init__(self, make: Callable[[Lane], OutboundLane]) -> None:
        self.raft = make(Lane.RAFT)
        self.snapshot = make(Lane.SNAPSHOT)

    def lane_for(self, item: Payload) -> OutboundLane:
        return self.snapshot if isinstance(item, SnapshotChunk) else self.raft

    def stats(self) -> PeerStats:
        lanes = (self.raft, self.snapshot)
        return PeerStats(
            addr=self.raft.addr,
            connected=self.raft.connected,
            snapshot_connected=self.snapshot.connected,
            sent=sum(x.sent for x in lanes),
            dropped=sum(x.queue.dropped for x in lanes),
            queued=sum(len(x.queue) for x in lanes),
            queued_bytes=sum(x.queue.nbytes for x in lanes),
            reconnects=sum(x.reconnects for x in lanes),
            connect_failures=sum(x.connect_failures for x in lanes),
        )


class TcpTransport:
    """Peer-to-peer message transport over TCP for one node.

    Args:
        node_id: this node's id (>= 1).
        listen_addr: ``"host:port"`` to bind, exactly that host; port 0 picks one.
        peers: initial peers, id -> ``"host:port"``.
        cluster_id: must match on both ends of every connection.
        secret: shared cluster secret; when set, both ends prove they know it.
        on_message: called with ``(from_id, kind, item)`` for each inbound item.
        on_drained: called after ``on_message`` was called for every item that
            one read from a connection brought in (so the caller can act on a
            batch of items at once, in the same event-loop turn).
        config: queue bounds, frame limit, timeouts, backoff.
        rng: randomness for backoff jitter (nonces always use ``os.urandom``).

    Raises:
        ConfigError: bad node id, address, secret or peer table.
    """

    def __init__(
        self,
        node_id: int,
        listen_addr: str,
        peers: Mapping[int, str],
        cluster_id: str,
        secret: bytes | None,
        on_message: OnMessage,
        *,
        on_drained: Callable[[], None] | None = None,
        config: TransportConfig | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if node_id < 1:
            raise ConfigError("node_id", "must be >= 1")
        if secret is not None and not secret:
            raise ConfigError("secret", "must be non-empty bytes or None")
        self.node_id = NodeId(node_id)
        self._host, self._port = parse_addr(listen_addr, "listen_addr")
        self._cluster_id = cluster_id
        self._secret = secret
        self._on_message = on_message
        self._on_drained = on_drained
        self._config = config or TransportConfig()
        self._rng = rng or random.Random()
        self._peers: dict[NodeId, _Peer] = {}
        for pid, addr in peers.items():
            self.check_peer(pid, addr)
        self._initial = {NodeId(p): a for p, a in peers.items()}
        self._server: asyncio.Server | None = None
        self._inbound: dict[tuple[NodeId, Lane], asyncio.StreamWriter] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending = 0
        self._stopped = False
        self._dropped_unknown = 0
        self._received = 0
        self._rejected = 0
        self._protocol_errors = 0

    def set_handlers(self, on_message: OnMessage, on_drained: Callable[[], None] | None) -> None:
        """Replace the inbound callbacks (see the constructor's arguments)."""
        self._on_message = on_message
        self._on_drained = on_drained

    # ------------------------------------------------------------------
    # Lifecycle
    # ------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the listener and start dialing the initial peers."""
        if self._server is not None or self._stopped:
            raise RuntimeError("transport already started or stopped")
        ssl_timeout = self._config.handshake_timeout if self._config.server_ssl else None
        self._server = await asyncio.start_server(
            self._on_accept,
            self._host,
            self._port,
            reuse_address=True,
            ssl=self._config.server_ssl,
            ssl_handshake_timeout=ssl_timeout,
        )
        self._port = self._server.sockets[0].getsockname()[1]
        for pid, addr in self._initial.items():
            self.add_peer(pid, addr)

    @property
    def address(self) -> str:
        """The bound ``"host:port"`` (the real port once started with port 0)."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{host}:{self._port}"

    async def stop(self) -> None:
        """Close the listener, every connection and every task (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        if self._server is not None:
            self._server.close()
        peers, self._peers = list(self._peers.values()), {}
        for peer in peers:
            await peer.raft.close()
            await peer.snapshot.close()
        for writer in list(self._inbound.values()):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    # ------------------------------------------------------------------
    # Membership
    # ------------------------------------------------------------------

    def check_peer(self, peer_id: int, addr: str) -> None:
        """Raise ConfigError unless ``peer_id`` and ``addr`` could be added as a peer."""
        if peer_id < 1 or peer_id == self.node_id:
            raise ConfigError("peers", f"invalid peer id {peer_id}")
        parse_addr(addr, "peers")

    def add_peer(self, peer_id: int, addr: str) -> None:
        """Start talking to ``peer_id`` at ``addr``, or move it to a new address."""
        self.check_peer(peer_id, addr)
        pid = NodeId(peer_id)
        existing = self._peers.get(pid)
        if existing is not None:
            if existing.raft.addr != addr:
                existing.raft.set_addr(addr)
                existing.snapshot.set_addr(addr)
            return
        if self._stopped:
            return
        self._peers[pid] = peer = _Peer(lambda lane: self._make_lane(pid, addr, lane))
        peer.raft.ensure_started()

    def _make_lane(self, peer_id: NodeId, addr: str, lane: Lane) -> OutboundLane:
        return OutboundLane(
            node_id=self.node_id,
            peer_id=peer_id,
            addr=addr,
            lane=lane,
            cluster_id=self._cluster_id,
            secret=self._secret,
            config=self._config,
            rng=self._rng,
        )

    async def remove_peer(self, peer_id: int) -> None:
        """Forget ``peer_id``: close its lanes and inbound connections (idempotent)."""
        peer = self._peers.pop(NodeId(peer_id), None)
        for lane in Lane:
            writer = self._inbound.pop((NodeId(peer_id), lane), None)
            if writer is not None:
                writer.close()
        if peer is not None:
            await peer.raft.close()
            await peer.snapshot.close()

    def peer_address(self, peer_id: int) -> str | None:
        """Where this node dials ``peer_id`` (None: not a known peer)."""
        peer = self._peers.get(NodeId(peer_id))
        return None if peer is None else peer.raft.addr

    def peer_ids(self) -> list[NodeId]:
        """The peers currently known, sorted."""
        return sorted(self._peers)

    # ------------------------------------------------------------------
    # Sending
    # ------------------------------------------------------------------

    def _frame(self, item: Payload) -> bytes:
        if isinstance(item, Message) and item.frm != self.node_id:
            raise ValueError(f"message from {item.frm} sent by node {self.node_id}")
        return encode_frame(encode(item), self._config.max_frame)

    def send(self, to: int, item: Payload) -> bool:
        """Queue ``item`` for ``to``; never blocks, never raises for a dead peer.

        Returns:
            True if queued; False if dropped (queue full, unknown peer, stopped).

        Raises:
            FrameTooLargeError: the encoded item exceeds ``max_frame`` (a caller bug).
            ValueError, TypeError: ``item`` is not a sendable payload.
        """
        if type(item) is Message:  # the hot path
            if item.frm != self.node_id:
                raise ValueError(f"message from {item.frm} sent by node {self.node_id}")
            frame = encode_message_frame(item, self._config.max_frame)
        else:
            frame = self._frame(item)
        peer: _Peer | None = self._peers.get(to)  # type: ignore[call-overload]
        if peer is None:
            self._dropped_unknown += 1
            return False
        lane = peer.lane_for(item)
        lane.ensure_started()
        return lane.offer(frame)

    async def send_snapshot_chunk(self, to: int, chunk: SnapshotChunk) -> bool:
        """Queue a snapshot chunk, waiting while the snapshot lane's queue is full.

        Returns:
            True if queued; False if the peer is unknown or was removed meanwhile.
        """
        frame = self._frame(chunk)
        peer = self._peers.get(NodeId(to))
        if peer is None:
            self._dropped_unknown += 1
            return False
        peer.snapshot.ensure_started()
        return await peer.snapshot.queue.put(frame)

    def is_connected(self, peer_id: int) -> bool:
        """Whether the Raft lane to ``peer_id`` is connected and authenticated."""
        peer = self._peers.get(NodeId(peer_id))
        return peer is not None and peer.raft.connected

    def stats(self) -> TransportStats:
        """A snapshot of the counters."""
        peers = {pid: p.stats() for pid, p in sorted(self._peers.items())}
        return TransportStats(
            sent=sum(p.sent for p in peers.values()),
            dropped=self._dropped_unknown + sum(p.dropped for p in peers.values()),
            reconnects=sum(p.reconnects for p in peers.values()),
            received=self._received,
            rejected_handshakes=self._rejected,
            protocol_errors=self._protocol_errors,
            peers=peers,
        )

    # ------------------------------------------------------------------
    # Receiving
    # ------------------------------------------------------------------

    def _on_accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain callback that spawns a task we own, so stop() can cancel it
        # (asyncio 3.11 mishandles a cancelled client_connected_cb coroutine).
        if self._stopped or self._pending >= self._config.max_pending_handshakes:
            self._rejected += 1
            writer.close()
            return
        self._pending += 1  # released by _serve_inbound once the handshake ends
        task = asyncio.get_running_loop().create_task(self._inbound_task(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _inbound_task(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            await self._serve_inbound(reader, writer)
        finally:
            await close_writer(writer)

    async def _serve_inbound(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        remote = writer.get_extra_info("peername")
        try:
            peer, lane = await accept(
                reader,
                writer,
                node_id=self.node_id,
                cluster_id=self._cluster_id,
                secret=self._secret,
                is_known_peer=self._peers.__contains__,
                timeout=self._config.handshake_timeout,
            )
        except (PeerProtocolError, OSError, TimeoutError) as exc:
            self._rejected += 1
            reason = exc.reason if isinstance(exc, PeerProtocolError) else repr(exc)
            log.warning("node %s: dropped inbound %s: %s", self.node_id, remote, reason)
            return
        finally:
            self._pending -= 1
        set_nodelay(writer)
        frames = FrameReader(reader, self._config.max_frame, self._config.read_size)
        key = (peer, lane)
        old = self._inbound.get(key)
        if old is not None:
            old.close()  # the peer redialed; the old stream is dead or half-open
        self._inbound[key] = writer
        try:
            await self._read_loop(peer, lane, frames)
        except PeerProtocolError as exc:
            self._protocol_errors += 1
            log.warning("node %s: dropped peer %s: %s", self.node_id, peer, exc.reason)
        except OSError as exc:
            log.debug("node %s: inbound from peer %s lost: %r", self.node_id, peer, exc)
        except Exception:  # a bug in on_message: report it loudly, drop this stream
            log.exception("node %s: on_message failed for peer %s", self.node_id, peer)
        finally:
            if self._inbound.get(key) is writer:
                del self._inbound[key]

    async def _read_loop(self, peer: NodeId, lane: Lane, frames: FrameReader) -> None:
        """The connection's one read loop: validate, then hand items to the callback.

        Every item one read brings in goes to ``on_message``, then ``on_drained``
        is called once for the batch.
        """
        node_id, raft_lane = self.node_id, lane is Lane.RAFT
        while True:
            payloads = await frames.next_payloads()
            if payloads is None or peer not in self._peers:
                return
            on_message, on_drained = self._on_message, self._on_drained
            for payload in payloads:
                kind, item = decode(payload)
                if raft_lane and kind is _RAFT:
                    # The hot path: what _check_inbound checks for a Raft message.
                    if item.frm != peer or item.to != node_id:  # type: ignore[union-attr]
                        self._check_inbound(peer, lane, kind, item)
                else:
                    self._check_inbound(peer, lane, kind, item)
                self._received += 1
                on_message(peer, kind, item)
            if on_drained is not None:
                on_drained()

    def _check_inbound(self, peer: NodeId, lane: Lane, kind: Kind, item: Payload) -> None:
        if kind in HANDSHAKE_KINDS:
            raise PeerProtocolError(f"{kind.name} after the handshake")
        if (kind is Kind.SNAPSHOT_CHUNK) != (lane is Lane.SNAPSHOT):
            raise PeerProtocolError(f"{kind.name} on the {lane.name} lane")
        if isinstance(item, Message) and (item.frm != peer or item.to != self.node_id):
            raise PeerProtocolError(f"message {item.frm}->{item.to} on a stream from {peer}")

"""One outbound connection to one peer on one lane, kept alive with backoff (L2).

An :class:`OutboundLane` owns a :class:`~crema.transport.queue.FrameQueue`
and one task that loops: dial and authenticate, then write queued frames in
batches (one ``write`` and one ``drain`` per batch) until the connection
breaks, then wait a jittered exponential backoff and dial again. Frames taken
from the queue when the connection breaks are lost; Raft retransmits.

The connection is write-only after the handshake: the acceptor never sends,
so the lane's one read loop only watches for end of stream (or a protocol
violation) and wakes the writer so it redials at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

from crema.errors import PeerProtocolError
from crema.raft.types import NodeId
from crema.transport.backoff import Backoff
from crema.transport.codec import Lane
from crema.transport.config import TransportConfig, parse_addr
from crema.transport.conn import close_writer, dial
from crema.transport.queue import FrameQueue

log = logging.getLogger("crema.transport")


class OutboundLane:
    """Dials ``peer_id`` at ``addr`` for one lane and writes its queued frames."""

    def __init__(
        self,
        *,
        node_id: NodeId,
        peer_id: NodeId,
        addr: str,
        lane: Lane,
        cluster_id: str,
        secret: bytes | None,
        config: TransportConfig,
        rng: random.Random,
    ) -> None:
        self.node_id = node_id
        self.peer_id = peer_id
        self.lane = lane
        self._host, self._port = parse_addr(addr, "peer address")
        self.addr = addr
        self._cluster_id = cluster_id
        self._secret = secret
        self._config = config
        self._backoff = Backoff(config.backoff_initial, config.backoff_max, rng)
        max_bytes = config.snapshot_queue_bytes if lane is Lane.SNAPSHOT else config.queue_bytes
        self.queue = FrameQueue(config.queue_messages, max_bytes)
        self.connected = False
        self.sent = 0
        self.connects = 0
        self.connect_failures = 0
        self._writer: asyncio.StreamWriter | None = None
        self._lost = False
        self._burst = False
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # kept: a lookup costs a getpid()

    @property
    def reconnects(self) -> int:
        """Successful connections after the first one."""
        return max(0, self.connects - 1)

    def ensure_started(self) -> None:
        """Start the dial-and-write task if it is not running (idempotent)."""
        if self._task is None and not self._closed:
            name = f"crema-peer-{self.node_id}->{self.peer_id}-{self.lane.name.lower()}"
            self._task = asyncio.get_running_loop().create_task(self._run(), name=name)

    def offer(self, frame: bytes) -> bool:
        """Send ``frame`` now if the lane is idle, else queue it (dropping when full).

        The first frame of a burst goes straight to the socket, saving the
        writer task's wake-up on the latency path; until the event loop turns
        over, later frames queue up so the writer sends them in one batch.
        """
        writer = self._writer
        if (
            writer is not None
            and not self._burst
            and not self.queue
            and not self._lost
            and not writer.transport.is_closing()
            and writer.transport.get_write_buffer_size() == 0
        ):
            writer.write(frame)
            self.sent += 1
            self._burst = True
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            loop.call_soon(self._end_burst)
            return True
        return self.queue.offer(frame)

    def _end_burst(self) -> None:
        self._burst = False

    def set_addr(self, addr: str) -> None:
        """Point the lane at a new address; a live connection is dropped and redialed."""
        self._host, self._port = parse_addr(addr, "peer address")
        self.addr = addr
        if self._writer is not None:
            self._writer.transport.abort()

    async def close(self) -> None:
        """Stop the task, close the connection, drop queued frames (idempotent)."""
        self._closed = True
        self.queue.close()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while not self._closed:
            try:
                reader, writer = await dial(
                    self._host,
                    self._port,
                    node_id=self.node_id,
                    peer_id=self.peer_id,
                    cluster_id=self._cluster_id,
                    secret=self._secret,
                    lane=self.lane,
                    config=self._config,
                )
            except PeerProtocolError as exc:
                self.connect_failures += 1
                log.warning("node %s: peer %s refused: %s", self.node_id, self.peer_id, exc.reason)
            except (OSError, TimeoutError) as exc:
                self.connect_failures += 1
                log.debug("node %s: cannot reach peer %s: %r", self.node_id, self.peer_id, exc)
            else:
                self._backoff.reset()
                self.connects += 1
                await self._serve(reader, writer)
                if self._closed:
                    return
            await asyncio.sleep(self._backoff.next_delay())

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._lost = False
        self.connected = True
        watcher = asyncio.get_running_loop().create_task(self._watch(reader))
        try:
            await self._pump(writer)
        except (OSError, RuntimeError, TimeoutError) as exc:  # RuntimeError: closing transport
            log.debug("node %s: connection to peer %s lost: %r", self.node_id, self.peer_id, exc)
        finally:
            self.connected = False
            self._writer = None
            watcher.cancel()
            await close_writer(writer)
            await asyncio.wait({watcher})  # never raises, lets our own cancellation through

    async def _watch(self, reader: asyncio.StreamReader) -> None:
        """The connection's read loop: any byte or end of stream ends the connection."""
        with contextlib.suppress(OSError):
            data = await reader.read(1)
            if data:
                log.warning("node %s: peer %s sent data on an outbound stream", *self._ids())
        self._lost = True
        self.queue.wake()

    def _ids(self) -> tuple[NodeId, NodeId]:
        return self.node_id, self.peer_id

    async def _pump(self, writer: asyncio.StreamWriter) -> None:
        queue = self.queue
        batch_bytes = self._config.batch_bytes
        write_timeout = self._config.write_timeout
        while True:
            await queue.wait()
            if self._lost or self._closed:
                return
            batch = queue.take(batch_bytes)
            if not batch:
                continue
            writer.write(batch[0] if len(batch) == 1 else b"".join(batch))
            async with asyncio.timeout(write_timeout):
                await writer.drain()
            self.sent += len(batch)

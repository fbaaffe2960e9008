"""Snapshot install: stream the leader's snapshot file to a lagging follower (layer L2).

Leader side (:class:`SnapshotSender`): when the Raft core asks to send a
snapshot, the newest MCRS file (the one the log was compacted to) is streamed
in chunks over the transport's snapshot lane, then the sender waits for the
follower's acknowledgement. Only then does the ``SNAP`` Raft message go out,
and the core hears ``report_snapshot(ok)``; a failed or interrupted transfer
is reported as failed and the core asks again later (from offset 0).

Follower side (:class:`SnapshotReceiver`): chunks are written to a temporary
file in the checkpoint directory; the complete file is verified (CRC and full
decode) and a *new* state machine is built from it in a worker thread. The
``SNAP`` message is stepped into the core only when a verified file for it is
staged, so nothing half-installed is ever served; the runtime then swaps the
staged state machine in while handling the Ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from crema.cache.state_machine import CacheStateMachine
from crema.checkpoint import CheckpointManager, SnapshotReader, snapshot_name
from crema.checkpoint.writer import fsync_directory
from crema.errors import SnapshotError
from crema.raft.messages import Message
from crema.raft.types import NodeId, SnapshotMeta
from crema.transport.codec import SnapshotAck, SnapshotChunk
from crema.transport.tcp import TcpTransport

log = logging.getLogger("crema.node")

CHUNK_BYTES = 1 << 20
ACK_TIMEOUT_S = 30.0


class SnapshotSender:
    """Leader side of snapshot install.

    Args:
        transport: the peer transport.
        manager: where the snapshot files are.
        report: ``report(node, ok)``, forwarded to ``RawNode.report_snapshot``.
    """

    def __init__(
        self,
        transport: TcpTransport,
        manager: CheckpointManager,
        report: Callable[[NodeId, bool], None],
    ) -> None:
        self._transport = transport
        self._manager = manager
        self._report = report
        self._tasks: dict[NodeId, asyncio.Task[None]] = {}
        self._acks: dict[NodeId, asyncio.Future[SnapshotAck]] = {}
        self.sent = 0
        self.failed = 0

    def send(self, message: Message) -> None:
        """Start streaming the snapshot of a ``SNAP`` message (once per follower)."""
        to = message.to
        task = self._tasks.get(to)
        if task is not None and not task.done():
            return
        loop = asyncio.get_running_loop()
        self._tasks[to] = loop.create_task(self._stream(message))

    async def _stream(self, message: Message) -> None:
        to, meta = message.to, message.snapshot
        assert meta is not None
        ok = False
        try:
            path = self._manager.directory / snapshot_name(meta.index, meta.term)
            fut: asyncio.Future[SnapshotAck] = asyncio.get_running_loop().create_future()
            self._acks[to] = fut
            size = await self._send_chunks(to, meta, path)
            ack = await asyncio.wait_for(fut, ACK_TIMEOUT_S + size / 20e6)
            ok = ack.ok and ack.offset == size
        except (OSError, TimeoutError, SnapshotError) as exc:
            log.warning("snapshot %d to node %d failed: %s", meta.index, to, exc)
        finally:
            self._acks.pop(to, None)
        if ok:
            self._transport.send(to, message)
            self.sent += 1
        else:
            self.failed += 1
        self._report(to, ok)

    async def _send_chunks(self, to: NodeId, meta: SnapshotMeta, path: Path) -> int:
        offset = 0
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            while True:
                data = file.read(CHUNK_BYTES)
                last = offset + len(data) >= size
                await self._transport.send_snapshot_chunk(
                    to, SnapshotChunk(meta, offset, data, last)
                )
                offset += len(data)
                if last:
                    return size

    def on_ack(self, frm: NodeId, ack: SnapshotAck) -> None:
        """The follower acknowledged (or refused) the transfer."""
        fut = self._acks.get(frm)
        if fut is not None and not fut.done():
            fut.set_result(ack)

    async def stop(self) -> None:
        """Cancel transfers in progress."""
        for task in self._tasks.values():
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks.values())
        self._tasks.clear()


@dataclass(slots=True)
class Staged:
    """A verified snapshot file and the state machine built from it."""

    meta: SnapshotMeta
    path: Path
    state_machine: CacheStateMachine


@dataclass(slots=True)
class _Incoming:
    meta: SnapshotMeta
    path: Path
    fd: int
    offset: int = 0


class SnapshotReceiver:
    """Follower side of snapshot install.

    Args:
        transport: the peer transport (to acknowledge).
        manager: the checkpoint directory receives the file.
        capacity: the state machine's entry bound.
        now_ms: the local clock (entries expired by it are skipped).
        applied: the local applied index (an older snapshot is acknowledged unused).
    """

    def __init__(
        self,
        transport: TcpTransport,
        manager: CheckpointManager,
        capacity: int | None,
        now_ms: Callable[[], int],
        applied: Callable[[], int],
    ) -> None:
        self._transport = transport
        self._manager = manager
        self._capacity = capacity
        self._now_ms = now_ms
        self._applied = applied
        self._incoming: _Incoming | None = None
        self.staged: Staged | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.installed = 0

    def on_chunk(self, frm: NodeId, chunk: SnapshotChunk) -> None:
        """Write one chunk; verify and stage the file after the last one."""
        meta = chunk.meta
        if chunk.offset == 0:
            self._abort()
            name = f".install-{meta.index:016x}-{meta.term:016x}.snap.tmp"
            path = self._manager.directory / name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            self._incoming = _Incoming(meta, path, fd)
        incoming = self._incoming
        if incoming is None or incoming.meta != meta or incoming.offset != chunk.offset:
            self._abort()
            self._ack(frm, meta, 0, False)
            return
        os.write(incoming.fd, chunk.data)
        incoming.offset += len(chunk.data)
        if chunk.last:
            self._incoming = None
            os.fsync(incoming.fd)
            os.close(incoming.fd)
            task = asyncio.get_running_loop().create_task(self._stage(frm, incoming))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _stage(self, frm: NodeId, incoming: _Incoming) -> None:
        meta = incoming.meta
        if meta.index <= self._applied():
            os.unlink(incoming.path)
            self._ack(frm, meta, incoming.offset, True)
            return
        try:
            sm = await asyncio.to_thread(self._build, incoming.path, meta, self._now_ms())
        except (SnapshotError, OSError, ValueError) as exc:
            log.warning("received snapshot %d is unusable: %s", meta.index, exc)
            _unlink_quietly(incoming.path)
            self._ack(frm, meta, 0, False)
            return
        if self.staged is not None:
            _unlink_quietly(self.staged.path)
        self.staged = Staged(meta, incoming.path, sm)
        self._ack(frm, meta, incoming.offset, True)

    def _build(self, path: Path, meta: SnapshotMeta, now_ms: int) -> CacheStateMachine:
        with SnapshotReader.open(path) as reader:
            header = reader.metadata()
            if (header.index, header.term) != (meta.index, meta.term):
                raise SnapshotError(f"snapshot file is at {header.index}, expected {meta.index}")
            entries = reader.read_all(live_at=now_ms)
        sm = CacheStateMachine(self._capacity)
        sm.restore(entries, meta.index, meta.term)
        return sm

    def ready_for(self, meta: SnapshotMeta | None) -> bool:
        """Whether a ``SNAP`` message for ``meta`` may be stepped into the core."""
        if meta is None:
            return False
        if meta.index <= self._applied():
            return True
        staged = self.staged
        return staged is not None and (staged.meta.index, staged.meta.term) == (
            meta.index,
            meta.term,
        )

    def take(self, meta: SnapshotMeta) -> CacheStateMachine:
        """Move the staged file for ``meta`` into place; return its state machine."""
        staged = self.staged
        if staged is None or (staged.meta.index, staged.meta.term) != (meta.index, meta.term):
            raise RuntimeError(f"no staged snapshot for index {meta.index}")
        self.staged = None
        final = self._manager.directory / snapshot_name(meta.index, meta.term)
        os.replace(staged.path, final)
        fsync_directory(self._manager.directory)
        self.installed += 1
        return staged.state_machine

    def _ack(self, to: NodeId, meta: SnapshotMeta, offset: int, ok: bool) -> None:
        self._transport.send(to, SnapshotAck(meta.index, meta.term, offset, ok))

    def _abort(self) -> None:
        incoming, self._incoming = self._incoming, None
        if incoming is not None:
            os.close(incoming.fd)
            _unlink_quietly(incoming.path)

    async def stop(self) -> None:
        """Drop a transfer in progress."""
        self._abort()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
        if self.staged is not None:
            _unlink_quietly(self.staged.path)
            self.staged = None


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)

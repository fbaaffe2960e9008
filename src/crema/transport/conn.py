"""Stream-level pieces shared by both ends of a peer connection (L2).

Only moving bytes lives here: reading frames off a ``StreamReader`` through a
:class:`~crema.transport.codec.FrameDecoder`, and running the pure handshake
state machines over a socket with a deadline. Decisions belong to the codec
and the handshake module.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
from collections import deque
from collections.abc import Callable
from typing import TypeVar

from crema.errors import FrameTooLargeError, HandshakeError
from crema.raft.types import NodeId
from crema.transport.codec import (
    HEADER_SIZE,
    NONCE_SIZE,
    Auth,
    FrameDecoder,
    Hello,
    HelloAck,
    Kind,
    Lane,
    Payload,
    decode,
    encode,
    encode_frame,
)
from crema.transport.config import TransportConfig
from crema.transport.handshake import AcceptorHandshake, DialerHandshake

HANDSHAKE_MAX_FRAME = 1024
"""Largest frame accepted before a peer is authenticated."""


class FrameReader:
    """Payloads from a stream, one read loop's worth of state."""

    def __init__(self, reader: asyncio.StreamReader, max_frame: int, read_size: int) -> None:
        self._reader = reader
        self._decoder = FrameDecoder(max_frame)
        self._ready: deque[bytes] = deque()
        self._read_size = read_size

    async def next_payload(self) -> bytes | None:
        """The next complete payload, or None at end of stream.

        Raises:
            FrameTooLargeError: a frame announces more than the limit.
            OSError: the connection failed.
        """
        while not self._ready:
            self._decoder.check()
            data = await self._reader.read(self._read_size)
            if not data:
                return None
            self._ready.extend(self._decoder.feed(data))
        return self._ready.popleft()

    async def next_payloads(self) -> list[bytes] | None:
        """Every complete payload buffered (waiting for at least one), or None at end of stream.

        Raises:
            FrameTooLargeError: a frame announces more than the limit.
            OSError: the connection failed.
        """
        ready = self._ready
        while not ready:
            self._decoder.check()
            data = await self._reader.read(self._read_size)
            if not data:
                return None
            ready.extend(self._decoder.feed(data))
        out = list(ready)
        ready.clear()
        return out

    async def next_item(self) -> tuple[Kind, Payload] | None:
        """The next decoded envelope, or None at end of stream.

        Raises:
            PeerProtocolError: malformed or oversized frame.
        """
        payload = await self.next_payload()
        return None if payload is None else decode(payload)


def set_nodelay(writer: asyncio.StreamWriter) -> None:
    """Disable Nagle's algorithm: Raft messages are small and latency-bound."""
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def close_writer(writer: asyncio.StreamWriter) -> None:
    """Drop a connection at once, discarding unsent bytes.

    ``abort`` rather than ``close``: a graceful close waits to flush, and a
    peer that stopped reading would hold it forever. Raft retransmits.
    """
    writer.transport.abort()
    with contextlib.suppress(OSError, RuntimeError):
        await writer.wait_closed()


_T = TypeVar("_T")


async def _expect(reader: asyncio.StreamReader, typ: type[_T]) -> _T:
    """Read exactly one small handshake frame, consuming nothing after it.

    ``readexactly`` leaves any later bytes (the first data frames) in the
    stream for the read loop, and the tiny limit applies before allocation.
    """
    try:
        (size,) = struct.unpack(">I", await reader.readexactly(HEADER_SIZE))
        if size > HANDSHAKE_MAX_FRAME:
            raise FrameTooLargeError(size, HANDSHAKE_MAX_FRAME)
        kind, item = decode(await reader.readexactly(size))
    except asyncio.IncompleteReadError:
        raise HandshakeError("connection closed during handshake") from None
    if not isinstance(item, typ):
        raise HandshakeError(f"expected {typ.__name__}, got {kind.name}")
    return item


async def dial(
    host: str,
    port: int,
    *,
    node_id: NodeId,
    peer_id: NodeId,
    cluster_id: str,
    secret: bytes | None,
    lane: Lane,
    config: TransportConfig,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to a peer and authenticate both ways.

    Raises:
        OSError, TimeoutError: could not connect in time.
        PeerProtocolError: the handshake failed (the connection is closed).
    """
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(
            host,
            port,
            ssl=config.client_ssl,
            server_hostname=host if config.client_ssl is not None else None,
        ),
        config.connect_timeout,
    )
    try:
        set_nodelay(writer)
        hs = DialerHandshake(
            cluster_id=cluster_id,
            node_id=node_id,
            peer_id=peer_id,
            secret=secret,
            nonce=os.urandom(NONCE_SIZE),
            lane=lane,
        )
        async with asyncio.timeout(config.handshake_timeout):
            writer.write(encode_frame(encode(hs.hello())))
            auth = hs.receive_ack(await _expect(reader, HelloAck))
            writer.write(encode_frame(encode(auth)))
            await writer.drain()
    except BaseException:
        await close_writer(writer)
        raise
    return reader, writer


async def accept(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    node_id: NodeId,
    cluster_id: str,
    secret: bytes | None,
    is_known_peer: Callable[[NodeId], bool],
    timeout: float,
) -> tuple[NodeId, Lane]:
    """Run the acceptor side of the handshake on a fresh inbound connection.

    Returns:
        The authenticated peer id and its lane; data frames that follow stay
        in ``reader``.

    Raises:
        PeerProtocolError, OSError, TimeoutError: the caller drops the connection.
    """
    hs = AcceptorHandshake(
        cluster_id=cluster_id,
        node_id=node_id,
        secret=secret,
        is_known_peer=is_known_peer,
        nonce=os.urandom(NONCE_SIZE),
    )
    async with asyncio.timeout(timeout):
        hello = await _expect(reader, Hello)
        writer.write(encode_frame(encode(hs.receive_hello(hello))))
        await writer.drain()
        peer = hs.receive_auth(await _expect(reader, Auth))
    return peer, hello.lane

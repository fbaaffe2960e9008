"""Helpers for transport tests over real loopback sockets."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from crema.raft.messages import Message, MessageType
from crema.raft.types import Index, NodeId, Term
from crema.transport.codec import Kind, Payload
from crema.transport.config import TransportConfig
from crema.transport.tcp import TcpTransport

SECRET = b"correct horse battery staple"
CLUSTER = "test-cluster"
FAST = TransportConfig(backoff_initial=0.01, backoff_max=0.1, handshake_timeout=2.0)


@dataclass
class Inbox:
    """Records what a transport's callback received."""

    items: list[tuple[NodeId, Kind, Payload]] = field(default_factory=list)

    def __call__(self, frm: NodeId, kind: Kind, item: Payload) -> None:
        self.items.append((frm, kind, item))

    def of_kind(self, kind: Kind) -> list[Payload]:
        return [item for _, k, item in self.items if k is kind]


def heartbeat(frm: int, to: int, commit: int = 0) -> Message:
    return Message(
        MessageType.HEARTBEAT, NodeId(to), NodeId(frm), term=Term(1), commit=Index(commit)
    )


def make(
    node_id: int,
    inbox: Inbox,
    *,
    listen: str = "127.0.0.1:0",
    peers: dict[int, str] | None = None,
    secret: bytes | None = SECRET,
    cluster: str = CLUSTER,
    config: TransportConfig = FAST,
) -> TcpTransport:
    return TcpTransport(
        node_id,
        listen,
        peers or {},
        cluster,
        secret,
        inbox,
        config=config,
        rng=random.Random(node_id),
    )


async def start_mesh(
    ids: list[int], secret: bytes | None = SECRET, config: TransportConfig = FAST
) -> tuple[dict[int, TcpTransport], dict[int, Inbox]]:
    """Start one transport per id on ephemeral ports, each knowing all the others."""
    inboxes = {i: Inbox() for i in ids}
    nodes = {i: make(i, inboxes[i], secret=secret, config=config) for i in ids}
    for t in nodes.values():
        await t.start()
    for i, t in nodes.items():
        for j, other in nodes.items():
            if i != j:
                t.add_peer(j, other.address)
    return nodes, inboxes


async def stop_all(nodes: dict[int, TcpTransport]) -> None:
    for t in nodes.values():
        await t.stop()


async def wait_until(pred: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``pred`` until true; fail the test after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(0.005)

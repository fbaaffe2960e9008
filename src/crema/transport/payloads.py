"""Values carried by peer envelopes: kinds, lanes and one frozen type per kind (L0, pure).

:mod:`crema.transport.codec` encodes and decodes them; the names are
re-exported there. Raft messages travel as :class:`crema.raft.messages.Message`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from crema.raft.messages import Message
from crema.raft.types import NodeId, SnapshotMeta

NONCE_SIZE = 32
MAC_SIZE = 32
MAX_CLUSTER_ID = 256
MAX_REQUEST_ID = 256


class Kind(enum.IntEnum):
    """What an envelope carries."""

    HELLO = 1
    HELLO_ACK = 2
    AUTH = 3
    RAFT = 10
    FORWARD = 11
    FORWARD_RESP = 12
    SNAPSHOT_CHUNK = 13
    SNAPSHOT_ACK = 14


HANDSHAKE_KINDS = frozenset({Kind.HELLO, Kind.HELLO_ACK, Kind.AUTH})


class Lane(enum.IntEnum):
    """Which outbound connection a dialer opens: Raft traffic or snapshot chunks."""

    RAFT = 0
    SNAPSHOT = 1


@dataclass(frozen=True, slots=True)
class Hello:
    """Dialer -> acceptor: who I am, whom I want, my fresh nonce."""

    version: int
    cluster_id: str
    frm: NodeId
    to: NodeId
    nonce: bytes
    lane: Lane = Lane.RAFT


@dataclass(frozen=True, slots=True)
class HelloAck:
    """Acceptor -> dialer: its nonce and, with a secret, its MAC over the transcript."""

    cluster_id: str
    frm: NodeId
    to: NodeId
    nonce: bytes
    mac: bytes = b""


@dataclass(frozen=True, slots=True)
class Auth:
    """Dialer -> acceptor: the dialer's MAC (empty without a secret)."""

    mac: bytes = b""


@dataclass(frozen=True, slots=True)
class Forward:
    """A client request forwarded to another node; both fields are opaque."""

    request_id: bytes
    body: bytes


@dataclass(frozen=True, slots=True)
class ForwardResp:
    """The reply to a :class:`Forward` with the same ``request_id``."""

    request_id: bytes
    body: bytes


@dataclass(frozen=True, slots=True)
class SnapshotChunk:
    """``data`` at byte ``offset`` of the snapshot described by ``meta``."""

    meta: SnapshotMeta
    offset: int
    data: bytes
    last: bool = False


@dataclass(frozen=True, slots=True)
class SnapshotAck:
    """Receiver -> sender: bytes of snapshot (index, term) received so far, or refusal."""

    index: int
    term: int
    offset: int
    ok: bool = True


Payload = Hello | HelloAck | Auth | Message | Forward | ForwardResp | SnapshotChunk | SnapshotAck


_KIND_OF_TYPE: dict[type, Kind] = {
    Message: Kind.RAFT,
    Forward: Kind.FORWARD,
    ForwardResp: Kind.FORWARD_RESP,
    SnapshotChunk: Kind.SNAPSHOT_CHUNK,
    SnapshotAck: Kind.SNAPSHOT_ACK,
    Hello: Kind.HELLO,
    HelloAck: Kind.HELLO_ACK,
    Auth: Kind.AUTH,
}


def kind_of(item: Payload) -> Kind:
    """Return the envelope kind that carries ``item``.

    Raises:
        TypeError: ``item`` is not a transport payload.
    """
    try:
        return _KIND_OF_TYPE[type(item)]
    except KeyError:
        raise TypeError(f"not a transport payload: {type(item).__name__}") from None

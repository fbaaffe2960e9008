"""Peer handshake with mutual authentication, as two pure state machines (L0).

The exchange, before any other frame may flow on a connection::

    dialer   -> acceptor  HELLO(version, cluster_id, dialer id, acceptor id, Nd, lane)
    acceptor -> dialer    HELLO_ACK(cluster_id, acceptor id, dialer id, Na, MACa)
    dialer   -> acceptor  AUTH(MACd)

``Nd`` and ``Na`` are fresh 32-byte random nonces, supplied by the caller
(this module has no randomness). With a cluster secret ``K``::

    MACa = HMAC-SHA256(K, transcript("acceptor"))
    MACd = HMAC-SHA256(K, transcript("dialer"))
    transcript(role) = msgpack([tag(role), version, cluster_id, dialer id,
                                acceptor id, Nd, Na, lane])

Properties: each side proves knowledge of ``K`` over a nonce the other side
just chose, so a recorded handshake cannot be replayed; the role tag stops a
MAC from being reflected back; the ids and cluster id are bound into the MAC,
so a proof for one node pair is useless for another. Without a secret both
MACs are empty and only the cluster id and node ids are checked. Every
failure raises :class:`~crema.errors.HandshakeError` with a reason that never
contains secret material. MACs are compared with :func:`hmac.compare_digest`.
The handshake authenticates; it does not encrypt or protect later frames.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

import msgpack

from crema.errors import HandshakeError
from crema.raft.types import NodeId
from crema.transport.codec import NONCE_SIZE, WIRE_VERSION, Auth, Hello, HelloAck, Lane

_TAG_ACCEPTOR = b"crema-peer-v1/acceptor"
_TAG_DIALER = b"crema-peer-v1/dialer"


def transcript_mac(
    secret: bytes,
    tag: bytes,
    cluster_id: str,
    dialer: NodeId,
    acceptor: NodeId,
    dialer_nonce: bytes,
    acceptor_nonce: bytes,
    lane: Lane,
) -> bytes:
    """HMAC-SHA256 of the handshake transcript under ``secret`` for one role ``tag``."""
    fields = [tag, WIRE_VERSION, cluster_id, dialer, acceptor, dialer_nonce, acceptor_nonce, lane]
    data: bytes = msgpack.packb(fields, use_bin_type=True)
    return hmac.new(secret, data, hashlib.sha256).digest()


def _check_nonce(nonce: bytes) -> None:
    if len(nonce) != NONCE_SIZE:
        raise ValueError(f"nonce must be {NONCE_SIZE} bytes, got {len(nonce)}")


def _verify(secret: bytes | None, mac: bytes, expected: Callable[[bytes], bytes]) -> None:
    """Check ``mac`` against the expected one, or its absence when there is no secret."""
    if secret is None:
        if mac:
            raise HandshakeError("peer requires a cluster secret but none is configured")
        return
    if not mac:
        raise HandshakeError("peer sent no MAC but a cluster secret is configured")
    if not hmac.compare_digest(mac, expected(secret)):
        raise HandshakeError("bad MAC: peer does not know the cluster secret")


class DialerHandshake:
    """The side that opened the connection: ``hello()``, then ``receive_ack()``."""

    def __init__(
        self,
        *,
        cluster_id: str,
        node_id: NodeId,
        peer_id: NodeId,
        secret: bytes | None,
        nonce: bytes,
        lane: Lane = Lane.RAFT,
    ) -> None:
        _check_nonce(nonce)
        self.cluster_id = cluster_id
        self.node_id = node_id
        self.peer_id = peer_id
        self.lane = lane
        self._secret = secret
        self._nonce = nonce
        self._state = "start"

    def hello(self) -> Hello:
        """The first message; call once."""
        if self._state != "start":
            raise RuntimeError(f"hello() in state {self._state}")
        self._state = "sent_hello"
        return Hello(
            WIRE_VERSION, self.cluster_id, self.node_id, self.peer_id, self._nonce, self.lane
        )

    def receive_ack(self, ack: HelloAck) -> Auth:
        """Verify the acceptor's answer and return the final message.

        Raises:
            HandshakeError: wrong cluster or node, or the acceptor's MAC is
                bad or missing (or present while we have no secret).
        """
        if self._state != "sent_hello":
            raise RuntimeError(f"receive_ack() in state {self._state}")
        self._state = "failed"
        if ack.cluster_id != self.cluster_id:
            raise HandshakeError(_wrong_cluster(ack.cluster_id, self.cluster_id))
        if ack.frm != self.peer_id or ack.to != self.node_id:
            raise HandshakeError(f"expected node {self.peer_id}, answered by node {ack.frm}")
        if hmac.compare_digest(ack.nonce, self._nonce):
            raise HandshakeError("acceptor echoed our nonce")
        _verify(self._secret, ack.mac, lambda k: self._mac(k, _TAG_ACCEPTOR, ack.nonce))
        self._state = "done"
        if self._secret is None:
            return Auth(b"")
        return Auth(self._mac(self._secret, _TAG_DIALER, ack.nonce))

    def _mac(self, secret: bytes, tag: bytes, acceptor_nonce: bytes) -> bytes:
        return transcript_mac(
            secret,
            tag,
            self.cluster_id,
            self.node_id,
            self.peer_id,
            self._nonce,
            acceptor_nonce,
            self.lane,
        )


class AcceptorHandshake:
    """The side that accepted the connection: ``receive_hello()``, then ``receive_auth()``."""

    def __init__(
        self,
        *,
        cluster_id: str,
        node_id: NodeId,
        secret: bytes | None,
        is_known_peer: Callable[[NodeId], bool],
        nonce: bytes,
    ) -> None:
        _check_nonce(nonce)
        self.cluster_id = cluster_id
        self.node_id = node_id
        self._secret = secret
        self._is_known_peer = is_known_peer
        self._nonce = nonce
        self._hello: Hello | None = None
        self._state = "start"

    @property
    def hello_received(self) -> Hello:
        """The validated HELLO (only after ``receive_hello`` succeeded)."""
        if self._hello is None:
            raise RuntimeError("no HELLO accepted yet")
        return self._hello

    def receive_hello(self, hello: Hello) -> HelloAck:
        """Validate the dialer's HELLO and return the answer.

        Raises:
            HandshakeError: wrong version, cluster id or target node, or an
                unknown or impossible dialer id.
        """
        if self._state != "start":
            raise RuntimeError(f"receive_hello() in state {self._state}")
        self._state = "failed"
        if hello.version != WIRE_VERSION:
            raise HandshakeError(f"unsupported protocol version {hello.version}")
        if hello.cluster_id != self.cluster_id:
            raise HandshakeError(_wrong_cluster(hello.cluster_id, self.cluster_id))
        if hello.to != self.node_id:
            raise HandshakeError(f"dialer wants node {hello.to}, this is node {self.node_id}")
        if hello.frm == self.node_id or not self._is_known_peer(hello.frm):
            raise HandshakeError(f"unknown peer id {hello.frm}")
        self._hello = hello
        self._state = "sent_ack"
        mac = b"" if self._secret is None else self._mac(self._secret, _TAG_ACCEPTOR)
        return HelloAck(self.cluster_id, self.node_id, hello.frm, self._nonce, mac)

    def receive_auth(self, auth: Auth) -> NodeId:
        """Verify the dialer's proof; return the authenticated peer id.

        Raises:
            HandshakeError: the MAC is bad, missing, or unexpected.
        """
        if self._state != "sent_ack":
            raise RuntimeError(f"receive_auth() in state {self._state}")
        self._state = "failed"
        _verify(self._secret, auth.mac, lambda k: self._mac(k, _TAG_DIALER))
        self._state = "done"
        return self.hello_received.frm

    def _mac(self, secret: bytes, tag: bytes) -> bytes:
        h = self.hello_received
        return transcript_mac(
            secret, tag, self.cluster_id, h.frm, self.node_id, h.nonce, self._nonce, h.lane
        )


def _wrong_cluster(theirs: object, ours: str) -> str:
    """The refusal naming both cluster ids (the peer's cut to 80 characters)."""
    return f"wrong cluster id {str(theirs)[:80]!r} (this node: {ours!r})"

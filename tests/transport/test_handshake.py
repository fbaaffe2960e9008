"""Handshake state machines: mutual authentication, identity checks, replay."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from crema.errors import HandshakeError
from crema.raft.types import NodeId
from crema.transport.codec import Auth, Lane, decode, encode
from crema.transport.handshake import AcceptorHandshake, DialerHandshake

SECRET = b"s3cret-s3cret-s3cret"
CLUSTER = "prod"


def dialer(
    secret: bytes | None = SECRET, cluster: str = CLUSTER, frm: int = 1, to: int = 2
) -> DialerHandshake:
    return DialerHandshake(
        cluster_id=cluster,
        node_id=NodeId(frm),
        peer_id=NodeId(to),
        secret=secret,
        nonce=os.urandom(32),
        lane=Lane.RAFT,
    )


def acceptor(
    secret: bytes | None = SECRET,
    cluster: str = CLUSTER,
    me: int = 2,
    known: tuple[int, ...] = (1, 3),
) -> AcceptorHandshake:
    return AcceptorHandshake(
        cluster_id=cluster,
        node_id=NodeId(me),
        secret=secret,
        is_known_peer=lambda n: n in known,
        nonce=os.urandom(32),
    )


def run(d: DialerHandshake, a: AcceptorHandshake) -> NodeId:
    """Drive a full exchange through the codec, as the wire would."""
    _, hello = decode(encode(d.hello()))
    _, ack = decode(encode(a.receive_hello(hello)))  # type: ignore[arg-type]
    _, auth = decode(encode(d.receive_ack(ack)))  # type: ignore[arg-type]
    return a.receive_auth(auth)  # type: ignore[arg-type]


def test_good_secret_authenticates_both_ways() -> None:
    assert run(dialer(), acceptor()) == 1


def test_no_secret_on_both_sides_checks_ids_only() -> None:
    assert run(dialer(secret=None), acceptor(secret=None)) == 1


def test_wrong_secret_rejected_by_dialer() -> None:
    d, a = dialer(secret=b"other"), acceptor()
    ack = a.receive_hello(d.hello())
    with pytest.raises(HandshakeError, match="bad MAC"):
        d.receive_ack(ack)


def test_wrong_secret_rejected_by_acceptor() -> None:
    # An impostor that skips verification and sends a MAC made with its own key.
    impostor, honest = dialer(secret=b"other"), acceptor()
    honest.receive_hello(impostor.hello())
    forged = Auth(b"\x00" * 32)
    with pytest.raises(HandshakeError, match="bad MAC") as info:
        honest.receive_auth(forged)
    assert SECRET.decode() not in str(info.value)


def test_dialer_without_secret_rejected() -> None:
    d, a = dialer(secret=None), acceptor()
    ack = a.receive_hello(d.hello())
    with pytest.raises(HandshakeError, match="requires a cluster secret"):
        d.receive_ack(ack)
    a2 = acceptor()
    a2.receive_hello(dialer(secret=None).hello())
    with pytest.raises(HandshakeError, match="no MAC"):
        a2.receive_auth(Auth(b""))


def test_acceptor_without_secret_rejected_by_dialer() -> None:
    d, a = dialer(), acceptor(secret=None)
    with pytest.raises(HandshakeError, match="no MAC"):
        d.receive_ack(a.receive_hello(d.hello()))


def test_wrong_cluster_id() -> None:
    with pytest.raises(HandshakeError, match="cluster"):
        acceptor().receive_hello(dialer(cluster="staging").hello())
    d, a = dialer(), acceptor(cluster="staging")
    hello = replace(d.hello(), cluster_id="staging")
    with pytest.raises(HandshakeError, match="cluster"):
        d.receive_ack(a.receive_hello(hello))


def test_wrong_target_node() -> None:
    with pytest.raises(HandshakeError, match="wants node 3"):
        acceptor().receive_hello(dialer(to=3).hello())


def test_unknown_or_self_peer_id() -> None:
    with pytest.raises(HandshakeError, match="unknown peer id 9"):
        acceptor().receive_hello(dialer(frm=9).hello())
    with pytest.raises(HandshakeError, match="unknown peer id 2"):
        acceptor(known=(1, 2)).receive_hello(dialer(frm=2).hello())


def test_answer_from_wrong_node_rejected() -> None:
    d = dialer(to=2)
    a = acceptor(me=3)
    ack = a.receive_hello(replace(d.hello(), to=NodeId(3)))
    with pytest.raises(HandshakeError, match="expected node 2"):
        d.receive_ack(ack)


def test_replayed_handshake_with_new_nonce_fails() -> None:
    d, a = dialer(), acceptor()
    hello = d.hello()
    ack = a.receive_hello(hello)
    auth = d.receive_ack(ack)
    assert a.receive_auth(auth) == 1
    # An eavesdropper replays the captured HELLO and AUTH to a fresh acceptor,
    # which picks a new nonce: the old AUTH no longer proves anything.
    fresh = acceptor()
    fresh.receive_hello(hello)
    with pytest.raises(HandshakeError, match="bad MAC"):
        fresh.receive_auth(auth)


def test_replayed_ack_to_new_dialer_fails() -> None:
    d, a = dialer(), acceptor()
    ack = a.receive_hello(d.hello())
    d2 = dialer()
    d2.hello()
    with pytest.raises(HandshakeError, match="bad MAC"):
        d2.receive_ack(ack)


def test_reflected_mac_rejected() -> None:
    d, a = dialer(), acceptor()
    ack = a.receive_hello(d.hello())
    # Sending the acceptor's own MAC back as the dialer's proof fails (role tag).
    with pytest.raises(HandshakeError, match="bad MAC"):
        a.receive_auth(Auth(ack.mac))


def test_lane_is_bound_into_the_mac() -> None:
    d, a = dialer(), acceptor()
    hello = d.hello()
    ack = a.receive_hello(replace(hello, lane=Lane.SNAPSHOT))
    with pytest.raises(HandshakeError, match="bad MAC"):
        d.receive_ack(ack)


def test_steps_out_of_order_are_caller_bugs() -> None:
    d = dialer()
    with pytest.raises(RuntimeError):
        d.receive_ack(acceptor().receive_hello(dialer().hello()))
    a = acceptor()
    with pytest.raises(RuntimeError):
        a.receive_auth(Auth(b""))
    with pytest.raises(ValueError, match="nonce"):
        DialerHandshake(
            cluster_id=CLUSTER, node_id=NodeId(1), peer_id=NodeId(2), secret=None, nonce=b"x"
        )

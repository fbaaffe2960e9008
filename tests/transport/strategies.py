"""Hypothesis strategies for transport payloads."""

from __future__ import annotations

from hypothesis import strategies as st

from crema.raft.messages import LOCAL_MESSAGES, Message, MessageType
from crema.raft.types import ConfState, Entry, EntryType, Index, NodeId, SnapshotMeta, Term
from crema.transport.codec import (
    MAC_SIZE,
    NONCE_SIZE,
    WIRE_VERSION,
    Auth,
    Forward,
    ForwardResp,
    Hello,
    HelloAck,
    Kind,
    Lane,
    Payload,
    SnapshotAck,
    SnapshotChunk,
)

U64 = (1 << 64) - 1
u64 = st.integers(0, U64)
node_ids = st.integers(1, U64).map(NodeId)
small_bytes = st.binary(max_size=64)


@st.composite
def conf_states(draw: st.DrawFn) -> ConfState:
    ids = draw(st.lists(st.integers(1, 1000), max_size=8, unique=True))
    split = draw(st.integers(0, len(ids)))
    return ConfState(
        voters=frozenset(NodeId(i) for i in ids[:split]),
        learners=frozenset(NodeId(i) for i in ids[split:]),
    )


snapshot_metas = st.builds(
    SnapshotMeta, index=u64.map(Index), term=u64.map(Term), conf_state=conf_states()
)
entries = st.builds(
    Entry,
    index=st.integers(1, U64).map(Index),
    term=u64.map(Term),
    type=st.sampled_from(EntryType),
    data=small_bytes,
)
wire_types = st.sampled_from(sorted(set(MessageType) - LOCAL_MESSAGES))
messages = st.builds(
    Message,
    type=wire_types,
    to=node_ids,
    frm=node_ids,
    term=u64.map(Term),
    log_term=u64.map(Term),
    index=u64.map(Index),
    entries=st.lists(entries, max_size=5).map(tuple),
    commit=u64.map(Index),
    reject=st.booleans(),
    reject_hint=u64.map(Index),
    context=small_bytes,
    snapshot=st.none() | snapshot_metas,
)
nonces = st.binary(min_size=NONCE_SIZE, max_size=NONCE_SIZE)
macs = st.just(b"") | st.binary(min_size=MAC_SIZE, max_size=MAC_SIZE)
cluster_ids = st.text(max_size=20)

by_kind: dict[Kind, st.SearchStrategy[Payload]] = {
    Kind.RAFT: messages,
    Kind.FORWARD: st.builds(Forward, request_id=small_bytes, body=st.binary(max_size=256)),
    Kind.FORWARD_RESP: st.builds(ForwardResp, request_id=small_bytes, body=st.binary(max_size=256)),
    Kind.SNAPSHOT_CHUNK: st.builds(
        SnapshotChunk, meta=snapshot_metas, offset=u64, data=small_bytes, last=st.booleans()
    ),
    Kind.SNAPSHOT_ACK: st.builds(SnapshotAck, index=u64, term=u64, offset=u64, ok=st.booleans()),
    Kind.HELLO: st.builds(
        Hello,
        version=st.just(WIRE_VERSION),
        cluster_id=cluster_ids,
        frm=node_ids,
        to=node_ids,
        nonce=nonces,
        lane=st.sampled_from(Lane),
    ),
    Kind.HELLO_ACK: st.builds(
        HelloAck, cluster_id=cluster_ids, frm=node_ids, to=node_ids, nonce=nonces, mac=macs
    ),
    Kind.AUTH: st.builds(Auth, mac=macs),
}
payloads: st.SearchStrategy[Payload] = st.one_of(*by_kind.values())

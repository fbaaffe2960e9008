"""Raft messages to and from msgpack-ready lists, with strict validation (L0, pure).

Wire layout (all arrays, positional, so an extra or missing field is an error):

* message: ``[type, to, frm, term, log_term, index, entries, commit, reject,
  reject_hint, context, snapshot]``
* entry: ``[index, term, type, data]``
* snapshot meta: ``[index, term, voters, learners]`` (``snapshot`` is nil when absent)

Local message types (``HUP``, ``BEAT``) never cross the wire: encoding one is a
caller bug (``ValueError``), receiving one is a protocol error. Node ids are
``>= 1``; terms and indexes are unsigned 64-bit.
"""

from __future__ import annotations

from typing import Any

from crema.raft.messages import LOCAL_MESSAGES, Message, MessageType, make_message
from crema.raft.types import (
    ConfState,
    Entry,
    EntryType,
    Index,
    NodeId,
    SnapshotMeta,
    Term,
    entry_unchecked,
)
from crema.transport.fields import U64_MAX, as_bool, as_bytes, as_list, as_uint, fail

MAX_ENTRIES = 1 << 17
"""Most entries in one message: bounds the objects a single frame can create."""
MAX_MEMBERS = 4096
"""Most voters (or learners) in a membership carried by a snapshot meta."""
MAX_CONTEXT = 4096
"""Longest ``context`` (ReadIndex request ids, transfer marker)."""

_MSG_FIELDS = 12
_ENTRY_FIELDS = 4
_META_FIELDS = 4
_WIRE_TYPES = frozenset(MessageType) - LOCAL_MESSAGES
_ENTRY_TYPES = frozenset(int(t) for t in EntryType)
_WIRE_TYPE_BY_INT = {int(t): t for t in _WIRE_TYPES}
_ENTRY_TYPE_BY_INT = {int(t): t for t in EntryType}
_SEVEN_INTS = (int,) * 7


def meta_to_wire(meta: SnapshotMeta) -> list[Any]:
    """Encode snapshot metadata (membership sorted, so equal metas encode equally)."""
    cs = meta.conf_state
    return [meta.index, meta.term, sorted(cs.voters), sorted(cs.learners)]


def _node_set(value: Any, name: str) -> frozenset[NodeId]:
    items = as_list(value, name, max_len=MAX_MEMBERS)
    ids = frozenset(NodeId(as_uint(v, name, minimum=1)) for v in items)
    if len(ids) != len(items):
        raise fail(f"{name}: duplicate node ids")
    return ids


def meta_from_wire(value: Any) -> SnapshotMeta:
    """Decode and validate snapshot metadata.

    Raises:
        PeerProtocolError: malformed fields, or a node both voter and learner.
    """
    f = as_list(value, "snapshot", _META_FIELDS)
    voters = _node_set(f[2], "snapshot.voters")
    learners = _node_set(f[3], "snapshot.learners")
    if voters & learners:
        raise fail("snapshot: a node is both voter and learner")
    return SnapshotMeta(
        index=Index(as_uint(f[0], "snapshot.index")),
        term=Term(as_uint(f[1], "snapshot.term")),
        conf_state=ConfState(voters=voters, learners=learners),
    )


def _entry_from_wire(value: Any) -> Entry:
    f = as_list(value, "entry", _ENTRY_FIELDS)
    etype = as_uint(f[2], "entry.type")
    if etype not in _ENTRY_TYPES:
        raise fail(f"entry.type: unknown entry type {etype}")
    return Entry(
        index=Index(as_uint(f[0], "entry.index", minimum=1)),
        term=Term(as_uint(f[1], "entry.term")),
        type=EntryType(etype),
        data=as_bytes(f[3], "entry.data"),
    )


def message_to_wire(msg: Message) -> list[Any]:
    """Encode a Raft message as a msgpack-ready list.

    Raises:
        ValueError: ``msg`` is a local message (``HUP``/``BEAT``), which never
            leaves its node.
    """
    if msg.type in LOCAL_MESSAGES:
        raise ValueError(f"local message {msg.type.name} cannot be sent to a peer")
    return [
        int(msg.type),
        msg.to,
        msg.frm,
        msg.term,
        msg.log_term,
        msg.index,
        [[e.index, e.term, int(e.type), e.data] for e in msg.entries],
        msg.commit,
        msg.reject,
        msg.reject_hint,
        msg.context,
        None if msg.snapshot is None else meta_to_wire(msg.snapshot),
    ]


def _entry_fast(value: Any) -> Entry:
    """Decode an entry; the common well-formed case skips the per-field helpers."""
    if type(value) is list and len(value) == _ENTRY_FIELDS:
        index, term, etype, data = value
        et = _ENTRY_TYPE_BY_INT.get(etype) if type(etype) is int else None
        if (
            et is not None
            and type(index) is int
            and type(term) is int
            and type(data) is bytes
            and 1 <= index <= U64_MAX
            and 0 <= term <= U64_MAX
        ):
            return entry_unchecked(index, term, et, data)  # checked just above
    return _entry_from_wire(value)  # raises the precise error


def message_from_wire(value: Any) -> Message:
    """Decode and validate a Raft message.

    A fast path checks every field inline; anything it does not accept goes
    through :func:`_message_checked`, which names the offending field.

    Raises:
        PeerProtocolError: any field has the wrong type or range, the type is
            unknown or local, or a list is longer than its bound.
    """
    if type(value) is not list or len(value) != _MSG_FIELDS:
        return _message_checked(value)
    mtype, to, frm, term, log_term, index, ents, commit, reject, hint, ctx, snap = value
    mt = _WIRE_TYPE_BY_INT.get(mtype) if type(mtype) is int else None
    ints = (to, frm, term, log_term, index, commit, hint)
    if (
        mt is None
        or tuple(map(type, ints)) != _SEVEN_INTS  # C-speed type check of all seven
        or min(ints) < 0
        or max(ints) > U64_MAX
        or to < 1
        or frm < 1
        or type(reject) is not bool
        or type(ctx) is not bytes
        or len(ctx) > MAX_CONTEXT
        or type(ents) is not list
        or len(ents) > MAX_ENTRIES
    ):
        return _message_checked(value)
    entries = tuple(map(_entry_fast, ents)) if ents else ()
    meta = None if snap is None else meta_from_wire(snap)
    return make_message(
        mt, to, frm, term, log_term, index, entries, commit, reject, hint, ctx, meta
    )


def _message_checked(value: Any) -> Message:
    f = as_list(value, "message", _MSG_FIELDS)
    mtype = as_uint(f[0], "message.type")
    if mtype not in _WIRE_TYPES:
        raise fail(f"message.type: {mtype} is not a wire message type")
    raw_entries = as_list(f[6], "message.entries", max_len=MAX_ENTRIES)
    return Message(
        type=MessageType(mtype),
        to=NodeId(as_uint(f[1], "message.to", minimum=1)),
        frm=NodeId(as_uint(f[2], "message.frm", minimum=1)),
        term=Term(as_uint(f[3], "message.term")),
        log_term=Term(as_uint(f[4], "message.log_term")),
        index=Index(as_uint(f[5], "message.index")),
        entries=tuple(_entry_from_wire(e) for e in raw_entries),
        commit=Index(as_uint(f[7], "message.commit")),
        reject=as_bool(f[8], "message.reject"),
        reject_hint=Index(as_uint(f[9], "message.reject_hint")),
        context=as_bytes(f[10], "message.context", MAX_CONTEXT),
        snapshot=None if f[11] is None else meta_from_wire(f[11]),
    )

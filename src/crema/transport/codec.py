"""Peer wire format: length-prefixed frames carrying versioned msgpack envelopes (L0, pure).

Rules that hold everywhere in this module:

* A frame is a 4-byte big-endian payload length followed by the payload. A
  length above the configured maximum raises :class:`FrameTooLargeError`
  before a single byte of the payload is buffered for it.
* A payload is the msgpack array ``[version, kind, body]``. ``version`` must
  equal :data:`WIRE_VERSION`; ``kind`` is a :class:`Kind`; ``body`` is a
  positional array whose layout belongs to the kind.
* Decoding never trusts the peer: every field is checked for type, range and
  length, and anything else raises :class:`~crema.errors.PeerProtocolError`.
  Extension types are rejected and pickle is never used.

The public entry points are :func:`encode` / :func:`decode` (any payload),
:func:`encode_message` / :func:`decode_message` (Raft messages),
:func:`encode_frame` and :class:`FrameDecoder`.
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack

from crema.errors import FrameTooLargeError, PeerProtocolError
from crema.raft.messages import LOCAL_MESSAGES, Message
from crema.raft.types import NodeId
from crema.transport.fields import as_bool, as_bytes, as_list, as_str, as_uint, fail
from crema.transport.payloads import (
    HANDSHAKE_KINDS,
    MAC_SIZE,
    MAX_CLUSTER_ID,
    MAX_REQUEST_ID,
    NONCE_SIZE,
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
    kind_of,
)
from crema.transport.raft_wire import (
    MAX_ENTRIES,
    MAX_MEMBERS,
    message_from_wire,
    message_to_wire,
    meta_from_wire,
    meta_to_wire,
)

__all__ = [
    "DEFAULT_MAX_FRAME",
    "HANDSHAKE_KINDS",
    "HEADER_SIZE",
    "MAC_SIZE",
    "MAX_ARRAY_ITEMS",
    "MAX_ARRAY_LEN",
    "MAX_CLUSTER_ID",
    "MAX_REQUEST_ID",
    "NONCE_SIZE",
    "WIRE_VERSION",
    "Auth",
    "Forward",
    "ForwardResp",
    "FrameDecoder",
    "Hello",
    "HelloAck",
    "Kind",
    "Lane",
    "Payload",
    "SnapshotAck",
    "SnapshotChunk",
    "decode",
    "decode_message",
    "encode",
    "encode_frame",
    "encode_message",
    "kind_of",
]

WIRE_VERSION = 1
"""Version of the envelope and of the handshake protocol."""
DEFAULT_MAX_FRAME = 16 * 1024 * 1024
HEADER_SIZE = 4
_HEADER = struct.Struct(">I")
# --------------------------------------------------------------------------
# Bodies
# --------------------------------------------------------------------------


def _node(value: Any, name: str) -> NodeId:
    return NodeId(as_uint(value, name, minimum=1))


def _nonce(value: Any, name: str) -> bytes:
    nonce = as_bytes(value, name, NONCE_SIZE)
    if len(nonce) != NONCE_SIZE:
        raise fail(f"{name}: expected {NONCE_SIZE} bytes, got {len(nonce)}")
    return nonce


def _mac(value: Any, name: str) -> bytes:
    mac = as_bytes(value, name, MAC_SIZE)
    if len(mac) not in (0, MAC_SIZE):
        raise fail(f"{name}: expected 0 or {MAC_SIZE} bytes, got {len(mac)}")
    return mac


def _hello_from(value: Any) -> Hello:
    f = as_list(value, "hello", 6)
    lane = as_uint(f[5], "hello.lane", maximum=max(Lane))
    return Hello(
        version=as_uint(f[0], "hello.version"),
        cluster_id=as_str(f[1], "hello.cluster_id", MAX_CLUSTER_ID),
        frm=_node(f[2], "hello.frm"),
        to=_node(f[3], "hello.to"),
        nonce=_nonce(f[4], "hello.nonce"),
        lane=Lane(lane),
    )


def _hello_ack_from(value: Any) -> HelloAck:
    f = as_list(value, "hello_ack", 5)
    return HelloAck(
        cluster_id=as_str(f[0], "hello_ack.cluster_id", MAX_CLUSTER_ID),
        frm=_node(f[1], "hello_ack.frm"),
        to=_node(f[2], "hello_ack.to"),
        nonce=_nonce(f[3], "hello_ack.nonce"),
        mac=_mac(f[4], "hello_ack.mac"),
    )


def _auth_from(value: Any) -> Auth:
    return Auth(mac=_mac(as_list(value, "auth", 1)[0], "auth.mac"))


def _forward_fields(value: Any, name: str) -> tuple[bytes, bytes]:
    f = as_list(value, name, 2)
    return as_bytes(f[0], f"{name}.request_id", MAX_REQUEST_ID), as_bytes(f[1], f"{name}.body")


def _chunk_from(value: Any) -> SnapshotChunk:
    f = as_list(value, "snapshot_chunk", 4)
    return SnapshotChunk(
        meta=meta_from_wire(f[0]),
        offset=as_uint(f[1], "snapshot_chunk.offset"),
        data=as_bytes(f[2], "snapshot_chunk.data"),
        last=as_bool(f[3], "snapshot_chunk.last"),
    )


def _ack_from(value: Any) -> SnapshotAck:
    f = as_list(value, "snapshot_ack", 4)
    return SnapshotAck(
        index=as_uint(f[0], "snapshot_ack.index"),
        term=as_uint(f[1], "snapshot_ack.term"),
        offset=as_uint(f[2], "snapshot_ack.offset"),
        ok=as_bool(f[3], "snapshot_ack.ok"),
    )


def _body_of(item: Payload) -> tuple[Kind, list[Any]]:  # noqa: PLR0911 - one arm per kind
    match item:
        case Message():
            return Kind.RAFT, message_to_wire(item)
        case Forward():
            return Kind.FORWARD, [item.request_id, item.body]
        case ForwardResp():
            return Kind.FORWARD_RESP, [item.request_id, item.body]
        case SnapshotChunk():
            return Kind.SNAPSHOT_CHUNK, [meta_to_wire(item.meta), item.offset, item.data, item.last]
        case SnapshotAck():
            return Kind.SNAPSHOT_ACK, [item.index, item.term, item.offset, item.ok]
        case Hello():
            f = [item.version, item.cluster_id, item.frm, item.to, item.nonce, int(item.lane)]
            return Kind.HELLO, f
        case HelloAck():
            return Kind.HELLO_ACK, [item.cluster_id, item.frm, item.to, item.nonce, item.mac]
        case Auth():
            return Kind.AUTH, [item.mac]
    raise TypeError(f"not a transport payload: {type(item).__name__}")


def _payload_from(kind: Kind, body: Any) -> Payload:  # noqa: PLR0911 - one arm per kind
    match kind:
        case Kind.RAFT:
            return message_from_wire(body)
        case Kind.FORWARD:
            return Forward(*_forward_fields(body, "forward"))
        case Kind.FORWARD_RESP:
            return ForwardResp(*_forward_fields(body, "forward_resp"))
        case Kind.SNAPSHOT_CHUNK:
            return _chunk_from(body)
        case Kind.SNAPSHOT_ACK:
            return _ack_from(body)
        case Kind.HELLO:
            return _hello_from(body)
        case Kind.HELLO_ACK:
            return _hello_ack_from(body)
        case Kind.AUTH:
            return _auth_from(body)
    raise AssertionError(f"unhandled kind {kind!r}")


# --------------------------------------------------------------------------
# Envelope
# --------------------------------------------------------------------------

_KIND_BY_INT = {int(k): k for k in Kind}


_PACK = msgpack.Packer(use_bin_type=True).pack
"""One reused packer (``pack`` runs in C under the GIL and resets after each call)."""
_RAFT_KIND = int(Kind.RAFT)
_LOCAL_TYPES = frozenset(int(t) for t in LOCAL_MESSAGES)


def encode_message_frame(msg: Message, max_frame: int = DEFAULT_MAX_FRAME) -> bytes:
    """``encode_frame(encode(msg), max_frame)`` for a Raft message, in fewer steps.

    Raises:
        ValueError: ``msg`` is a local message.
        FrameTooLargeError: the payload is longer than ``max_frame``.
    """
    if msg.type in _LOCAL_TYPES:
        raise ValueError(f"local message {msg.type.name} cannot be sent to a peer")
    snap = msg.snapshot
    data: bytes = _PACK(
        [
            WIRE_VERSION,
            _RAFT_KIND,
            [
                msg.type,  # IntEnum members pack as their int values
                msg.to,
                msg.frm,
                msg.term,
                msg.log_term,
                msg.index,
                [[e.index, e.term, e.type, e.data] for e in msg.entries],
                msg.commit,
                msg.reject,
                msg.reject_hint,
                msg.context,
                None if snap is None else meta_to_wire(snap),
            ],
        ]
    )
    size = len(data)
    if size > max_frame:
        raise FrameTooLargeError(size, max_frame)
    return _HEADER.pack(size) + data


def encode(item: Payload) -> bytes:
    """Encode any payload as a versioned msgpack envelope (without the length prefix).

    Raises:
        TypeError: ``item`` is not a transport payload.
        ValueError: ``item`` is a local Raft message.
    """
    kind, body = _body_of(item)
    data: bytes = msgpack.packb([WIRE_VERSION, int(kind), body], use_bin_type=True)
    return data


MAX_ARRAY_LEN = MAX_ENTRIES + 16
"""Longest msgpack array accepted (the entries of one message are the longest)."""
MAX_ARRAY_ITEMS = 6 * MAX_ENTRIES + 4 * MAX_MEMBERS
"""Most array elements in one payload: every entry is an array of 4 inside the list."""


class _ArrayBudget:
    """msgpack ``list_hook`` that caps the array elements one payload may create.

    Without it, a 16 MiB frame of nested one-byte arrays or short strings
    would become hundreds of megabytes of Python objects before validation
    could reject it.
    """

    __slots__ = ("left",)

    def __init__(self) -> None:
        self.left = MAX_ARRAY_ITEMS

    def __call__(self, items: list[Any]) -> list[Any]:
        self.left -= len(items) + 1
        if self.left < 0:
            raise ValueError("too many array elements")
        return items


SMALL_PAYLOAD = 64 * 1024
"""Payloads up to this size are decoded without the array budget: at most one
array per byte, i.e. a few MiB of Python objects."""
_unpackb = msgpack.unpackb


def _no_maps(pairs: Any) -> Any:
    raise ValueError("maps are not part of the protocol")


def decode(payload: bytes) -> tuple[Kind, Payload]:
    """Decode and validate one envelope.

    Returns:
        The kind and the decoded value.

    Raises:
        PeerProtocolError: not valid msgpack, wrong version, unknown kind, or
            any malformed field.
    """
    try:
        if len(payload) <= SMALL_PAYLOAD:
            # A small payload cannot create many objects: skip the per-array hook.
            obj = _unpackb(
                payload,
                raw=False,
                use_list=True,
                max_array_len=MAX_ARRAY_LEN,
                max_map_len=0,
                object_pairs_hook=_no_maps,
            )
        else:
            obj = _unpackb(
                payload,
                raw=False,
                use_list=True,
                list_hook=_ArrayBudget(),
                max_array_len=MAX_ARRAY_LEN,
                max_map_len=0,
                object_pairs_hook=_no_maps,
            )
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise PeerProtocolError(f"undecodable payload: {type(exc).__name__}") from None
    env = as_list(obj, "envelope", 3)
    version, kind, body = env
    if type(version) is not int or version != WIRE_VERSION:
        raise fail(f"envelope.version: unsupported version {version!r}")
    k = _KIND_BY_INT.get(kind) if type(kind) is int else None
    if k is None:
        raise fail(f"envelope.kind: unknown kind {kind!r}")
    return k, _payload_from(k, body)


def encode_message(msg: Message) -> bytes:
    """Encode a Raft message as an envelope payload (kind ``RAFT``)."""
    return encode(msg)


def decode_message(payload: bytes) -> Message:
    """Decode an envelope that must carry a Raft message.

    Raises:
        PeerProtocolError: malformed, or another kind.
    """
    kind, item = decode(payload)
    if not isinstance(item, Message):
        raise fail(f"expected a RAFT envelope, got {kind.name}")
    return item


# --------------------------------------------------------------------------
# Framing
# --------------------------------------------------------------------------


def encode_frame(payload: bytes, max_frame: int = DEFAULT_MAX_FRAME) -> bytes:
    """Prefix ``payload`` with its 4-byte big-endian length.

    Raises:
        FrameTooLargeError: the payload is longer than ``max_frame``.
    """
    if len(payload) > max_frame:
        raise FrameTooLargeError(len(payload), max_frame)
    return _HEADER.pack(len(payload)) + payload


class FrameDecoder:
    """Incremental frame splitter: feed bytes, get complete payloads.

    The length of every frame is checked against ``max_frame`` as soon as its
    header is complete, so an oversized announcement fails before any buffer
    grows for it. Payloads completed before a bad header are still returned;
    the error is raised by that call if there are none, else by the next call
    (or :meth:`check`). After an error the decoder stays failed: the
    connection must be dropped.
    """

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        if not 0 < max_frame < 1 << 32:
            raise ValueError(f"max_frame must be in [1, 2**32), got {max_frame}")
        self._max = max_frame
        self._buf = bytearray()
        self._need: int | None = None  # payload length of the frame in progress
        self._error: PeerProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held for incomplete frames."""
        return len(self._buf)

    def check(self) -> None:
        """Raise the error found by an earlier :meth:`feed`, if any."""
        if self._error is not None:
            raise self._error

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data`` and return the payloads of every frame it completes.

        Raises:
            FrameTooLargeError: a header announces more than ``max_frame`` bytes.
        """
        self.check()
        self._buf += data
        out: list[bytes] = []
        buf = self._buf
        while True:
            if self._need is None:
                if len(buf) < HEADER_SIZE:
                    return out
                (size,) = _HEADER.unpack_from(buf)
                if size > self._max:
                    self._error = FrameTooLargeError(size, self._max)
                    buf.clear()
                    if not out:
                        raise self._error
                    return out
                del buf[:HEADER_SIZE]
                self._need = size
            if len(buf) < self._need:
                return out
            out.append(bytes(buf[: self._need]))
            del buf[: self._need]
            self._need = None

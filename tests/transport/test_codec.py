"""Codec: framing, envelopes, strict validation of every kind."""

from __future__ import annotations

import contextlib
import struct
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crema.errors import FrameTooLargeError, PeerProtocolError
from crema.raft.messages import Message, MessageType
from crema.raft.types import NodeId
from crema.transport.codec import (
    MAX_ARRAY_LEN,
    WIRE_VERSION,
    FrameDecoder,
    Kind,
    Payload,
    decode,
    decode_message,
    encode,
    encode_frame,
    encode_message,
    encode_message_frame,
    kind_of,
)
from crema.transport.raft_wire import MAX_ENTRIES
from tests.transport import strategies as s


@given(s.payloads)
def test_round_trip_every_payload(item: Payload) -> None:
    kind, back = decode(encode(item))
    assert back == item
    assert kind == kind_of(item)


@pytest.mark.parametrize("kind", list(Kind), ids=[k.name for k in Kind])
def test_round_trip_each_kind(kind: Kind) -> None:
    @given(s.by_kind[kind])
    def check(item: Payload) -> None:
        got_kind, back = decode(encode(item))
        assert (got_kind, back) == (kind, item)

    check()


@given(s.messages)
def test_message_round_trip(msg: Message) -> None:
    assert decode_message(encode_message(msg)) == msg


@given(s.payloads, st.data())
def test_mutated_payload_gives_only_typed_error(item: Payload, data: st.DataObject) -> None:
    raw = bytearray(encode(item))
    pos = data.draw(st.integers(0, len(raw) - 1))
    raw[pos] = data.draw(st.integers(0, 255))
    try:
        _, back = decode(bytes(raw))
    except PeerProtocolError:
        return
    decode(encode(back))  # whatever decoded passed validation and re-encodes


@given(s.payloads, st.data())
def test_truncated_payload_raises(item: Payload, data: st.DataObject) -> None:
    raw = encode(item)
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(PeerProtocolError):
        decode(raw[:cut])


@given(st.binary(max_size=200))
def test_random_bytes_give_only_typed_error(raw: bytes) -> None:
    with contextlib.suppress(PeerProtocolError):
        decode(raw)


@given(st.lists(st.binary(max_size=300), max_size=10), st.lists(st.integers(1, 50), min_size=1))
def test_frame_decoder_any_split(payloads: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(p) for p in payloads)
    dec = FrameDecoder(max_frame=1000)
    out: list[bytes] = []
    pos = 0
    i = 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        out += dec.feed(stream[pos : pos + step])
        pos += step
        i += 1
    assert out == payloads
    assert dec.buffered == 0


def test_oversize_header_fails_before_buffering() -> None:
    dec = FrameDecoder(max_frame=1024)
    with pytest.raises(FrameTooLargeError) as info:
        dec.feed(struct.pack(">I", 1025) + b"x" * 10)
    assert info.value.size == 1025
    assert info.value.limit == 1024
    with pytest.raises(FrameTooLargeError):
        dec.feed(b"more")


def test_frames_before_a_bad_header_are_returned_then_the_error() -> None:
    dec = FrameDecoder(max_frame=10)
    assert dec.feed(encode_frame(b"ok") + struct.pack(">I", 11)) == [b"ok"]
    assert dec.buffered == 0
    with pytest.raises(FrameTooLargeError):
        dec.check()
    with pytest.raises(FrameTooLargeError):
        dec.feed(b"")


def test_huge_header_rejected_without_allocation() -> None:
    dec = FrameDecoder()
    with pytest.raises(FrameTooLargeError):
        dec.feed(b"\xff\xff\xff\xff")


def test_encode_frame_limits() -> None:
    assert encode_frame(b"abc", max_frame=3) == b"\x00\x00\x00\x03abc"
    with pytest.raises(FrameTooLargeError):
        encode_frame(b"abcd", max_frame=3)


def test_local_message_cannot_be_encoded() -> None:
    with pytest.raises(ValueError, match="local"):
        encode_message(Message(MessageType.HUP, NodeId(1), NodeId(1)))
    with pytest.raises(ValueError, match="local"):
        encode_message_frame(Message(MessageType.BEAT, NodeId(1), NodeId(1)))


@given(s.messages)
def test_message_frame_fast_path_matches_the_general_encoding(msg: Message) -> None:
    """encode_message_frame gives exactly encode_frame(encode(msg)) and decodes back."""
    frame = encode_message_frame(msg)
    assert frame == encode_frame(encode(msg))
    assert FrameDecoder().feed(frame) == [encode(msg)]
    assert decode_message(frame[4:]) == msg


def test_message_frame_fast_path_limits() -> None:
    msg = Message(MessageType.APP, NodeId(2), NodeId(1), context=b"x" * 100)
    with pytest.raises(FrameTooLargeError):
        encode_message_frame(msg, max_frame=50)


def _raw(kind: int, body: Any, version: int = WIRE_VERSION) -> bytes:
    data: bytes = msgpack.packb([version, kind, body], use_bin_type=True)
    return data


def _good_msg() -> list[Any]:
    return [2, 1, 2, 3, 1, 5, [[6, 3, 0, b"x"]], 5, False, 0, b"", None]


def _with(index: int, value: Any) -> list[Any]:
    body = _good_msg()
    body[index] = value
    return body


BAD_PAYLOADS = {
    "wrong version": _raw(10, _good_msg(), version=2),
    "unknown kind": _raw(99, _good_msg()),
    "body not a list": _raw(10, {"type": 2}),
    "missing field": _raw(10, _good_msg()[:-1]),
    "extra field": _raw(10, [*_good_msg(), 0]),
    "local type HUP": _raw(10, _with(0, 0)),
    "unknown type": _raw(10, _with(0, 200)),
    "node id zero": _raw(10, _with(1, 0)),
    "negative term": _raw(10, _with(3, -1)),
    "bool for int": _raw(10, _with(5, True)),
    "int for bool": _raw(10, _with(8, 1)),
    "str for bytes": _raw(10, _with(10, "ctx")),
    "entry index zero": _raw(10, _with(6, [[0, 3, 0, b""]])),
    "bad entry type": _raw(10, _with(6, [[1, 3, 7, b""]])),
    "entry short": _raw(10, _with(6, [[1, 3, 0]])),
    "voter and learner": _raw(10, _with(11, [1, 1, [1, 2], [2]])),
    "duplicate voter": _raw(10, _with(11, [1, 1, [1, 1], []])),
    "too many entries": _raw(10, _with(6, [[1, 1, 0, b""]] * (MAX_ENTRIES + 1))),
    "short nonce": _raw(1, [1, "c", 1, 2, b"n", 0]),
    "bad lane": _raw(1, [1, "c", 1, 2, b"n" * 32, 5]),
    "mac wrong size": _raw(3, [b"m" * 31]),
    "float offset": _raw(13, [[1, 1, [], []], 1.5, b"", False]),
    "ext type": msgpack.packb([1, 14, msgpack.ExtType(1, b"x")]),
    "map key int": msgpack.packb({1: 2}),
    "not msgpack": b"\xc1",
    "empty": b"",
    "trailing bytes": _raw(14, [1, 1, 0, True]) + b"\x00",
    "map body": _raw(11, {}),
    "array too long": b"\xdd"
    + struct.pack(">I", MAX_ARRAY_LEN + 1)
    + b"\xc0" * (MAX_ARRAY_LEN + 1),
    "too many array elements": (
        b"\x93\x01\x0b\xdd"
        + struct.pack(">I", MAX_ARRAY_LEN)
        + (b"\x96" + b"\xc0" * 6) * MAX_ARRAY_LEN
    ),
    "deep nesting": b"\x91" * 100_000 + b"\x90",
    "small deep nesting": b"\x91" * 5_000 + b"\x90",
    "small: many empty arrays": b"\x93\x01\x0b\xdc\xff\xff" + b"\x90" * 0xFFFF,
}


@pytest.mark.parametrize("raw", BAD_PAYLOADS.values(), ids=BAD_PAYLOADS.keys())
def test_bad_payload_rejected(raw: bytes) -> None:
    with pytest.raises(PeerProtocolError):
        decode(raw)


def test_good_reference_payload_decodes() -> None:
    msg = decode_message(_raw(10, _good_msg()))
    assert msg.type is MessageType.APP
    assert msg.entries[0].data == b"x"


def test_decode_message_rejects_other_kinds() -> None:
    with pytest.raises(PeerProtocolError, match="RAFT"):
        decode_message(_raw(14, [1, 1, 0, True]))

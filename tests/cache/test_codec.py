"""Commands: construction checks and the strict msgpack codec."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crema.cache import codec
from crema.cache.codec import MAX_KEYS_PER_COMMAND, decode_command, encode_command
from crema.cache.commands import (
    INT64_MAX,
    INT64_MIN,
    Append,
    Clear,
    Command,
    Delete,
    Expire,
    ExpireCondition,
    IncrBy,
    MSet,
    Noop,
    Set,
    SetCondition,
)
from crema.errors import CommandDecodeError, CommandTooLargeError, CremaError

from .strategies import wide_commands

# ------------------------------------------------------------ construction


@pytest.mark.parametrize(
    "build",
    [
        lambda: Set("k", b"v", 0),  # type: ignore[arg-type]
        lambda: Set(b"k", bytearray(b"v"), 0),  # type: ignore[arg-type]
        lambda: Set(b"k", b"v", -1),
        lambda: Set(b"k", b"v", 2**63),
        lambda: Set(b"k", b"v", True),
        lambda: Set(b"k", b"v", 0, expiry_ms=5, keep_ttl=True),
        lambda: Set(b"k", b"v", 0, condition=1),  # type: ignore[arg-type]
        lambda: Set(b"k", b"v", 0, expiry_ms=2**63),
        lambda: Delete((), 0),
        lambda: Delete([b"a"], 0),  # type: ignore[arg-type]
        lambda: Delete((b"a", "b"), 0),  # type: ignore[arg-type]
        lambda: IncrBy(b"k", INT64_MAX + 1, 0),
        lambda: IncrBy(b"k", 1.0, 0),  # type: ignore[arg-type]
        lambda: MSet((), 0),
        lambda: MSet(((b"a",),), 0),  # type: ignore[arg-type]
        lambda: Expire(b"k", 1, 0, condition=3),  # type: ignore[arg-type]
        lambda: Noop(-5),
    ],
)
def test_bad_construction_is_rejected(build: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        build()  # type: ignore[operator]


def test_commands_are_frozen() -> None:
    command = Set(b"k", b"v", 0)
    with pytest.raises(AttributeError):
        command.key = b"x"  # type: ignore[misc]


# ---------------------------------------------------------------- round trip


@given(wide_commands())
def test_round_trip(command: Command) -> None:
    data = encode_command(command)
    assert decode_command(data) == command
    assert decode_command(memoryview(data)) == command


@pytest.mark.parametrize(
    "command",
    [
        Noop(0),
        Clear(INT64_MAX),
        Set(b"", b"", 0, INT64_MIN, SetCondition.XX, False, True),
        Set(b"k", b"v", 1, None, SetCondition.NX, True, True),
        Expire(b"k", INT64_MAX, 0, ExpireCondition.LT),
        Expire(b"k", 5, 0, ExpireCondition.XX | ExpireCondition.GT),
        IncrBy(b"k", INT64_MIN, 0),
        MSet(((b"a", b"1"), (b"a", b"2")), 3),
        Delete((b"a", b"a"), 3),
        Append(b"k", b"\x00" * 1000, 7),
    ],
)
def test_round_trip_edges(command: Command) -> None:
    assert decode_command(encode_command(command)) == command


def test_encoding_is_stable() -> None:
    # The log format is persistent: this pins version 1 of the encoding.
    data = encode_command(Set(b"k", b"v", 5, 9, SetCondition.NX, False, True))
    assert data == msgpack.packb([1, 1, 5, b"k", b"v", 9, 1, 2], use_bin_type=True)


# ---------------------------------------------------------- strict decoding


def _pack(obj: object) -> bytes:
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # never-used msgpack byte
        b"\x93\x01",  # truncated array
        _pack([1, 0]),  # too short
        _pack([2, 0, 5]),  # unknown version
        _pack([1, 99, 5]),  # unknown opcode
        _pack([1, -1, 5]),
        _pack([1, 0, 5, 6]),  # extra field
        _pack([1, 0, -5]),  # negative now_ms
        _pack([1, 0, True]),  # bool is not an integer
        _pack([1, 0, 1.5]),
        _pack([True, 0, 5]),
        _pack([1, 0, 5]) + b"\x00",  # trailing bytes
        _pack({"a": 1}),
        _pack("hello"),
        _pack(7),
        _pack([1, 1, 5, "k", b"v", None, 0, 0]),  # str key
        _pack([1, 1, 5, b"k", b"v", None, 7, 0]),  # unknown SET condition
        _pack([1, 1, 5, b"k", b"v", None, 0, 4]),  # unknown SET flag
        _pack([1, 1, 5, b"k", b"v", 3, 0, 1]),  # keep_ttl with expiry
        _pack([1, 1, 5, b"k", b"v", 2**63, 0, 0]),  # expiry out of int64
        _pack([1, 1, 5, b"k", b"v", True, 0, 0]),  # bool expiry
        _pack([1, 1, 5, b"k", b"v", None, False, 0]),  # bool condition
        _pack([1, 1, 5, b"k", b"v", None, 0, True]),  # bool flags
        _pack([1, 1, 5, b"k", b"v", None, -1, 0]),
        _pack([1, 1, 5, b"k", None, None, 0, 0]),  # nil value
        _pack([1, 1, 5, b"k", b"v", None, 0]),  # SET missing a field
        _pack([1, 1, 2**64 - 1, b"k", b"v", None, 0, 0]),  # now_ms beyond int64
        _pack([1, 6, 5, b"k", 2**63]),  # delta beyond int64
        _pack([1, 2, 5, []]),  # DEL without keys
        _pack([1, 2, 5, b"k"]),  # DEL keys not an array
        _pack([1, 4, 5, b"k", 1, 9]),  # unknown EXPIRE condition
        _pack([1, 4, 5, b"k", 1, 3]),  # NX | XX: incompatible
        _pack([1, 4, 5, b"k", 1, 12]),  # GT | LT: incompatible
        _pack([1, 4, 5, b"k", 1, -1]),
        _pack([1, 6, 5, b"k", None]),
        _pack([1, 9, 5, [b"a"]]),  # odd MSET
        _pack([1, 9, 5, [b"a", 1]]),
        b"\xd4\x01\x00",  # ext type
        b"\x91" * 2000 + b"\x00",  # deep nesting
    ],
)
def test_bad_input_raises_decode_error(data: bytes) -> None:
    with pytest.raises(CommandDecodeError) as info:
        decode_command(data)
    assert isinstance(info.value, CremaError)
    assert info.value.reason


@given(wide_commands(), st.data())
def test_truncation_is_detected(command: Command, data: st.DataObject) -> None:
    encoded = encode_command(command)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(CommandDecodeError):
        decode_command(encoded[:cut])


@given(wide_commands(), st.data())
def test_flipped_bytes_decode_or_fail_cleanly(command: Command, data: st.DataObject) -> None:
    encoded = bytearray(encode_command(command))
    pos = data.draw(st.integers(0, len(encoded) - 1))
    encoded[pos] ^= data.draw(st.integers(1, 255))
    try:
        decoded = decode_command(bytes(encoded))
    except CommandDecodeError:
        return
    # msgpack has no checksum: a flip may yield another valid command, but
    # then it is a fully valid one that encodes back to the same bytes class.
    assert decode_command(encode_command(decoded)) == decoded


@given(st.binary(max_size=64))
def test_garbage_never_raises_anything_else(data: bytes) -> None:
    with contextlib.suppress(CommandDecodeError):
        decode_command(data)


def test_size_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec, "MAX_COMMAND_BYTES", 100)
    big = Set(b"k", b"x" * 200, 0)
    with pytest.raises(CommandTooLargeError) as info:
        encode_command(big)
    assert info.value.limit == 100
    assert info.value.size > 100
    assert info.value.unit == "bytes"
    monkeypatch.undo()
    with pytest.raises(CommandDecodeError):
        decode_command(b"\x00" * (codec.MAX_COMMAND_BYTES + 1))


def test_key_count_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    data = encode_command(Delete((b"a", b"b", b"c"), 0))
    monkeypatch.setattr(codec, "MAX_KEYS_PER_COMMAND", 2)
    with pytest.raises(CommandDecodeError):
        decode_command(data)
    with pytest.raises(CommandTooLargeError) as info:
        encode_command(Delete((b"a", b"b", b"c"), 0))
    assert (info.value.size, info.value.limit, info.value.unit) == (3, 2, "keys")
    assert MAX_KEYS_PER_COMMAND == 1 << 20


def test_encode_rejects_non_commands() -> None:
    with pytest.raises(TypeError):
        encode_command("SET k v")  # type: ignore[arg-type]

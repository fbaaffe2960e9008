"""Protocol fuzzing of a live server: random and mutated RESP input over real sockets.

Whatever a client sends, the server answers with well-formed RESP frames and
then closes cleanly once the client is done (or at once on a protocol
error); it never crashes, never hangs a connection, and keeps serving
others. Input buffered per connection stays within the parser's limits.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crema.server.resp import encode_command
from tests.server.crema_server import CremaServer, running_crema
from tests.server.redis_server import read_frame

LIMITS = {"max_bulk_len": 4096, "max_multibulk_len": 64, "max_inline_len": 1024}
FIXTURE_OK = [HealthCheck.function_scoped_fixture]
FRAME_TYPES = set(b"+-:$*_,#(=%~>|!")


@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[CremaServer]:
    with running_crema(None, **LIMITS) as server:
        yield server


def exchange(port: int, chunks: list[bytes], timeout: float = 10.0) -> bytes:
    """Send ``chunks``, half-close, and read everything until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            for chunk in chunks:
                sock.sendall(chunk)
            sock.shutdown(socket.SHUT_WR)
        except OSError:  # EPIPE, ECONNRESET, ENOTCONN
            pass  # closed early after a protocol error: read what it said
        out = bytearray()
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            out += data
    return bytes(out)


def assert_well_formed(data: bytes) -> None:
    """``data`` is a sequence of complete RESP frames."""
    pos = 0
    while pos < len(data):
        assert data[pos] in FRAME_TYPES, data[pos : pos + 40]
        end = read_frame(data, pos)
        assert end is not None, data[pos : pos + 80]
        pos = end


def check_alive(server: CremaServer) -> None:
    assert exchange(server.port, [b"PING\r\n"]) == b"+PONG\r\n"


@given(st.lists(st.binary(max_size=200), max_size=6))
@settings(max_examples=150, deadline=None, suppress_health_check=FIXTURE_OK)
def test_random_bytes(fuzz_server: CremaServer, chunks: list[bytes]) -> None:
    assert_well_formed(exchange(fuzz_server.port, chunks))


VALID = [
    [b"SET", b"k", b"v", b"EX", b"100"], [b"GET", b"k"], [b"MSET", b"a", b"1", b"b", b"2"],
    [b"INCR", b"n"], [b"SCAN", b"0", b"MATCH", b"*"], [b"KEYS", b"*"], [b"HELLO", b"3"],
    [b"CLIENT", b"SETNAME", b"x"], [b"EXPIRE", b"k", b"10", b"GT"], [b"COMMAND", b"DOCS"],
    [b"INFO"], [b"DEL", b"a", b"b"], [b"HELLO", b"2"], [b"CREMA.STATUS"], [b"PING"],
]  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn) -> list[bytes]:
    commands = draw(st.lists(st.sampled_from(VALID), min_size=1, max_size=8))
    data = bytearray(b"".join(encode_command(c) for c in commands))
    for _ in range(draw(st.integers(0, 4))):
        pos = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["flip", "insert", "delete", "digits"]))
        if action == "flip" and pos < len(data):
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif action == "insert":
            data[pos:pos] = draw(st.sampled_from([b"*", b"$", b"\r\n", b"-1", b"99999", b"\0"]))
        elif action == "delete":
            del data[pos : pos + draw(st.integers(1, 5))]
        else:
            data[pos:pos] = b"%d" % draw(st.integers(-(2**64), 2**64))
    cut = draw(st.integers(1, max(1, len(data))))
    return [bytes(data[:cut]), bytes(data[cut:])]


@given(mutated())
@settings(max_examples=150, deadline=None, suppress_health_check=FIXTURE_OK)
def test_mutated_requests(fuzz_server: CremaServer, chunks: list[bytes]) -> None:
    assert_well_formed(exchange(fuzz_server.port, chunks))


def test_oversized_input_is_refused_early(fuzz_server: CremaServer) -> None:
    cases = [
        ([b"x" * 65536] * 40, b"-ERR Protocol error: too big inline request\r\n"),
        ([b"*1\r\n$999999\r\n", b"x" * 65536], b"-ERR Protocol error: invalid bulk length\r\n"),
        ([b"*100000\r\n"], b"-ERR Protocol error: invalid multibulk length\r\n"),
        ([b"*2\r\n$" + b"9" * 2000], b"-ERR Protocol error: too big bulk count string\r\n"),
    ]
    for chunks, reply in cases:
        assert exchange(fuzz_server.port, chunks) == reply
    check_alive(fuzz_server)


def test_server_survives_and_forgets_clients(fuzz_server: CremaServer) -> None:
    for _ in range(20):
        exchange(fuzz_server.port, [b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nab"])  # cut short
    check_alive(fuzz_server)
    assert fuzz_server.server is not None
    assert fuzz_server.run(_client_count(fuzz_server)) <= 1


async def _client_count(server: CremaServer) -> int:
    assert server.server is not None
    return len(server.server.state.clients)

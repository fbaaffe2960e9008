"""RespServer behaviour over real sockets: AUTH, error mapping, lifecycle, limits, pipelining."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from crema.cache.commands import Command
from crema.cache.results import Result
from crema.errors import OutcomeUnknownError, WriteRejectedError
from crema.server.backend import LocalBackend
from crema.server.connection import FLUSH_BYTES, MAX_PENDING_INPUT
from crema.server.resp import encode_command
from crema.server.server import RespServer
from tests.server.crema_server import running_crema
from tests.server.redis_server import RawClient, RedisServer, start_redis
from tests.server.resp_decode import decode
from tests.server.test_differential_commands import seq


@pytest.fixture(scope="module")
def redis_with_password() -> Iterator[RedisServer]:
    try:
        server = start_redis(extra_args=["--requirepass", "pw"])
    except RuntimeError as exc:
        pytest.skip(f"needs redis-server: {exc}")
    try:
        yield server
    finally:
        server.stop()


AUTH_SEQUENCE = seq(
    "GET a", "PING", "FOO", "GET", "CLIENT SETNAME x", "SELECT 0", "HELLO 3",
    "HELLO 3 AUTH default no",
    "HELLO 3 AUTH someone pw", "AUTH no", "AUTH default no", "AUTH a b c", "GET a", "AUTH pw",
    "GET a", "SET a 1", "AUTH no", "GET a", "AUTH default pw", "HELLO 2 AUTH default pw FOO",
    "AUTH other pw", "GET a",
)  # fmt: skip


def test_auth_matches_redis(redis_with_password: RedisServer) -> None:
    with running_crema(requirepass="pw") as crema:
        theirs_client, ours_client = redis_with_password.client(), crema.client()
        try:
            theirs = [theirs_client.call(*c) for c in AUTH_SEQUENCE]
            ours = [ours_client.call(*c) for c in AUTH_SEQUENCE]
        finally:
            theirs_client.close()
            ours_client.close()
    diffs = [(c, a, b) for c, a, b in zip(AUTH_SEQUENCE, theirs, ours, strict=True) if a != b]
    assert not diffs


def test_hello_auth_switches_protocol() -> None:
    with running_crema(requirepass="pw") as crema:
        client = crema.client()
        hello = decode(client.call(b"HELLO", b"3", b"AUTH", b"default", b"pw", b"SETNAME", b"n"))
        assert isinstance(hello, dict) and hello[b"proto"] == 3
        assert client.call(b"GET", b"missing") == b"_\r\n"
        assert client.call(b"CLIENT", b"GETNAME") == b"$1\r\nn\r\n"
        client.close()


class FailingBackend(LocalBackend):
    """A LocalBackend whose writes and read barriers fail with a chosen error."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    async def execute(self, command: Command) -> Result:
        raise self.error

    def submit(self, command: Command) -> asyncio.Future[Result] | None:
        fut: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        fut.set_exception(self.error)
        return fut

    async def read_barrier(self) -> None:
        raise self.error


@pytest.mark.parametrize(
    ("error", "prefix"),
    [(WriteRejectedError("no leader known"), b"-TRYAGAIN no leader known\r\n"),
     (OutcomeUnknownError("write timed out"), b"-UNKNOWN write timed out\r\n")],
)  # fmt: skip
def test_write_errors_map_to_prefixes(error: Exception, prefix: bytes) -> None:
    with running_crema(FailingBackend(error)) as crema:
        client = crema.client()
        for command in seq("SET a 1", "INCR a", "DEL a", "EXPIRE a 10", "FLUSHALL", "GETDEL a"):
            assert client.call(*command) == prefix
        assert client.call(b"GET", b"a") == prefix  # the linearizable read barrier failed
        assert client.call(b"CREMA.READMODE", b"local") == b"+OK\r\n"
        assert client.call(b"GET", b"a") == b"$-1\r\n"  # local reads need no barrier
        assert client.call(b"PING") == b"+PONG\r\n"
        client.close()


def test_protocol_error_closes_after_earlier_replies(crema_client: RawClient) -> None:
    crema_client.send_raw(b"PING\r\n*1\r\n$3\r\nGET\r\n*1\r\n$x\r\n")
    assert crema_client.read_until_closed() == (
        b"+PONG\r\n-ERR wrong number of arguments for 'get' command\r\n"
        b"-ERR Protocol error: invalid bulk length\r\n"
    )


def test_quit_replies_then_closes(crema_client: RawClient) -> None:
    crema_client.send_raw(b"QUIT\r\nPING\r\n")
    assert crema_client.read_until_closed() == b"+OK\r\n"


def test_inline_and_large_pipeline(crema_client: RawClient) -> None:
    big = b"x" * 100_000
    assert crema_client.call(b"SET", b"big", big) == b"+OK\r\n"
    replies = crema_client.pipeline([[b"GET", b"big"]] * 30 + [[b"PING"]])
    assert replies[:30] == [b"$100000\r\n" + big + b"\r\n"] * 30
    assert replies[30] == b"+PONG\r\n"
    crema_client.send_raw(b"SET inline 'two words'\r\nGET inline\r\n")
    assert crema_client.read_reply() == b"+OK\r\n"
    assert crema_client.read_reply() == b"$9\r\ntwo words\r\n"


def test_max_clients() -> None:
    with running_crema(max_clients=2) as crema:
        first, second = crema.client(), crema.client()
        assert first.call(b"PING") == second.call(b"PING") == b"+PONG\r\n"
        third = crema.client()
        assert third.read_until_closed() == b"-ERR max number of clients reached\r\n"
        first.close()
        second.close()
        third.close()


def test_shutdown_and_checkpoint_callbacks() -> None:
    called = threading.Event()

    async def checkpoint() -> dict[str, Any]:
        return {"index": 7, "term": 2, "path": "/tmp/x.mcrs", "size": 123}

    with running_crema(on_shutdown=called.set, on_checkpoint=checkpoint) as crema:
        client = crema.client()
        reply = decode(client.call(b"CREMA.CHECKPOINT"))
        assert reply == [b"index", 7, b"term", 2, b"path", b"/tmp/x.mcrs", b"size", 123]
        assert client.call(b"SHUTDOWN", b"FOO") == b"-ERR syntax error\r\n"
        client.send_raw(b"*1\r\n$8\r\nSHUTDOWN\r\n")
        assert client.read_until_closed() == b""
        assert called.is_set()
    with running_crema() as crema:
        client = crema.client()
        assert client.call(b"SHUTDOWN").startswith(b"-ERR Errors trying to SHUTDOWN")
        assert client.call(b"CREMA.CHECKPOINT") == (
            b"-ERR checkpoints are not configured on this node\r\n"
        )
        client.close()


def test_command_table_replies(crema_client: RawClient) -> None:
    count = decode(crema_client.call(b"COMMAND", b"COUNT"))
    assert isinstance(count, int) and count >= 40
    info = decode(crema_client.call(b"COMMAND", b"INFO", b"get", b"nope", b"mset"))
    assert isinstance(info, list)
    assert info[0][:6] == [b"get", 2, [_s(b"readonly"), _s(b"fast")], 1, 1, 1]
    assert info[1] is None
    assert info[2][3:6] == [1, -1, 2]
    docs = decode(crema_client.call(b"COMMAND", b"DOCS", b"set"))
    assert isinstance(docs, list) and docs[0] == b"set"
    everything = decode(crema_client.call(b"COMMAND"))
    assert isinstance(everything, list) and len(everything) == count
    assert crema_client.call(b"COMMAND", b"FOO").startswith(b"-ERR unknown subcommand 'FOO'")


def _s(text: bytes) -> object:
    from tests.server.resp_decode import Simple  # noqa: PLC0415

    return Simple(text)


def test_info_sections(crema_client: RawClient) -> None:
    text = decode(crema_client.call(b"INFO"))
    assert isinstance(text, bytes)
    for section in (b"Server", b"Clients", b"Memory", b"Stats", b"Replication", b"Raft",
                    b"Checkpoint", b"Keyspace"):  # fmt: skip
        assert b"# " + section + b"\r\n" in text or section == b"Keyspace"
    assert b"role:master\r\n" in text
    only = decode(crema_client.call(b"INFO", b"replication"))
    assert isinstance(only, bytes) and only.startswith(b"# Replication\r\n")


class SlowBackend(LocalBackend):
    """Counts read barriers and makes each and every write take a while."""

    def __init__(self) -> None:
        super().__init__()
        self.barriers = 0

    async def read_barrier(self) -> None:
        self.barriers += 1
        await asyncio.sleep(0.02)

    async def execute(self, command: Command) -> Result:
        await asyncio.sleep(0.05)
        return await super().execute(command)

    def submit(self, command: Command) -> asyncio.Future[Result] | None:
        fut: asyncio.Future[Result] = asyncio.get_running_loop().create_future()

        def apply() -> None:
            self._index += 1
            fut.set_result(self.state_machine.apply(self._index, 1, command))

        asyncio.get_running_loop().call_later(0.05, apply)  # applied in submission order
        return fut


async def _request(port: int, data: bytes, replies: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    out = b""
    while out.count(b"\r\n") < replies:
        chunk = await reader.read(65536)
        if not chunk:
            break
        out += chunk
    writer.close()
    return out


def test_concurrent_reads_share_barriers() -> None:
    async def main() -> None:
        backend = SlowBackend()
        server = RespServer(backend)
        await server.start()
        try:
            gets = b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n" * 5
            results = await asyncio.gather(*(_request(server.port, gets, 5) for _ in range(40)))
            assert all(r == b"$-1\r\n" * 5 for r in results)
            assert backend.barriers <= 6  # 200 reads, a handful of ReadIndex rounds
        finally:
            await server.stop()

    asyncio.run(main())


def test_stop_finishes_in_flight_commands() -> None:
    async def main() -> None:
        server = RespServer(SlowBackend())
        await server.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        idle_reader, _idle_writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\n")
        await writer.drain()
        await asyncio.sleep(0.01)  # the SET is in flight
        await server.stop()
        assert await reader.read() == b"+OK\r\n"  # replied, then closed
        assert await idle_reader.read() == b""
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
        writer.close()

    asyncio.run(main())


def test_slow_reader_keeps_buffers_bounded() -> None:
    """A client that pipelines without reading: output and input held stay bounded."""

    async def main() -> None:
        server = RespServer(LocalBackend())
        await server.start()
        try:
            _reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(encode_command([b"SET", b"v", b"x" * 10_000]))
            get = encode_command([b"GET", b"v"])
            for _ in range(40):  # 40 x 25,000 GETs = 1M requests, 10 GB of replies
                writer.write(get * 25_000)
            await asyncio.sleep(1.0)
            (connection,) = server._connections
            transport = connection._transport
            assert transport is not None
            assert server.state.stats.commands_processed < 10_000  # waiting for the reader
            assert transport.get_write_buffer_size() <= FLUSH_BYTES + 64 * 1024 + 10_100
            assert connection._parser.buffered <= MAX_PENDING_INPUT + 512 * 1024
            writer.close()
        finally:
            await server.stop(timeout=1.0)

    asyncio.run(main())

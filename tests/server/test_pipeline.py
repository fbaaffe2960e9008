"""Pipelined writes: submitted in order without waiting, replies in order, reads wait for writes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from crema.cache.commands import Command, IncrBy, Set
from crema.cache.results import Result
from crema.errors import ProposalDroppedError, WriteRejectedError
from crema.server.backend import LocalBackend
from crema.server.connection import MAX_INFLIGHT_WRITES
from crema.server.resp import encode_command
from crema.server.server import RespServer


class HeldBackend(LocalBackend):
    """Writes wait until the test releases them; each applies when released.

    ``submitted`` records every write in submission order; ``held`` the
    futures not yet released with the command each carries.
    """

    def __init__(self) -> None:
        super().__init__()
        self.submitted: list[Command] = []
        self.held: list[tuple[Command, asyncio.Future[Result]]] = []
        self.executed: list[Command] = []
        self.refuse: set[bytes] = set()  # SET keys whose write fails as not applied
        self.dropped: set[bytes] = set()  # keys whose write the "leader" refuses unproposed
        self.unsendable = False  # submit returns None: the caller falls back to execute

    def submit(self, command: Command) -> asyncio.Future[Result] | None:
        if self.unsendable:
            return None
        self.submitted.append(command)
        fut: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self.held.append((command, fut))
        return fut

    async def execute(self, command: Command) -> Result:
        self.executed.append(command)
        await asyncio.sleep(0)  # a bare yield: the connection hands the command to a task
        await asyncio.sleep(0.01)
        return await super().execute(command)

    def release(self, order: list[int] | None = None) -> None:
        """Finish the held writes (in ``order`` of their positions, default all in order)."""
        held, self.held = self.held, []
        for position in order if order is not None else range(len(held)):
            command, fut = held[position]
            if isinstance(command, Set) and command.key in self.refuse:
                fut.set_exception(WriteRejectedError("refused for the test"))
                continue
            if getattr(command, "key", None) in self.dropped:
                fut.set_exception(ProposalDroppedError("not the leader", None))
                continue
            self._index += 1
            fut.set_result(self.state_machine.apply(self._index, 1, command))


def _keys(commands: list[Command]) -> list[bytes]:
    keys = []
    for command in commands:
        assert isinstance(command, Set | IncrBy)
        keys.append(command.key)
    return keys


async def _wait_for(predicate: Callable[[], bool]) -> None:
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")


async def _replies(reader: asyncio.StreamReader, count: int) -> list[bytes]:
    lines = []
    for _ in range(count):
        line = await asyncio.wait_for(reader.readline(), 10)
        if line.startswith(b"$") and line != b"$-1\r\n":
            line += await reader.readline()
        lines.append(line)
    return lines


def _with_server(
    backend: LocalBackend,
    body: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> None:
    async def main() -> None:
        server = RespServer(backend)
        await server.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            try:
                await body(reader, writer)
            finally:
                writer.close()
        finally:
            await server.stop(timeout=1.0)

    asyncio.run(main())


def _sets(*pairs: tuple[str, str]) -> bytes:
    return b"".join(encode_command([b"SET", k.encode(), v.encode()]) for k, v in pairs)


def test_writes_are_submitted_without_waiting_and_replies_keep_their_order() -> None:
    backend = HeldBackend()

    async def body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(_sets(("a", "1"), ("b", "2"), ("c", "3")))
        await _wait_for(lambda: len(backend.submitted) == 3)  # all three, none finished
        assert _keys(backend.submitted) == [b"a", b"b", b"c"]
        backend.release([2, 0, 1])  # finishing out of order...
        assert await _replies(reader, 3) == [b"+OK\r\n"] * 3  # ...replies still in order

    _with_server(backend, body)


def test_a_read_waits_for_the_connections_writes() -> None:
    backend = HeldBackend()

    async def body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(_sets(("k", "old")) + encode_command([b"GET", b"k"]) + _sets(("k", "new")))
        await _wait_for(lambda: len(backend.submitted) == 1)
        await asyncio.sleep(0.05)
        assert len(backend.submitted) == 1  # the GET holds the write after it back
        backend.release()
        await _wait_for(lambda: len(backend.submitted) == 2)
        backend.release()
        assert await _replies(reader, 3) == [b"+OK\r\n", b"$3\r\nold\r\n", b"+OK\r\n"]

    _with_server(backend, body)


def test_an_error_in_the_middle_of_a_pipeline() -> None:
    backend = HeldBackend()
    backend.refuse.add(b"b")

    async def body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pipeline = (
            _sets(("a", "1"), ("b", "2"))
            + encode_command([b"SET", b"x"])  # wrong arity: refused before submitting
            + _sets(("c", "3"))
            + encode_command([b"MGET", b"a", b"b", b"c"])
        )
        writer.write(pipeline)
        await _wait_for(lambda: len(backend.submitted) == 3)
        backend.release()
        assert await _replies(reader, 5) == [
            b"+OK\r\n",
            b"-TRYAGAIN refused for the test\r\n",
            b"-ERR wrong number of arguments for 'set' command\r\n",
            b"+OK\r\n",
            b"*3\r\n",
        ]
        assert await _replies(reader, 3) == [b"$1\r\n1\r\n", b"$-1\r\n", b"$1\r\n3\r\n"]

    _with_server(backend, body)


def test_writes_in_flight_are_bounded() -> None:
    backend = HeldBackend()
    total = MAX_INFLIGHT_WRITES + 200

    async def body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"".join(_sets((f"k{i}", str(i))) for i in range(total)))
        await _wait_for(lambda: len(backend.submitted) == MAX_INFLIGHT_WRITES)
        await asyncio.sleep(0.05)
        assert len(backend.submitted) == MAX_INFLIGHT_WRITES  # the rest wait in the socket
        while len(backend.submitted) < total or backend.held:
            backend.release()
            await asyncio.sleep(0.005)
        assert await _replies(reader, total) == [b"+OK\r\n"] * total
        assert _keys(backend.submitted) == [f"k{i}".encode() for i in range(total)]

    _with_server(backend, body)


def test_a_write_that_cannot_be_sent_holds_the_next_ones() -> None:
    backend = HeldBackend()
    backend.unsendable = True

    async def body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(_sets(("a", "1"), ("b", "2")) + encode_command([b"GET", b"b"]))
        await _wait_for(lambda: len(backend.executed) == 1)
        assert len(backend.executed) == 1  # the second waits for the first to finish
        assert await _replies(reader, 3) == [b"+OK\r\n", b"+OK\r\n", b"$1\r\n2\r\n"]
        assert _keys(backend.executed) == [b"a", b"b"]

    _with_server(backend, body)


def test_a_client_gone_with_writes_in_flight() -> None:
    backend = HeldBackend()

    async def main() -> None:
        server = RespServer(backend)
        await server.start()
        try:
            _reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(_sets(("a", "1"), ("b", "2")))
            await _wait_for(lambda: len(backend.submitted) == 2)
            writer.transport.abort()
            await asyncio.sleep(0.05)
            backend.release()  # the replies have nowhere to go: the connection closes
            await _wait_for(lambda: not server._connections)
            assert backend.state_machine.get(b"b", backend.clock_ms()) == b"2"
        finally:
            await server.stop(timeout=1.0)

    asyncio.run(main())


def test_local_get_fast_path_counts_like_the_dispatcher() -> None:
    async def main() -> None:
        server = RespServer(LocalBackend(), read_mode="local")
        await server.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(_sets(("k", "v")) + encode_command([b"GET", b"k"]) * 3)
            writer.write(encode_command([b"get", b"missing"]))
            assert await _replies(reader, 5) == [b"+OK\r\n"] + [b"$1\r\nv\r\n"] * 3 + [b"$-1\r\n"]
            stats = server.state.stats
            assert stats.calls["get"] == 4
            assert (stats.keyspace_hits, stats.keyspace_misses) == (3, 1)
            writer.write(encode_command([b"HELLO", b"3"]))
            await reader.readuntil(b"modules\r\n*0\r\n")  # the last field of HELLO's map
            writer.write(encode_command([b"GET", b"missing"]) + encode_command([b"GET", b"k"]))
            assert await _replies(reader, 2) == [b"_\r\n", b"$1\r\nv\r\n"]  # RESP3 null
            writer.close()
        finally:
            await server.stop(timeout=1.0)

    asyncio.run(main())


def test_a_lone_refused_write_is_sent_again_but_not_one_followed_by_others() -> None:
    backend = HeldBackend()
    backend.dropped.update((b"a", b"n"))

    async def body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for command in ([b"SET", b"a", b"1"], [b"INCR", b"n"]):  # the fast path and the handler
            writer.write(encode_command(command))
            await _wait_for(lambda: len(backend.held) == 1)
            backend.release()  # refused before it was proposed: executed again
        assert await _replies(reader, 2) == [b"+OK\r\n", b":1\r\n"]
        assert _keys(backend.executed) == [b"a", b"n"]
        writer.write(_sets(("a", "2"), ("b", "3")) + encode_command([b"INCR", b"n"]))
        await _wait_for(lambda: len(backend.held) == 3)
        backend.release()  # "a" and the INCR refused, with later writes sent (only for "a")
        replies = await _replies(reader, 3)
        assert replies[0].startswith(b"-TRYAGAIN") and replies[1] == b"+OK\r\n"
        assert replies[2] == b":2\r\n"  # the last write sent may still be sent again
        assert _keys(backend.executed) == [b"a", b"n", b"n"]

    _with_server(backend, body)

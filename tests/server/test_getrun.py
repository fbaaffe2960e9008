"""Runs of plain GETs served by the C helper ``crema.server._getrun`` match the Python path.

Each test drives a :class:`Connection` over a recording transport twice, with
the helper and without it (``plain._getrun`` switched), feeding the same
chunks, and compares every byte written, the counters and whether the
connection closed. A spy around the helper shows that it really served GETs
where it should, so a comparison can never pass with the helper idle.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crema.cache.commands import Set, SetCondition, set_unchecked
from crema.cache.state_machine import CacheStateMachine
from crema.errors import WriteRejectedError
from crema.server import plain
from crema.server.backend import LocalBackend
from crema.server.connection import MAX_PENDING_INPUT, Connection, ParserLimits
from crema.server.resp import encode_command
from crema.server.server import RespServer

REAL = plain._getrun  # captured at import, before any test switches paths
NOW = 1_000_000
_ALWAYS = SetCondition.ALWAYS


class FixedClockBackend(LocalBackend):
    """A local backend whose clock stands still at :data:`NOW` (expiry is exact)."""

    def clock_ms(self) -> int:
        return NOW


class Transport:
    """Records what the connection writes; stands in for an asyncio transport."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False
        self.paused = False

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 6379)


class Spy:
    """Counts what the real helper served."""

    def __init__(self) -> None:
        self.served = 0
        self.sets = 0

    def get_run(self, *args: Any) -> tuple[int, bytes, int, int]:
        assert REAL is not None
        used, reply, count, hits = REAL.get_run(*args)
        self.served += count
        return used, reply, count, hits

    def set_request(self, *args: Any) -> tuple[bytes, bytes] | None:
        assert REAL is not None
        request: tuple[bytes, bytes] | None = REAL.set_request(*args)
        self.sets += request is not None
        return request


@dataclass
class Outcome:
    written: bytes
    counters: dict[str, object]
    closed: bool
    served_in_c: int
    sets_in_c: int = 0


def _store() -> CacheStateMachine:
    sm = CacheStateMachine()
    writes = [
        (b"k", b"value", None),
        (b"empty", b"", None),
        (b"bin\x00\r\n*2", b"\x00\xff\r\n$3\r\n", None),
        (b"live", b"soon", NOW + 1),
        (b"dead", b"gone", NOW),  # expiry == now: expired, as the Python path decides
        (b"big", b"x" * 3000, None),
    ]
    for index, (key, value, expiry) in enumerate(writes, start=1):
        sm.apply(index, 1, set_unchecked(key, value, NOW - 10, expiry, _ALWAYS, False, False))
    return sm


def _run(
    chunks: list[bytes],
    accelerated: bool,
    *,
    read_mode: str = "local",
    satisfied: bool = False,
    limits: ParserLimits | None = None,
    flush_bytes: int | None = None,
    settle: bool = True,
    backend: Callable[[CacheStateMachine], LocalBackend] = FixedClockBackend,
    monkeypatch: pytest.MonkeyPatch,
) -> Outcome:
    spy = Spy()
    monkeypatch.setattr(plain, "_getrun", spy if accelerated else None)

    async def main() -> Outcome:
        server = RespServer(backend(_store()), read_mode=read_mode)
        state = server.state
        if satisfied:
            monkeypatch.setattr(state.barrier, "satisfied", lambda ticket: True)
        transport = Transport()
        connection = Connection(state, limits or ParserLimits(), lambda c: None)
        if flush_bytes is not None:
            connection.flush_bytes = flush_bytes
        connection.connection_made(transport)  # type: ignore[arg-type]
        for chunk in chunks:
            connection.data_received(chunk)
            if settle:
                for _ in range(5):  # let barrier rounds and callbacks run
                    await asyncio.sleep(0)
        for _ in range(5):
            await asyncio.sleep(0)
        stats = state.stats
        session = connection.session
        assert session is not None
        counters: dict[str, object] = {
            "commands_processed": stats.commands_processed,
            "keyspace_hits": stats.keyspace_hits,
            "keyspace_misses": stats.keyspace_misses,
            "error_replies": stats.error_replies,
            "calls": dict(stats.calls),
            "failed_calls": dict(stats.failed_calls),
            "net_input_bytes": stats.net_input_bytes,
            "net_output_bytes": stats.net_output_bytes,
            "read_wait": stats.read_wait.count,
            "last_command": session.last_command,
        }
        counters["keys"] = sorted(state.backend.state_machine.keys(b"*", NOW))
        return Outcome(bytes(transport.written), counters, transport.closed, spy.served, spy.sets)

    return asyncio.run(main())


def _both(chunks: list[bytes], monkeypatch: pytest.MonkeyPatch, **kw: Any) -> Outcome:
    """Run with and without the helper; assert they agree; return the helper's outcome."""
    python = _run(chunks, False, monkeypatch=monkeypatch, **kw)
    fast = _run(chunks, True, monkeypatch=monkeypatch, **kw)
    assert fast.written == python.written
    assert fast.counters == python.counters
    assert fast.closed == python.closed
    assert python.served_in_c == 0
    return fast


def get(key: bytes, name: bytes = b"GET") -> bytes:
    return encode_command([name, key])


needs_helper = pytest.mark.skipif(REAL is None, reason="the C helper is not built")


@pytest.mark.skipif(not os.environ.get("CI"), reason="only CI guarantees a C compiler")
def test_helper_is_built_in_ci() -> None:
    assert REAL is not None
    assert plain.accelerated()


@needs_helper
@pytest.mark.parametrize("hello", [b"", encode_command([b"HELLO", b"3"])])
def test_hits_misses_expired_binary_and_empty(
    hello: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = [b"k", b"nope", b"empty", b"bin\x00\r\n*2", b"live", b"dead", b"big", b""]
    requests = b"".join(get(k) for k in keys)
    chunks = [hello, requests] if hello else [requests]
    out = _both(chunks, monkeypatch)
    assert out.served_in_c == len(keys)
    assert out.counters["keyspace_hits"] == 5
    assert out.counters["keyspace_misses"] == 3
    assert out.counters["last_command"] == "get"
    null = b"_\r\n" if hello else b"$-1\r\n"
    assert out.written.endswith(
        b"$5\r\nvalue\r\n" + null + b"$0\r\n\r\n$8\r\n\x00\xff\r\n$3\r\n\r\n"
        b"$4\r\nsoon\r\n" + null + b"$3000\r\n" + b"x" * 3000 + b"\r\n" + null
    )


@needs_helper
@pytest.mark.parametrize("name", [b"GET", b"get", b"Get"])
def test_spellings_of_get(name: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    out = _both([get(b"k", name) * 3], monkeypatch)
    assert out.served_in_c == 3
    assert out.written == b"$5\r\nvalue\r\n" * 3


@needs_helper
def test_other_spellings_and_commands_keep_their_order(monkeypatch: pytest.MonkeyPatch) -> None:
    data = (
        get(b"k")
        + get(b"k", b"gEt")
        + get(b"k")
        + encode_command([b"SET", b"k", b"new"])
        + get(b"k")
        + encode_command([b"PING"])
        + get(b"empty")
    )
    out = _both([data], monkeypatch)
    assert out.served_in_c == 1  # only the run at the start of the bytes received
    assert out.written == (b"$5\r\nvalue\r\n" * 3 + b"+OK\r\n$3\r\nnew\r\n+PONG\r\n$0\r\n\r\n")


@needs_helper
def test_a_run_split_across_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    data = get(b"k") * 3 + get(b"empty") + get(b"nope")
    for cut in range(1, len(data)):
        out = _both([data[:cut], data[cut:]], monkeypatch)
        assert out.written == b"$5\r\nvalue\r\n" * 3 + b"$0\r\n\r\n$-1\r\n"
    whole = _both([data], monkeypatch)
    assert whole.served_in_c == 5


@needs_helper
def test_a_run_in_every_read(monkeypatch: pytest.MonkeyPatch) -> None:
    out = _both([get(b"k") * 16, get(b"nope") * 16, get(b"live") * 16], monkeypatch)
    assert out.served_in_c == 48
    assert out.counters["keyspace_hits"] == 32


@needs_helper
@pytest.mark.parametrize(
    "bad",
    [
        b"*2\r\n$3\r\nGET\r\n$-1\r\n",
        b"*2\r\n$3\r\nGET\r\n$x\r\nk\r\n",
        b"*2\r\n$3\r\nGET\r\n$99999999999999999999\r\nk\r\n",
        b"*2\r\n$3\r\nGET\r\n+1\r\nk\r\n",
        b"*2\r\n$3\r\nGET\r\n$01\r\nk\r\n",
        b"*2\r\n$3\r\nGET\r\n$1\r\nkXY*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",  # CRLF unchecked
        b"*2\r\n$3\r\nGET\r\n$1\rXk\r\n",  # the byte after CR is skipped, unchecked
        b"*2\r\n$3\r\nGET\r\n$2\r\nk\r\n",  # incomplete: waits
        b"*3\r\n$3\r\nGET\r\n$1\r\nk\r\n$1\r\nk\r\n",
    ],
)
def test_unusual_and_malformed_lengths(bad: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    out = _both([get(b"k") * 2 + bad], monkeypatch)
    assert out.served_in_c == 2
    assert out.written.startswith(b"$5\r\nvalue\r\n" * 2)


@needs_helper
def test_protocol_error_wording_and_close(monkeypatch: pytest.MonkeyPatch) -> None:
    out = _both([get(b"k") + b"*2\r\n$3\r\nGET\r\n$-5\r\nk\r\n" + get(b"k")], monkeypatch)
    assert out.written == b"$5\r\nvalue\r\n-ERR Protocol error: invalid bulk length\r\n"
    assert out.closed
    assert out.counters["error_replies"] == 1


@needs_helper
def test_key_longer_than_the_bulk_limit_is_left_to_the_parser(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    limits = ParserLimits(max_bulk_len=4)
    out = _both([get(b"k") + get(b"empty")], monkeypatch, limits=limits)
    assert out.served_in_c == 1
    assert out.written == b"$5\r\nvalue\r\n-ERR Protocol error: invalid bulk length\r\n"
    assert out.closed


@needs_helper
@pytest.mark.parametrize(
    "limits", [ParserLimits(max_bulk_len=2), ParserLimits(max_multibulk_len=1)]
)
def test_limits_that_refuse_get_itself(
    limits: ParserLimits, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = _both([get(b"k")], monkeypatch, limits=limits)
    assert out.served_in_c == 0
    assert out.written.startswith(b"-ERR Protocol error")


@needs_helper
def test_flush_size_bounds_each_call(monkeypatch: pytest.MonkeyPatch) -> None:
    out = _both([get(b"big") * 10 + get(b"k")], monkeypatch, flush_bytes=7000)
    assert out.served_in_c == 11
    assert out.counters["net_output_bytes"] == len(out.written)


@needs_helper
def test_more_than_one_helper_call_per_read(monkeypatch: pytest.MonkeyPatch) -> None:
    count = plain.GET_RUN_MAX * 2 + 5
    out = _both([get(b"k") * count], monkeypatch)
    assert out.served_in_c == count
    assert out.written == b"$5\r\nvalue\r\n" * count


@needs_helper
def test_not_before_authentication(monkeypatch: pytest.MonkeyPatch) -> None:
    def run(accelerated: bool) -> Outcome:
        spy = Spy()
        monkeypatch.setattr(plain, "_getrun", spy if accelerated else None)

        async def main() -> Outcome:
            server = RespServer(FixedClockBackend(_store()), read_mode="local", requirepass="pw")
            transport = Transport()
            connection = Connection(server.state, ParserLimits(), lambda c: None)
            connection.connection_made(transport)  # type: ignore[arg-type]
            connection.data_received(get(b"k"))
            connection.data_received(encode_command([b"AUTH", b"pw"]))
            connection.data_received(get(b"k") * 2)
            return Outcome(bytes(transport.written), {}, transport.closed, spy.served)

        return asyncio.run(main())

    python, fast = run(False), run(True)
    assert fast.written == python.written
    assert fast.written.startswith(b"-NOAUTH")
    assert fast.written.endswith(b"+OK\r\n" + b"$5\r\nvalue\r\n" * 2)
    assert fast.served_in_c == 2


@needs_helper
@pytest.mark.parametrize("hello", [b"", encode_command([b"HELLO", b"3"])])
def test_linearizable_runs_wait_for_the_barrier_then_run_in_c(
    hello: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    chunks = [get(b"k") * 4, get(b"nope") * 4 + get(b"dead")]
    if hello:
        chunks.insert(0, hello)
    waiting = _both(chunks, monkeypatch, read_mode="linearizable")
    # each run held until its barrier round completed (plus one look at its first GET)
    assert waiting.served_in_c == 9 + 2
    assert waiting.counters["read_wait"] == 2
    ready = _both(chunks, monkeypatch, read_mode="linearizable", satisfied=True)
    assert ready.served_in_c == 9
    assert ready.counters["read_wait"] == 0
    assert ready.written == waiting.written


@needs_helper
def test_bytes_arriving_while_a_run_waits_go_behind_it(monkeypatch: pytest.MonkeyPatch) -> None:
    data = (
        get(b"k") * 3
        + encode_command([b"SET", b"k", b"new"])
        + get(b"k")
        + encode_command([b"PING"])
        + get(b"nope") * 2
    )
    chunks = [data[:30], data[30:31], data[31:90], data[90:]]
    out = _both(chunks, monkeypatch, read_mode="linearizable", settle=False)
    assert out.served_in_c == 3 + 1  # and one look at the first GET before holding the bytes
    assert out.counters["read_wait"] == 1
    assert out.written == b"$5\r\nvalue\r\n" * 3 + b"+OK\r\n$3\r\nnew\r\n+PONG\r\n$-1\r\n$-1\r\n"


class FailingReads(FixedClockBackend):
    """The first read barrier round fails (no quorum), later ones succeed."""

    def __init__(self, sm: CacheStateMachine) -> None:
        super().__init__(sm)
        self.failures = 1

    async def read_barrier(self) -> None:
        if self.failures:
            self.failures -= 1
            raise WriteRejectedError("no quorum for the test")


@needs_helper
def test_a_failed_barrier_fails_the_first_get_only(monkeypatch: pytest.MonkeyPatch) -> None:
    out = _both(
        [get(b"k") * 3 + get(b"nope")],
        monkeypatch,
        read_mode="linearizable",
        backend=FailingReads,
    )
    assert out.written.startswith(b"-")
    assert out.written.endswith(b"$5\r\nvalue\r\n" * 2 + b"$-1\r\n")
    assert out.counters["failed_calls"] == {"get": 1}
    assert out.served_in_c == 1  # the look at the first GET: the rest waited again, parsed
    assert out.counters["read_wait"] == 2


@needs_helper
def test_a_connection_lost_while_a_run_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    spy = Spy()
    monkeypatch.setattr(plain, "_getrun", spy)

    async def main() -> tuple[bytes, int]:
        server = RespServer(FixedClockBackend(_store()), read_mode="linearizable")
        transport = Transport()
        connection = Connection(server.state, ParserLimits(), lambda c: None)
        connection.connection_made(transport)  # type: ignore[arg-type]
        connection.data_received(get(b"k") * 2)
        assert connection._held_input == [get(b"k") * 2]  # held for its barrier, unparsed
        connection.connection_lost(None)
        for _ in range(5):
            await asyncio.sleep(0)
        return bytes(transport.written), server.state.stats.commands_processed

    assert asyncio.run(main()) == (b"", 0)
    assert spy.served == 1  # the look at the first GET before holding the bytes, no more


@needs_helper
def test_not_while_writes_are_pending(monkeypatch: pytest.MonkeyPatch) -> None:
    held: list[asyncio.Future[Any]] = []

    class Held(FixedClockBackend):
        def submit(self, command: Any) -> asyncio.Future[Any] | None:
            fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            held.append(fut)
            assert isinstance(command, Set)
            self._index += 1
            result = self._sm.apply(self._index, 1, command)
            asyncio.get_running_loop().call_later(0.01, fut.set_result, result)
            return fut

    spy = Spy()
    monkeypatch.setattr(plain, "_getrun", spy)

    async def main() -> bytes:
        server = RespServer(Held(_store()), read_mode="local")
        transport = Transport()
        connection = Connection(server.state, ParserLimits(), lambda c: None)
        connection.connection_made(transport)  # type: ignore[arg-type]
        connection.data_received(encode_command([b"SET", b"k", b"new"]))
        connection.data_received(get(b"k"))  # waits for the write: not for the helper
        assert spy.served == 0
        await asyncio.wait_for(held[0], 5)
        for _ in range(5):
            await asyncio.sleep(0)
        return bytes(transport.written)

    assert asyncio.run(main()) == b"+OK\r\n$3\r\nnew\r\n"


@needs_helper
def test_helper_directly_bounds_and_shapes() -> None:
    assert REAL is not None
    shards: list[dict[bytes, Any]] = [{} for _ in range(256)]
    shards[hash(b"a") & 255][b"a"] = (b"1", None, 1)
    data = get(b"a") * 5
    assert REAL.get_run(data, 0, shards, 0, 2, 100, 3, 1 << 20) == (
        3 * len(get(b"a")),
        b"$1\r\n1\r\n" * 3,
        3,
        3,
    )
    assert REAL.get_run(data, len(data), shards, 0, 2, 100, 9, 1 << 20) == (0, b"", 0, 0)
    assert REAL.get_run(memoryview(data), 0, shards, 0, 3, 0, 9, 1 << 20) == (0, b"", 0, 0)
    assert REAL.get_run(bytearray(get(b"b")), 0, shards, 0, 3, 9, 9, 1) == (
        len(get(b"b")),
        b"_\r\n",
        1,
        0,
    )
    shards[hash(b"a") & 255][b"a"] = (["not bytes"], None, 1)
    assert REAL.get_run(data, 0, shards, 0, 2, 100, 9, 1 << 20) == (0, b"", 0, 0)
    shards[hash(b"a") & 255][b"a"] = (b"1", 2**70, 1)
    assert REAL.get_run(data, 0, shards, 0, 2, 100, 1, 1 << 20)[1] == b"$1\r\n1\r\n"
    shards[hash(b"a") & 255][b"a"] = (b"1", -(2**70), 1)
    assert REAL.get_run(data, 0, shards, 0, 2, 100, 1, 1 << 20)[1] == b"$-1\r\n"
    with pytest.raises(ValueError):
        REAL.get_run(data, len(data) + 1, shards, 0, 2, 100, 9, 1)
    with pytest.raises(TypeError):
        REAL.get_run(data, 0, shards[:10], 0, 2, 100, 9, 1)


_KEYS = [b"k", b"nope", b"empty", b"bin\x00\r\n*2", b"live", b"dead", b"big", b""]
_request = st.one_of(
    st.sampled_from(_KEYS).map(get),
    st.tuples(st.sampled_from(_KEYS), st.sampled_from([b"get", b"Get", b"GET", b"gET"])).map(
        lambda kn: get(kn[0], kn[1])
    ),
    st.sampled_from(_KEYS).map(lambda k: encode_command([b"SET", k, b"v" + k])),
    st.sampled_from(_KEYS).map(lambda k: encode_command([b"DEL", k])),
    st.just(encode_command([b"PING"])),
    st.just(encode_command([b"HELLO", b"3"])),
    st.just(encode_command([b"HELLO", b"2"])),
    st.just(b"GET k\r\n"),
)


@needs_helper
@settings(max_examples=80, deadline=None)
@given(
    requests=st.lists(_request, min_size=1, max_size=30),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=6),
    garbage=st.one_of(st.just(b""), st.binary(max_size=12)),
    read_mode=st.sampled_from(["local", "linearizable"]),
    settle=st.booleans(),
)
def test_random_streams_give_identical_replies(
    requests: list[bytes], cuts: list[int], garbage: bytes, read_mode: str, settle: bool
) -> None:
    data = b"".join(requests) + garbage
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    chunks = [c for c in chunks if c]
    with pytest.MonkeyPatch.context() as monkeypatch:
        _both(chunks, monkeypatch, read_mode=read_mode, settle=settle)


@needs_helper
@pytest.mark.parametrize("accelerated", [False, True])
def test_input_held_behind_a_waiting_run_is_bounded(
    accelerated: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plain, "_getrun", REAL if accelerated else None)

    async def main() -> tuple[bool, bool, bytes]:
        server = RespServer(FixedClockBackend(_store()), read_mode="linearizable")
        transport = Transport()
        connection = Connection(server.state, ParserLimits(), lambda c: None)
        connection.connection_made(transport)  # type: ignore[arg-type]
        connection.data_received(get(b"k"))
        big = encode_command([b"SET", b"k", b"v" * MAX_PENDING_INPUT])
        half = len(big) // 2
        connection.data_received(big[:half])
        before = transport.paused
        connection.data_received(big[half:])
        after = transport.paused
        for _ in range(10):
            await asyncio.sleep(0)
        return before, after, bytes(transport.written)

    assert asyncio.run(main()) == (False, True, b"$5\r\nvalue\r\n+OK\r\n")


def set_(key: bytes, value: bytes, name: bytes = b"SET") -> bytes:
    return encode_command([name, key, value])


@needs_helper
def test_a_plain_set_alone_in_its_bytes_is_parsed_in_c(monkeypatch: pytest.MonkeyPatch) -> None:
    partial = set_(b"k4", b"v")
    chunks = [
        set_(b"k", b"v1"),
        set_(b"bin\x00\r\n", b"\x00\r\n$3\r\n", b"set"),
        set_(b"", b"", b"Set"),
        set_(b"k2", b"x" * 3000),
        encode_command([b"SET", b"k", b"a", b"NX"]),  # options: the parser's path
        set_(b"k3", b"v") * 2,  # two requests in one read: the parser's path
        partial[:-3],  # cut short: the parser buffers it ...
        partial[-3:],  # ... and takes the rest
        set_(b"k5", b"v", b"sEt"),  # another spelling: the dispatcher's path
        get(b"k"),
        get(b"bin\x00\r\n"),
        get(b"k2"),
        get(b"k4"),
    ]
    out = _both(chunks, monkeypatch)
    assert out.sets_in_c == 4
    replies = b"+OK\r\n" * 4 + b"$-1\r\n" + b"+OK\r\n" * 4  # NX on an existing key: nil
    replies += b"$2\r\nv1\r\n$7\r\n\x00\r\n$3\r\n\r\n$3000\r\n" + b"x" * 3000 + b"\r\n$1\r\nv\r\n"
    assert out.written == replies


@needs_helper
@pytest.mark.parametrize(
    "limits", [ParserLimits(max_bulk_len=2), ParserLimits(max_multibulk_len=2)]
)
def test_a_set_beyond_the_parser_limits_is_left_to_the_parser(
    limits: ParserLimits, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = _both([set_(b"key", b"v")], monkeypatch, limits=limits)
    assert out.sets_in_c == 0
    assert out.written.startswith(b"-ERR Protocol error")

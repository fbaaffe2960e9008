"""redis-py, sync and asyncio, against a crema server on a LocalBackend."""

# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import asyncio

import pytest
import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.server.crema_server import CremaServer, running_crema


@pytest.fixture
def client(crema_server: CremaServer) -> redis.Redis:
    r = redis.Redis(port=crema_server.port, socket_timeout=5)
    r.flushall()
    return r


def test_basic_commands(client: redis.Redis) -> None:
    assert client.ping() is True
    assert client.set("k", "v") is True
    assert client.get("k") == b"v"
    assert client.set("k", "w", nx=True) is None
    assert client.set("k", "w", xx=True, get=True) == b"v"
    assert client.execute_command("SETEX", "t", 100, "x") is True
    assert 99 <= client.ttl("t") <= 100
    assert client.expire("k", 50) is True
    assert 0 < client.pttl("k") <= 50_000
    assert client.persist("k") is True
    assert client.ttl("k") == -1
    assert client.incr("n") == 1
    assert client.incrby("n", 41) == 42
    assert client.decr("n") == 41
    assert client.append("k", "!") == 2
    assert client.strlen("k") == 2
    assert client.mset({"a": 1, "b": 2}) is True
    assert client.mget("a", "b", "zz") == [b"1", b"2", None]
    assert client.exists("a", "b", "zz") == 2
    assert client.type("a") == b"string"
    assert client.getdel("a") == b"1"
    assert client.delete("b", "zz") == 1
    assert client.dbsize() == 3  # k, t, n
    with pytest.raises(redis.ResponseError, match="not an integer"):
        client.incr("k")


def test_scan_iter_and_keys(client: redis.Redis) -> None:
    client.mset({f"user:{i}": i for i in range(250)} | {"other": 1})
    assert sorted(client.scan_iter(match="user:*", count=20)) == sorted(
        f"user:{i}".encode() for i in range(250)
    )
    assert len(client.keys("user:1*")) == 111


def test_pipeline(client: redis.Redis) -> None:
    pipe = client.pipeline(transaction=False)
    for i in range(100):
        pipe.set(f"p{i}", i)
        pipe.incr(f"c{i % 3}")
    pipe.get("p99")
    results = pipe.execute()
    assert results[-1] == b"99"
    assert results[-2] == 34  # c0 was incremented for i = 0, 3, ..., 99
    assert client.get("c0") == b"34"


def test_info_and_client_commands(client: redis.Redis) -> None:
    info = client.info()
    assert info["role"] == "master"
    assert info["crema_role"] == "leader"
    assert "connected_clients" in info
    assert client.info("raft")["raft_term"] == 1
    assert client.client_setname("tester") is True
    assert client.client_getname() == "tester"
    assert isinstance(client.client_id(), int)
    assert client.client_info()["name"] == "tester"
    assert client.execute_command("CREMA.READMODE") == b"linearizable"
    assert client.execute_command("CREMA.READMODE", "local") == b"OK"
    status = client.execute_command("CREMA.STATUS")
    assert b"role" in status or "role" in status


def test_info_keyspace_counts_keys_with_a_ttl(client: redis.Redis) -> None:
    client.flushdb()
    client.set("plain", "v")
    client.set("ttl1", "v", ex=100)
    client.set("ttl2", "v", px=100_000)
    client.persist("ttl2")
    assert client.info("keyspace")["db0"] == {"keys": 3, "expires": 1, "avg_ttl": 0}


def test_resp3(crema_server: CremaServer) -> None:
    client = redis.Redis(port=crema_server.port, protocol=3, socket_timeout=5)
    client.set("r3", "v", ex=100)
    assert client.get("r3") == b"v"
    assert client.get("missing") is None
    assert client.mget("r3", "missing") == [b"v", None]
    assert client.execute_command("HELLO", "3")[b"proto"] == 3
    assert client.info("server")["redis_version"] == "7.0.0"
    assert client.client_info()["resp"] == "3"


def test_auth() -> None:
    with running_crema(requirepass="s3cret") as server:
        no_retry = Retry(NoBackoff(), 0)
        anonymous = redis.Redis(port=server.port, socket_timeout=5, retry=no_retry)
        with pytest.raises(redis.AuthenticationError):
            anonymous.get("k")
        client = redis.Redis(port=server.port, password="s3cret", socket_timeout=5)
        assert client.set("k", "v") is True
        wrong = redis.Redis(port=server.port, password="nope", socket_timeout=5, retry=no_retry)
        with pytest.raises(redis.AuthenticationError):
            wrong.ping()
        resp3 = redis.Redis(port=server.port, password="s3cret", protocol=3, socket_timeout=5)
        assert resp3.get("k") == b"v"


def test_asyncio_client(crema_server: CremaServer) -> None:
    async def main() -> None:
        client = redis.asyncio.Redis(port=crema_server.port)
        try:
            await client.flushall()
            await asyncio.gather(*(client.incr("shared") for _ in range(40)))
            assert await client.get("shared") == b"40"
            async with client.pipeline(transaction=False) as pipe:
                for i in range(50):
                    pipe.set(f"a{i}", i, px=100_000)
                results = await pipe.execute()
            assert results == [True] * 50
            assert [k async for k in client.scan_iter(match="a1*")] != []
            await client.set("gone", "x", px=1)
            await asyncio.sleep(0.01)
            assert await client.get("gone") is None
        finally:
            await client.aclose()

    asyncio.run(main())

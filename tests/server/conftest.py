"""Fixtures for the server tests: a real redis-server for differential tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.server.crema_server import CremaServer
from tests.server.redis_server import RawClient, RedisServer, start_redis


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the session; skips the test if it cannot start."""
    try:
        server = start_redis()
    except RuntimeError as exc:
        pytest.skip(f"differential tests need redis-server: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[RawClient]:
    """A fresh connection to the session's redis-server."""
    client = redis_server.client()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def crema_server() -> Iterator[CremaServer]:
    """One crema RespServer on a LocalBackend for the session."""
    server = CremaServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def crema_client(crema_server: CremaServer) -> Iterator[RawClient]:
    """A fresh connection to the session's crema server."""
    client = crema_server.client()
    try:
        yield client
    finally:
        client.close()

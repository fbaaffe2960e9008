"""A crema :class:`RespServer` running in a background thread, for tests over real sockets.

The server has its own event loop in a daemon thread, so blocking clients
(:class:`~tests.server.redis_server.RawClient`, redis-py, ``redis-cli``) can
talk to it from the test's thread exactly as they talk to redis-server.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from crema.server.backend import Backend, LocalBackend
from crema.server.server import RespServer
from tests.server.redis_server import RawClient

__all__ = ["CremaServer", "running_crema"]

T = TypeVar("T")


class CremaServer:
    """A started RespServer in a thread.

    Args:
        backend: the backend to serve (a fresh ``LocalBackend`` by default).
        options: keyword arguments for :class:`RespServer`.
    """

    def __init__(self, backend: Backend | None = None, **options: Any) -> None:
        self.backend = backend if backend is not None else LocalBackend()
        self._options = options
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="crema-server")
        self.server: RespServer | None = None
        self._error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.server = RespServer(self.backend, port=0, **self._options)
            self.loop.run_until_complete(self.server.start())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    def start(self) -> CremaServer:
        """Start the thread and wait until the server listens."""
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self

    @property
    def port(self) -> int:
        """The port the server listens on."""
        assert self.server is not None
        return self.server.port

    def client(self, timeout: float = 5.0) -> RawClient:
        """A new raw connection."""
        return RawClient(self.port, timeout)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run ``coro`` on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        """Stop the server and its loop (idempotent)."""
        if not self._thread.is_alive():
            return
        if self.server is not None:
            self.run(self.server.stop(timeout=2.0))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@contextmanager
def running_crema(backend: Backend | None = None, **options: Any) -> Iterator[CremaServer]:
    """Context manager: a started :class:`CremaServer`, stopped on exit."""
    server = CremaServer(backend, **options).start()
    try:
        yield server
    finally:
        server.stop()

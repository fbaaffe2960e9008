"""The Redis-protocol server: accepts clients and serves each with a :class:`Connection` (L2).

Usage::

    server = RespServer(LocalBackend(), port=7379)
    await server.start()
    ...
    await server.stop()

Bounded by construction: at most ``max_clients`` connections (the next one
gets ``-ERR max number of clients reached`` and is closed, as in Redis), the
parser limits bound input buffered per connection, and replies are drained
as they are written. ``stop()`` stops accepting, lets every command in
progress finish and its reply be flushed, then closes the connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl

from crema.errors import ConfigError
from crema.server.backend import Backend
from crema.server.connection import Connection, ParserLimits
from crema.server.resp_parser import (
    DEFAULT_MAX_BULK_LEN,
    DEFAULT_MAX_INLINE_LEN,
    DEFAULT_MAX_MULTIBULK_LEN,
    RequestParser,
)
from crema.server.session import (
    READ_MODES,
    CheckpointCallback,
    MembershipOps,
    ServerState,
    ShutdownCallback,
)

__all__ = ["DEFAULT_PORT", "RespServer"]

log = logging.getLogger(__name__)

DEFAULT_PORT = 7379
"""crema's default client port (Redis's 6379 plus 1000)."""


class RespServer:
    """A RESP2/RESP3 server in front of a :class:`~crema.server.backend.Backend`.

    Args:
        backend: the node, or a ``LocalBackend``.
        host: the address to bind (loopback by default).
        port: the port to bind; 0 picks a free one (see :attr:`port` once started).
        requirepass: the password clients must AUTH with (str or bytes), or None.
        read_mode: the default read mode of new connections (``linearizable``
            or ``local``; ``CREMA.READMODE`` changes it per connection).
        max_clients: connections served at most at once.
        on_shutdown: called (without blocking) by ``SHUTDOWN``; None refuses it.
        on_checkpoint: coroutine function run by ``CREMA.CHECKPOINT``; None refuses it.
        membership: the node's membership operations for ``CREMA.ADDNODE``,
            ``CREMA.REMOVENODE`` and ``CREMA.TRANSFER``; None refuses them.
        max_bulk_len: longest bulk string accepted in a request.
        max_multibulk_len: most arguments in one request.
        max_inline_len: longest inline request (and length line).
        ssl_context: serve TLS with this server context (None: plain TCP).

    Raises:
        ConfigError: a bad read mode or limit.
    """

    def __init__(
        self,
        backend: Backend,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        requirepass: str | bytes | None = None,
        read_mode: str = "linearizable",
        max_clients: int = 10000,
        on_shutdown: ShutdownCallback | None = None,
        on_checkpoint: CheckpointCallback | None = None,
        membership: MembershipOps | None = None,
        max_bulk_len: int = DEFAULT_MAX_BULK_LEN,
        max_multibulk_len: int = DEFAULT_MAX_MULTIBULK_LEN,
        max_inline_len: int = DEFAULT_MAX_INLINE_LEN,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if read_mode not in READ_MODES:
            raise ConfigError("read_mode", f"must be one of {', '.join(READ_MODES)}")
        if max_clients < 1:
            raise ConfigError("max_clients", f"must be positive, got {max_clients}")
        password = requirepass.encode() if isinstance(requirepass, str) else requirepass
        self.state = ServerState(backend, password or None, read_mode, max_clients, on_shutdown,
                                 on_checkpoint, membership, host, port)  # fmt: skip
        self._limits = ParserLimits(max_bulk_len, max_multibulk_len, max_inline_len)
        RequestParser(  # refuses bad limits now rather than at the first client
            max_bulk_len=max_bulk_len,
            max_multibulk_len=max_multibulk_len,
            max_inline_len=max_inline_len,
        )
        self._ssl = ssl_context
        self._server: asyncio.Server | None = None
        self._connections: set[Connection] = set()

    @property
    def host(self) -> str:
        """The bound address."""
        return self.state.host

    @property
    def port(self) -> int:
        """The bound port (the real one once started with port 0)."""
        return self.state.port

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` the server listens on."""
        return self.state.host, self.state.port

    async def start(self) -> None:
        """Bind and start accepting clients.

        Raises:
            OSError: the address cannot be bound.
            RuntimeError: already started.
        """
        if self._server is not None:
            raise RuntimeError("server already started")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._new_connection, self.state.host, self.state.port, ssl=self._ssl
        )
        sockname = self._server.sockets[0].getsockname()
        self.state.host, self.state.port = sockname[0], sockname[1]
        kind = "RESP over TLS" if self._ssl is not None else "RESP"
        log.info("serving %s on %s:%d", kind, self.state.host, self.state.port)

    async def serve_forever(self) -> None:
        """Start (if needed) and serve until cancelled or stopped."""
        if self._server is None:
            await self.start()
        assert self._server is not None
        with contextlib.suppress(asyncio.CancelledError):
            await self._server.serve_forever()

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, finish the commands already received, close every connection.

        Args:
            timeout: seconds to wait for in-flight commands before aborting them.
        """
        server, self._server = self._server, None
        if server is not None:
            server.close()
        connections = list(self._connections)
        for connection in connections:
            connection.stop()
        if connections:
            waiting = [connection.closed for connection in connections]
            _, pending = await asyncio.wait(waiting, timeout=timeout)
            if pending:
                for connection in connections:
                    if not connection.closed.done():
                        connection.abort()
                await asyncio.wait(pending, timeout=1.0)
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)

    def _new_connection(self) -> Connection:
        # Tracked from connection_made: over TLS a client whose handshake fails
        # (plain text on the TLS port, say) is never made, nor ever lost.
        return Connection(
            self.state, self._limits, self._connections.discard, self._connections.add
        )

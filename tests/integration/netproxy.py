"""Loopback TCP proxies standing in for network links between node processes.

Each node's seed list says where *it* reaches each peer, and peers identify
themselves in the handshake, so pointing node ``i``'s entry for node ``j`` at
a proxy that forwards to ``j`` puts the directed link ``i -> j`` under the
test's control without the nodes noticing. A :class:`Link` is:

* ``up``: bytes flow both ways;
* ``stalled``: nothing is read or forwarded (a black hole: TCP keeps the
  connection, the sender's buffers fill, its write timeouts fire);
  connections made meanwhile stall too;
* ``reset``: every connection is aborted (RST) and new ones are refused the
  same way, as a firewall rejecting the traffic would.
"""

from __future__ import annotations

import asyncio
import contextlib

CHUNK = 64 * 1024


class Link:
    """A directed link through a proxy on 127.0.0.1:``port`` to 127.0.0.1:``target``."""

    def __init__(self, port: int, target: int) -> None:
        self.port = port
        self.target = target
        self.mode = "up"
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    def set_mode(self, mode: str) -> None:
        """``up``, ``stalled`` or ``reset`` (see the module docstring)."""
        assert mode in ("up", "stalled", "reset"), mode
        self.mode = mode
        if mode == "up":
            self._flowing.set()
            return
        self._flowing.clear()
        if mode == "reset":
            for writer in list(self._writers):
                writer.transport.abort()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "reset":
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        pipes = [
            asyncio.ensure_future(self._pipe(reader, up_writer)),
            asyncio.ensure_future(self._pipe(up_reader, writer)),
        ]
        self._tasks.update(pipes)
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pipes:
                task.cancel()
            for w in (writer, up_writer):
                w.transport.abort()
                self._writers.discard(w)
            await asyncio.wait(pipes)
            self._tasks.difference_update(pipes)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while True:
                await self._flowing.wait()
                data = await reader.read(CHUNK)
                if not data:
                    return
                await self._flowing.wait()  # stalled meanwhile: hold the bytes
                writer.write(data)
                await writer.drain()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.set_mode("reset")
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks))
        if self._server is not None:
            await self._server.wait_closed()


class Network:
    """Proxied links between every ordered pair of ``nodes`` (ids to peer ports)."""

    def __init__(self, peer_ports: dict[int, int], proxy_ports: list[int]) -> None:
        pairs = [(a, b) for a in peer_ports for b in peer_ports if a != b]
        assert len(proxy_ports) >= len(pairs)
        ports = iter(proxy_ports)
        self.links = {(a, b): Link(next(ports), peer_ports[b]) for a, b in pairs}

    def seeds_of(self, node: int, peer_ports: dict[int, int]) -> str:
        """The ``--peers`` value of ``node``: itself directly, everyone else by proxy."""
        parts = []
        for other, port in sorted(peer_ports.items()):
            via = port if other == node else self.links[(node, other)].port
            parts.append(f"{other}=127.0.0.1:{via}")
        return ",".join(parts)

    async def start(self) -> None:
        for link in self.links.values():
            await link.start()

    def isolate(self, node: int, mode: str) -> None:
        """Cut every link to and from ``node``."""
        for (a, b), link in self.links.items():
            if node in (a, b):
                link.set_mode(mode)

    def cut_one_way(self, frm: int, to: int, mode: str) -> None:
        """Cut only ``frm -> to`` (an asymmetric partition)."""
        self.links[(frm, to)].set_mode(mode)

    def heal(self) -> None:
        for link in self.links.values():
            link.set_mode("up")

    async def close(self) -> None:
        for link in self.links.values():
            await link.close()

"""A local cluster of ``crema serve`` processes on loopback (the demo's, and the tests').

Each node is a separate ``python -m crema serve`` process with its data and
log file under one directory. Every process started is remembered by PID and
stopped by :meth:`LocalCluster.stop_all` (SIGTERM, then SIGKILL after a grace
period), which the owner calls in a ``finally``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that were free a moment ago."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def pairs(reply: Any) -> dict[str, Any]:
    """A RESP2 flat ``[key, value, ...]`` (or a RESP3 map) as a dict with str keys."""
    if isinstance(reply, dict):
        items = list(reply.items())
    else:
        items = list(zip(reply[::2], reply[1::2], strict=True))
    return {k.decode() if isinstance(k, bytes) else str(k): v for k, v in items}


def decoded(value: Any) -> Any:
    """Bytes to str, recursively through lists."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return [decoded(v) for v in value]
    return value


@dataclass
class ServeNode:
    """One ``crema serve`` process of a :class:`LocalCluster`."""

    node_id: int
    client_port: int
    peer_port: int
    admin_port: int
    data_dir: Path
    args: list[str]
    proc: subprocess.Popen[bytes] | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    client_options: dict[str, Any] = field(default_factory=dict)
    """redis-py keyword arguments for :meth:`client` (TLS settings, say)."""
    launcher: list[str] = field(default_factory=list)
    """A command the process runs under (``["prlimit", "--nofile=200"]``, say)."""

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"node-{self.node_id}.log"

    def client(self, **kwargs: Any) -> redis.Redis:
        """A redis-py client to this node."""
        kwargs.setdefault("socket_timeout", 30)
        return redis.Redis(port=self.client_port, **{**self.client_options, **kwargs})

    def start(self) -> None:
        """Spawn the process (its output appended to :attr:`log_path`)."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(  # the child inherits the log file
                [*self.launcher, sys.executable, "-m", "crema", "serve", *self.args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.extra_env},
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def status(self) -> dict[str, Any]:
        """``CREMA.STATUS`` as a dict (str keys, decoded values)."""
        with self.client() as client:
            return {k: decoded(v) for k, v in pairs(client.execute_command("CREMA.STATUS")).items()}

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until the node answers PING."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise RuntimeError(f"node {self.node_id} exited; see {self.log_path}")
            with contextlib.suppress(redis.RedisError), self.client(socket_timeout=1) as client:
                if client.ping():
                    return
            time.sleep(0.05)
        raise TimeoutError(f"node {self.node_id} did not answer PING in {timeout} s")

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the process if it is running (SIGSTOP, SIGCONT, ...)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL the process and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def terminate(self, grace: float = 15.0, already_signalled: bool = False) -> int | None:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL; the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            if not already_signalled:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def serve_node(
    node_id: int,
    ports: tuple[int, int, int],
    home: Path,
    *extra_args: str,
    data_dir: Path | None = None,
    client_options: dict[str, Any] | None = None,
) -> ServeNode:
    """A ``crema serve`` node on loopback ``ports`` (client, peer, admin), not started.

    ``home`` holds its data unless ``data_dir`` is given; its log file is
    next to ``home``. ``client_options`` go to redis-py in :meth:`ServeNode.client`.
    """
    client, peer, admin = ports
    args = [
        "--node-id", str(node_id),
        "--client-addr", f"127.0.0.1:{client}",
        "--peer-addr", f"127.0.0.1:{peer}",
        "--admin-addr", f"127.0.0.1:{admin}",
        "--data-dir", str(data_dir or home),
        "--min-free-bytes", "0",
        *extra_args,
    ]  # fmt: skip
    return ServeNode(node_id, client, peer, admin, home, args,
                     client_options=dict(client_options or {}))  # fmt: skip


def single_node(
    directory: Path,
    *extra_args: str,
    data_dir: Path | None = None,
    client_options: dict[str, Any] | None = None,
) -> ServeNode:
    """Node 1 alone on free loopback ports (not started).

    Its log file is under ``directory``; its data in ``data_dir`` (default
    ``directory/node-1``). ``client_options`` go to redis-py in :meth:`ServeNode.client`.
    """
    client, peer, admin = free_ports(3)
    return serve_node(1, (client, peer, admin), directory / "node-1", *extra_args,
                      data_dir=data_dir, client_options=client_options)  # fmt: skip


class LocalCluster:
    """``size`` ``crema serve`` processes on free loopback ports under ``directory``."""

    def __init__(self, directory: Path, size: int = 3, extra_args: tuple[str, ...] = ()) -> None:
        ports = free_ports(3 * size)
        peers = ",".join(f"{i + 1}=127.0.0.1:{ports[size + i]}" for i in range(size))
        self.directory = directory
        self.nodes: list[ServeNode] = []
        for i in range(size):
            node_ports = (ports[i], ports[size + i], ports[2 * size + i])
            home = directory / f"node-{i + 1}"
            secret = ("--cluster-secret", "crema-local-cluster")
            self.nodes.append(serve_node(i + 1, node_ports, home, "--peers", peers, *secret,
                                         *extra_args))  # fmt: skip

    def node(self, node_id: int) -> ServeNode:
        return self.nodes[node_id - 1]

    def start_all(self, timeout: float = 30.0) -> None:
        """Start every node and wait until each answers PING."""
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            node.wait_ready(timeout)

    def live(self) -> list[ServeNode]:
        return [n for n in self.nodes if n.running()]

    def wait_leader(self, timeout: float = 30.0, exclude: int | None = None) -> ServeNode:
        """Wait until every live node agrees on one leader (not ``exclude``); return it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leaders = set()
            try:
                for node in self.live():
                    leaders.add(node.status()["leader_id"])
            except redis.RedisError:
                leaders.add(None)
            if len(leaders) == 1 and None not in leaders and exclude not in leaders:
                leader = self.node(int(leaders.pop()))
                if leader.running():
                    return leader
            time.sleep(0.05)
        raise TimeoutError(f"no leader agreed on in {timeout} s")

    def stop_all(self) -> dict[int, int | None]:
        """Stop every process started (SIGTERM, then SIGKILL); node id to exit status."""
        codes = {}
        signalled = set()
        for node in self.nodes:
            if node.running():
                assert node.proc is not None
                node.proc.send_signal(signal.SIGTERM)
                signalled.add(node.node_id)
        for node in self.nodes:
            codes[node.node_id] = node.terminate(already_signalled=node.node_id in signalled)
        return codes

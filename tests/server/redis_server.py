"""A real ``redis-server`` for differential tests, and a raw RESP client.

The client speaks bytes: it sends requests exactly as given (so malformed
input can be tested) and returns each reply frame as its raw bytes, so a
test can compare replies byte for byte. The crema server will be driven
through the same :class:`RawClient`, which makes a full-reply differential
suite a matter of starting both and comparing :meth:`RawClient.call` results.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from crema.server.resp import encode_command

__all__ = [
    "RawClient",
    "RedisServer",
    "diff_replies",
    "free_port",
    "read_frame",
    "running_redis",
    "start_redis",
]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RawClient:
    """A blocking RESP client that returns raw reply frames.

    Args:
        port: the server's port on 127.0.0.1.
        timeout: seconds to wait for any read.
    """

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self._buf = bytearray()

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self._sock.close()

    def send_raw(self, data: bytes) -> None:
        """Send bytes as they are."""
        self._sock.sendall(data)

    def call(self, *args: bytes) -> bytes:
        """Send one command and return its raw reply frame."""
        self.send_raw(encode_command(list(args)))
        return self.read_reply()

    def pipeline(self, commands: Sequence[Sequence[bytes]]) -> list[bytes]:
        """Send many commands in one write and return their raw replies."""
        self.send_raw(b"".join(encode_command(list(c)) for c in commands))
        return [self.read_reply() for _ in commands]

    def read_reply(self) -> bytes:
        """Read exactly one reply frame; raises ConnectionError on EOF."""
        while True:
            end = read_frame(self._buf, 0)
            if end is not None:
                frame = bytes(self._buf[:end])
                del self._buf[:end]
                return frame
            self._fill()

    def read_until_closed(self) -> bytes:
        """Everything the server sends until it closes the connection."""
        with contextlib.suppress(ConnectionError):
            while True:
                self._fill()
        data = bytes(self._buf)
        self._buf.clear()
        return data

    def _fill(self) -> None:
        chunk = self._sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self._buf += chunk


def read_frame(buf: bytearray | bytes, pos: int) -> int | None:
    """End offset of the RESP2/RESP3 reply frame at ``pos``, or None if incomplete."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        return None
    kind = buf[pos : pos + 1]
    after = end + 2
    if kind in (b"$", b"=", b"!"):
        size = int(buf[pos + 1 : end])
        if size < 0:
            return after
        return after + size + 2 if len(buf) >= after + size + 2 else None
    if kind in (b"*", b"~", b">", b"%", b"|"):
        count = int(buf[pos + 1 : end])
        if kind in (b"%", b"|"):
            count *= 2
        for _ in range(max(count, 0)):
            nxt = read_frame(buf, after)
            if nxt is None:
                return None
            after = nxt
        return after
    return after  # + - : _ , # ( are one line


def diff_replies(
    commands: Sequence[Sequence[bytes]], reference: RawClient, candidate: RawClient
) -> list[tuple[list[bytes], bytes, bytes]]:
    """Run the same commands against two servers; return where the replies differ.

    Meant for the full-reply differential suite: ``reference`` talks to
    redis-server, ``candidate`` to crema.

    Returns:
        (command, reference reply, candidate reply) for each difference.
    """
    theirs = reference.pipeline(commands)
    ours = candidate.pipeline(commands)
    return [
        (list(command), a, b)
        for command, a, b in zip(commands, theirs, ours, strict=True)
        if a != b
    ]


class RedisServer:
    """A ``redis-server`` process on a loopback port, without persistence.

    Attributes:
        port: where it listens.
        version: its ``redis_version``.
    """

    def __init__(self, process: subprocess.Popen[bytes], port: int, workdir: Path) -> None:
        self.process = process
        self.port = port
        self.workdir = workdir
        self.version = ""

    def client(self) -> RawClient:
        """A new raw connection."""
        return RawClient(self.port)

    def stop(self) -> None:
        """Stop the server and remove its directory (idempotent)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_redis(timeout: float = 5.0, extra_args: Sequence[str] = ()) -> RedisServer:
    """Start ``redis-server`` on a free port and wait until it answers PING.

    Args:
        timeout: seconds to wait for the first PONG.
        extra_args: more command-line options (``["--requirepass", "pw"]``).

    Raises:
        RuntimeError: redis-server is missing or did not start in time; the
            message says why (tests turn it into a skip reason).
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server not found on PATH (Debian package redis-server)")
    workdir = Path(tempfile.mkdtemp(prefix="crema-redis-"))
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(workdir), "--daemonize", "no",
            *extra_args]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = RedisServer(process, port, workdir)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            server.stop()
            raise RuntimeError(f"redis-server exited with status {process.returncode}")
        try:
            client = server.client()
        except OSError:
            time.sleep(0.02)
            continue
        try:
            if extra_args and "--requirepass" in extra_args:
                password = extra_args[list(extra_args).index("--requirepass") + 1]
                client.call(b"AUTH", password.encode())
            if client.call(b"PING") == b"+PONG\r\n":
                info = client.call(b"INFO", b"server").decode()
                for line in info.splitlines():
                    if line.startswith("redis_version:"):
                        server.version = line.split(":", 1)[1]
                return server
        except OSError:
            pass
        finally:
            client.close()
        time.sleep(0.02)
    server.stop()
    raise RuntimeError(f"redis-server did not answer PING within {timeout} s")


@contextlib.contextmanager
def running_redis() -> Iterator[RedisServer]:
    """Context manager form of :func:`start_redis`."""
    server = start_redis()
    try:
        yield server
    finally:
        server.stop()

"""Transport settings and peer address parsing (L0, pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from crema.errors import ConfigError
from crema.transport.codec import DEFAULT_MAX_FRAME

if TYPE_CHECKING:
    import ssl


def parse_addr(addr: str, field: str = "addr") -> tuple[str, int]:
    """Split ``"host:port"`` (or ``"[v6]:port"``) into host and port.

    Raises:
        ConfigError: malformed address or port out of range.
    """
    host, sep, port_text = addr.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ConfigError(field, f"expected 'host:port', got {addr!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    port = int(port_text)
    if port > 65535:
        raise ConfigError(field, f"port {port} out of range")
    return host, port


@dataclass(frozen=True, slots=True)
class TransportConfig:
    """Knobs of :class:`~crema.transport.tcp.TcpTransport`; defaults suit a LAN.

    Attributes:
        max_frame: largest payload accepted or sent, in bytes.
        queue_messages: most frames queued per peer for the Raft lane.
        queue_bytes: most bytes queued per peer for the Raft lane.
        snapshot_queue_bytes: most bytes of snapshot chunks queued per peer.
        batch_bytes: a writer gathers queued frames up to this many bytes per write.
        connect_timeout: seconds allowed to open a TCP connection.
        handshake_timeout: seconds allowed for the whole handshake.
        write_timeout: seconds a batch may wait for the peer to read before the
            connection is declared dead and redialed (a silently vanished host
            would otherwise hold the lane until the kernel gives up).
        backoff_initial: first reconnect delay, seconds.
        backoff_max: largest reconnect delay, seconds.
        max_pending_handshakes: inbound connections still in their handshake;
            more are refused at once.
        read_size: bytes asked of the socket per read.
        server_ssl: TLS context for the listener, or None for plain TCP.
        client_ssl: TLS context for dialing peers (verifying their
            certificates); set both or neither. TLS adds confidentiality and
            integrity of every frame; the handshake still proves cluster
            membership and node identity on top of it.
    """

    max_frame: int = DEFAULT_MAX_FRAME
    queue_messages: int = 4096
    queue_bytes: int = 64 * 1024 * 1024
    snapshot_queue_bytes: int = 8 * 1024 * 1024
    batch_bytes: int = 1024 * 1024
    connect_timeout: float = 2.0
    handshake_timeout: float = 5.0
    write_timeout: float = 10.0
    backoff_initial: float = 0.05
    backoff_max: float = 2.0
    max_pending_handshakes: int = 64
    read_size: int = 256 * 1024
    server_ssl: ssl.SSLContext | None = None
    client_ssl: ssl.SSLContext | None = None

    def __post_init__(self) -> None:
        for name in ("max_frame", "queue_messages", "batch_bytes", "max_pending_handshakes"):
            if getattr(self, name) < 1:
                raise ConfigError(name, "must be >= 1")
        if self.max_frame >= 1 << 32:
            raise ConfigError("max_frame", "must fit the 4-byte length prefix")
        for name in ("queue_bytes", "snapshot_queue_bytes"):
            if getattr(self, name) < 1:
                raise ConfigError(name, "must be >= 1 (an empty queue always takes one frame)")
        if self.read_size < 1024:
            raise ConfigError("read_size", "must be >= 1024")
        for name in ("connect_timeout", "handshake_timeout", "write_timeout", "backoff_initial"):
            if getattr(self, name) <= 0:
                raise ConfigError(name, "must be > 0")
        if (self.server_ssl is None) != (self.client_ssl is None):
            raise ConfigError("server_ssl", "set both server_ssl and client_ssl, or neither")
        if self.backoff_max < self.backoff_initial:
            raise ConfigError("backoff_max", "must be >= backoff_initial")

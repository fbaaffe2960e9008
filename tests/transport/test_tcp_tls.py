"""Optional TLS under the handshake: encrypted lanes work, plain TCP is refused."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from crema.errors import ConfigError
from crema.raft.types import NodeId
from crema.transport.config import TransportConfig
from tests.transport.harness import FAST, Inbox, heartbeat, make, wait_until

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed"),
]


def _contexts(tmp: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A throwaway self-signed certificate for 127.0.0.1, as server and client contexts."""
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    args = ["openssl", "req", "-x509", "-nodes", "-days", "1", "-subj", "/CN=crema-test"]
    args += ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    args += ["-addext", "subjectAltName=IP:127.0.0.1"]
    subprocess.run([*args, "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(cert)
    return server, client


def test_tls_lanes_deliver_and_plain_dialers_are_refused(tmp_path: Path) -> None:
    server_ctx, client_ctx = _contexts(tmp_path)
    tls = replace(FAST, server_ssl=server_ctx, client_ssl=client_ctx)

    async def main() -> None:
        box_a, box_b, box_plain = Inbox(), Inbox(), Inbox()
        a = make(1, box_a, config=tls)
        b = make(2, box_b, config=tls)
        plain = make(3, box_plain)
        for t in (a, b, plain):
            await t.start()
        try:
            a.add_peer(2, b.address)
            b.add_peer(1, a.address)
            a.add_peer(3, plain.address)
            plain.add_peer(1, a.address)
            a.send(2, heartbeat(1, 2))
            b.send(1, heartbeat(2, 1))
            await wait_until(lambda: len(box_a.items) == 1 and len(box_b.items) == 1)
            assert a.is_connected(2)
            plain.send(1, heartbeat(3, 1))  # plain TCP into a TLS listener: no TLS, no entry
            await wait_until(lambda: plain.stats().peers[NodeId(1)].connect_failures >= 2)
            assert [frm for frm, _, _ in box_a.items] == [2]
            assert not plain.is_connected(1)
        finally:
            for t in (a, b, plain):
                await t.stop()

    asyncio.run(main())


def test_tls_needs_both_contexts(tmp_path: Path) -> None:
    server_ctx, _ = _contexts(tmp_path)
    with pytest.raises(ConfigError, match="server_ssl"):
        TransportConfig(server_ssl=server_ctx)

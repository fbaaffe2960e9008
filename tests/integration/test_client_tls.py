"""Redis clients over TLS: ``crema serve --client-tls-*`` with redis-py, redis-cli and the CLI."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from crema.cli import main
from crema.cli.local_cluster import ServeNode, single_node
from crema.server.backend import LocalBackend
from crema.server.server import RespServer

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed"),
]


def _self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-nodes", "-days", "1", "-subj", f"/CN={name}",
         "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key),
         "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def _node(tmp: Path, *tls: str, **client_options: object) -> ServeNode:
    return single_node(tmp, *tls, client_options=client_options)


@pytest.fixture
def server_cert(tmp_path: Path) -> tuple[Path, Path]:
    return _self_signed(tmp_path, "server")


@pytest.fixture
def tls_node(tmp_path: Path, server_cert: tuple[Path, Path]) -> Iterator[ServeNode]:
    cert, key = server_cert
    node = _node(tmp_path, "--client-tls-cert", str(cert), "--client-tls-key", str(key),
                 ssl=True, ssl_ca_certs=str(cert))  # fmt: skip
    node.start()
    try:
        node.wait_ready()
        yield node
    finally:
        assert node.terminate() == 0


def test_redis_py_over_tls_and_plain_clients_refused(tls_node: ServeNode) -> None:
    with tls_node.client() as client:
        assert client.set("tls:k", "v") is True
        assert client.get("tls:k") == b"v"
        assert client.info("server")["redis_version"]
    plain = redis.Redis(port=tls_node.client_port, socket_timeout=5, socket_connect_timeout=5)
    with pytest.raises(redis.ConnectionError):
        plain.ping()
    plain.close()
    with tls_node.client() as client:  # the node still serves TLS clients
        assert client.get("tls:k") == b"v"
    assert "serving RESP over TLS" in tls_node.log_path.read_text()


def test_redis_cli_over_tls(tls_node: ServeNode, server_cert: tuple[Path, Path]) -> None:
    cli = shutil.which("redis-cli")
    usage = (
        ""
        if cli is None
        else subprocess.run([cli, "--help"], check=False, capture_output=True, text=True).stdout
    )
    if cli is None or "--tls" not in usage:
        pytest.skip("redis-cli with TLS support not installed")
    base = [cli, "-p", str(tls_node.client_port), "--tls", "--cacert", str(server_cert[0])]
    out = subprocess.run([*base, "SET", "cli:k", "x"], check=False, capture_output=True, text=True,
                         timeout=30)  # fmt: skip
    assert out.stdout.strip() == "OK", out
    out = subprocess.run([*base, "GET", "cli:k"], check=False, capture_output=True, text=True,
                         timeout=30)  # fmt: skip
    assert out.stdout.strip() == "x", out


def test_cluster_cli_over_tls(
    tls_node: ServeNode, server_cert: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    addr = f"127.0.0.1:{tls_node.client_port}"
    assert main(["cluster", "status", "--addr", addr, "--tls-ca", str(server_cert[0])]) == 0
    assert "leader" in capsys.readouterr().out
    assert main(["cluster", "status", "--addr", addr, "--timeout", "5"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("crema cluster: error:") and "\n" not in err, err


def test_client_certificates_when_a_ca_is_given(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path, "server")
    client_cert, client_key = _self_signed(tmp_path, "client")
    tls = ("--client-tls-cert", str(cert), "--client-tls-key", str(key),
           "--client-tls-ca", str(client_cert))  # fmt: skip
    node = _node(tmp_path, *tls, ssl=True, ssl_ca_certs=str(cert),
                 ssl_certfile=str(client_cert), ssl_keyfile=str(client_key))  # fmt: skip
    node.start()
    try:
        node.wait_ready()
        with node.client() as client:
            assert client.set("m", "1") is True
        anonymous = redis.Redis(port=node.client_port, ssl=True, ssl_ca_certs=str(cert),
                                socket_timeout=5, socket_connect_timeout=5)  # fmt: skip
        with pytest.raises(redis.ConnectionError):
            anonymous.ping()
        anonymous.close()
    finally:
        assert node.terminate() == 0


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (("--client-tls-cert", "c.pem"), "--client-tls-key: needed with --client-tls-cert"),
        (("--client-tls-key", "k.pem"), "--client-tls-cert: needed with --client-tls-key"),
        (("--client-tls-ca", "a.pem"), "--client-tls-ca: needs --client-tls-cert"),
        (("--client-tls-cert", "nope.pem", "--client-tls-key", "nope.pem"),
         "--client-tls-cert: cannot load the TLS files"),
    ],
)  # fmt: skip
def test_bad_tls_options_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], given: tuple[str, ...], message: str
) -> None:
    assert main(["serve", "--data-dir", str(tmp_path / "d"), *given]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err, err


def test_a_failed_handshake_leaves_no_connection_behind(server_cert: tuple[Path, Path]) -> None:
    """Plain text on the TLS port: refused, and nothing is kept for it (nor waited for on stop)."""
    cert, key = server_cert
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    async def run() -> None:
        server = RespServer(LocalBackend(), ssl_context=context)
        await server.start()
        try:
            for _ in range(20):
                reader, writer = await asyncio.open_connection(server.host, server.port)
                writer.write(b"*1\r\n$4\r\nPING\r\n")
                assert await reader.read() == b""  # closed by the server
                writer.close()
            assert server._connections == set()
            assert server.state.stats.connections_received == 0
        finally:
            await server.stop()

    asyncio.run(run())

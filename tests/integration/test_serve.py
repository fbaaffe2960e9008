"""``crema serve``: settings precedence, usage errors, and real node processes.

One module-scoped 3-node cluster of ``crema serve`` processes serves the
redis-py, redis-cli and admin HTTP tests; every process is stopped by PID in
the fixture's teardown.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from crema.cli import main
from crema.cli.local_cluster import LocalCluster, ServeNode, free_ports, single_node
from crema.cli.serve import loop_runner
from crema.cli.serve_config import SettingError, add_arguments, cache_config, resolve
from crema.node.runtime import SERVING_GC_THRESHOLDS, fit_max_clients, tune_gc

pytestmark = pytest.mark.timeout(120)

FAST = ("--raft-tick-ms", "20", "--log-level", "info")


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


# ------------------------------------------------------------------ settings


def test_defaults_follow_the_node_id() -> None:
    values = resolve(_args("--node-id", "2"), {})
    assert values["client_addr"] == "127.0.0.1:7380"
    assert values["peer_addr"] == "127.0.0.1:7480"
    assert values["admin_addr"] == "127.0.0.1:9480"
    assert values["data_dir"] == "./crema-data/node-2"
    assert values["read_mode"] == "linearizable"
    config = cache_config(values)
    assert config.voters() == {2: "127.0.0.1:7480"}
    assert config.checkpoints.directory == Path("crema-data/node-2/checkpoints")


def test_flag_beats_toml_beats_environment(tmp_path: Path) -> None:
    toml = tmp_path / "crema.toml"
    toml.write_text(
        'node_id = 3\nread_mode = "local"\npeers = "1=127.0.0.1:1001,3=127.0.0.1:1003"\n'
        "[checkpoint]\nlog_threshold = 500\ncompression = false\n"
        "[raft]\ntick_ms = 25\n"
    )
    env = {
        "CREMA_NODE_ID": "9",
        "CREMA_CHECKPOINT_LOG_THRESHOLD": "7",
        "CREMA_RAFT_FSYNC": "batch",
        "CREMA_REQUIREPASS": "from-env",
    }
    values = resolve(_args("--config", str(toml), "--raft-tick-ms", "30"), env)
    assert values["node_id"] == 3  # TOML over environment
    assert values["checkpoint_log_threshold"] == 500
    assert values["checkpoint_compression"] is False
    assert values["raft_tick_ms"] == 30  # flag over TOML
    assert values["raft_fsync"] == "batch"  # environment over default
    assert values["requirepass"] == "from-env"
    assert values["read_mode"] == "local"
    assert values["peer_addr"] == "127.0.0.1:1003"  # this node's entry in its peers
    config = cache_config(values)
    assert config.raft_config.tick_interval_ms == 30
    assert config.checkpoints.log_threshold == 500
    assert dict(config.seed_nodes) == {1: "127.0.0.1:1001", 3: "127.0.0.1:1003"}
    # CREMA_CONFIG names the file when --config is absent
    assert resolve(_args(), {"CREMA_CONFIG": str(toml)})["node_id"] == 3


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--node-id", "x"], "--node-id"),
        (["--node-id", "0"], "--node-id"),
        (["--peers", "1=nohost"], "--peers"),
        (["--client-addr", "localhost"], "--client-addr"),
        (["--checkpoint-log-threshold", "0"], "--checkpoint-log-threshold"),
        (["--raft-election-ticks", "2"], "--raft-election-ticks"),
        (["--raft-fsync", "sometimes"], "--raft-fsync"),
        (["--storage", "tape"], "--storage"),
        (["--bogus"], "--bogus"),
        (["--config", "/nonexistent/crema.toml"], "--config"),
    ],
)
def test_bad_options_exit_2_with_one_line(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("crema serve: error:") and named in err, err


@pytest.mark.usefixtures("no_uvloop")
def test_event_loop_choice() -> None:
    assert loop_runner("asyncio") is asyncio.run
    assert loop_runner("auto") is asyncio.run  # falls back to plain asyncio
    with pytest.raises(SettingError, match="--event-loop"):
        loop_runner("uvloop")


def test_tune_gc_freezes_and_raises_thresholds() -> None:
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == SERVING_GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_bad_toml_and_environment_name_the_option(tmp_path: Path) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_text("checkpoint_max_snapshots = 'many'\n")
    with pytest.raises(SettingError, match="--checkpoint-max-snapshots"):
        resolve(_args("--config", str(toml)), {})
    toml.write_text("no_such_option = 1\n")
    with pytest.raises(SettingError, match="unknown option 'no_such_option'"):
        resolve(_args("--config", str(toml)), {})
    toml.write_text("node_id = [\n")
    with pytest.raises(SettingError, match="not valid TOML"):
        resolve(_args("--config", str(toml)), {})
    with pytest.raises(SettingError, match="--checkpoint-compression"):
        resolve(_args(), {"CREMA_CHECKPOINT_COMPRESSION": "maybe"})


def test_help_documents_every_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--node-id", "--peer-addr", "--checkpoint-interval", "--raft-fsync",
                 "--requirepass", "--cluster-secret", "--read-mode", "--log-level"):  # fmt: skip
        assert flag in out
    assert out.count("(default:") >= 20


# ------------------------------------------------------------------ one process


def test_single_node_from_toml_and_environment_then_sigterm(tmp_path: Path) -> None:
    client_port, peer_port, admin_port = free_ports(3)
    toml = tmp_path / "crema.toml"
    toml.write_text(
        f'client_addr = "127.0.0.1:{client_port}"\npeer_addr = "127.0.0.1:{peer_port}"\n'
        f'admin_addr = "127.0.0.1:{admin_port}"\ndata_dir = "{tmp_path / "data"}"\n'
        "[raft]\ntick_ms = 20\n"
    )
    node = ServeNode(1, client_port, peer_port, admin_port, tmp_path / "data",
                     ["--config", str(toml), "--node-id", "1"],
                     extra_env={"CREMA_REQUIREPASS": "s3cret",
                                "CREMA_EVENT_LOOP": "asyncio"})  # fmt: skip
    try:
        node.start()
        deadline = time.monotonic() + 30
        while True:
            try:
                with node.client(password="s3cret", socket_timeout=1) as client:
                    client.ping()
                break
            except redis.RedisError:
                assert node.running() and time.monotonic() < deadline
                time.sleep(0.05)
        with node.client() as anonymous, pytest.raises(redis.AuthenticationError):
            anonymous.get("k")
        with node.client(password="s3cret") as client:
            deadline = time.monotonic() + 30
            while True:  # the single node elects itself
                try:
                    assert client.set("k", "v")
                    break
                except redis.RedisError:
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
            assert client.get("k") == b"v"
        assert node.proc is not None
        node.proc.send_signal(signal.SIGTERM)
        assert node.proc.wait(30) == 0
        log = node.log_path.read_text()
        assert f"ready: RESP on 127.0.0.1:{client_port}" in log
        assert "loop asyncio" in log  # plain asyncio when asked for
        assert "stopped (WAL flushed)" in log
    finally:
        node.kill()


# ------------------------------------------------------------------ a 3-node cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    local = LocalCluster(tmp_path_factory.mktemp("serve-cluster"), extra_args=FAST)
    try:
        local.start_all()
        local.wait_leader()
        yield local
    finally:
        codes = local.stop_all()
    assert all(code == 0 for code in codes.values()), codes


def _follower(cluster: LocalCluster) -> ServeNode:
    leader = cluster.wait_leader()
    return next(n for n in cluster.nodes if n is not leader)


def test_redis_py_writes_through_a_follower_and_reads_everywhere(cluster: LocalCluster) -> None:
    with _follower(cluster).client() as client:
        pipe = client.pipeline(transaction=False)
        for i in range(200):
            pipe.set(f"py:{i}", i)
        assert all(pipe.execute())
        assert client.incr("py:counter") == 1
    for node in cluster.nodes:
        with node.client() as client:
            assert client.get("py:199") == b"199"
            assert client.get("py:counter") == b"1"
            assert client.mget([f"py:{i}" for i in range(200)]) == [
                str(i).encode() for i in range(200)
            ]


@pytest.mark.parametrize("role", ["leader", "follower"])
def test_pipelined_writes_keep_order_and_survive_an_error(cluster: LocalCluster, role: str) -> None:
    leader = cluster.wait_leader()
    node = leader if role == "leader" else _follower(cluster)
    key = f"pipe:{role}"
    with node.client() as client:
        pipe = client.pipeline(transaction=False)
        for i in range(300):
            pipe.incr(key)
            if i == 150:
                pipe.set(f"{key}:text", "abc")
                pipe.incr(f"{key}:text")  # fails in the middle of the pipeline
            if i % 50 == 49:
                pipe.get(key)  # reads the connection's own writes before it
        results = pipe.execute(raise_on_error=False)
    incrs = [r for r in results if type(r) is int]
    assert incrs == list(range(1, 301))  # applied and answered in order
    assert [r for r in results if isinstance(r, bytes)] == [str(n).encode() for n in
                                                              range(50, 301, 50)]  # fmt: skip
    errors = [r for r in results if isinstance(r, redis.ResponseError)]
    assert len(errors) == 1 and "not an integer" in str(errors[0])
    assert sum(r is True for r in results) == 1  # the SET
    for other in cluster.nodes:
        with other.client() as client:
            assert client.get(key) == b"300"


def test_cluster_runs_on_uvloop_when_installed(cluster: LocalCluster) -> None:
    pytest.importorskip("uvloop")
    cluster.wait_leader()
    for node in cluster.nodes:
        assert "loop uvloop" in node.log_path.read_text()


def test_redis_cli_against_the_cluster(cluster: LocalCluster) -> None:
    if shutil.which("redis-cli") is None:
        pytest.skip("redis-cli not installed (apt-get install redis-tools)")
    port = str(_follower(cluster).client_port)

    def cli(*args: str) -> str:
        result = subprocess.run(["redis-cli", "-p", port, *args], capture_output=True,
                                text=True, timeout=30, check=True)  # fmt: skip
        return result.stdout.strip()

    assert cli("SET", "cli:key", "hello") == "OK"
    assert cli("GET", "cli:key") == "hello"
    assert "role" in cli("CREMA.STATUS")
    assert cli("--no-raw", "INCRBY", "cli:n", "5") == "(integer) 5"


def _http(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_admin_metrics_health_status(cluster: LocalCluster) -> None:
    node = _follower(cluster)
    with node.client() as client:
        client.set("m:1", "x")
        client.get("m:1")
        client.get("m:missing")
    base = f"http://127.0.0.1:{node.admin_port}"
    code, body = _http(base + "/metrics")
    assert code == 200
    for name in ("crema_cache_hits_total", "crema_cache_misses_total", "crema_cache_entries",
                 "crema_raft_term", "crema_raft_commit_index", "crema_raft_applied_index",
                 "crema_raft_leader_changes_total", "crema_checkpoint_last_index",
                 "crema_checkpoints_created_total", "crema_recovery_duration_seconds",
                 "crema_cache_bytes", "crema_raft_proposals_total",
                 "crema_forwarded_writes_total", "crema_checkpoint_last_size_bytes",
                 "crema_recovery_entries_replayed"):  # fmt: skip
        assert f"\n{name} " in body, name
    assert 'crema_commands_total{command="set",result="ok"}' in body
    assert 'crema_write_duration_seconds_bucket{le="+Inf"}' in body
    assert "crema_read_barrier_wait_seconds_count" in body
    assert "crema_checkpoint_duration_seconds_count" in body
    assert "\ncrema_forwarded_writes_total 0.0\n" not in body  # the follower forwarded the SET
    code, body = _http(base + "/health")
    assert (code, body.strip()) == (200, "ok")
    code, body = _http(base + "/status")
    status = json.loads(body)
    assert code == 200 and status["node_id"] == node.node_id and status["role"] == "follower"
    assert _http(base + "/nope")[0] == 404


def test_health_is_503_without_a_leader(tmp_path: Path) -> None:
    # one node of a 2-node cluster alone never gets a leader
    client_port, peer_port, admin_port, other = free_ports(4)
    node = ServeNode(1, client_port, peer_port, admin_port, tmp_path / "n1", [
        "--client-addr", f"127.0.0.1:{client_port}", "--admin-addr", f"127.0.0.1:{admin_port}",
        "--peers", f"1=127.0.0.1:{peer_port},2=127.0.0.1:{other}",
        "--data-dir", str(tmp_path / "n1"), "--storage", "memory", "--raft-write-timeout", "1",
    ])  # fmt: skip
    try:
        node.start()
        node.wait_ready()
        code, body = _http(f"http://127.0.0.1:{admin_port}/health")
        assert code == 503 and "no leader" in body
        with node.client() as client, pytest.raises(redis.exceptions.TryAgainError):
            client.set("k", "v")
        assert node.terminate() == 0
    finally:
        node.kill()


def test_demo_runs_and_leaves_nothing_running(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "crema", "demo", "--keys", "3000", "--dir", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "is the new leader" in out
    assert "recovered: snapshot at index" in out
    assert "node 1 exited 0, node 2 exited 0, node 3 exited 0" in out
    assert "nothing left running" in out


def test_docs_toml_example_resolves(tmp_path: Path) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "serve.md").read_text()
    example = doc.split("```toml\n", 1)[1].split("```", 1)[0]
    parsed = tomllib.loads(example)
    assert parsed["node_id"] == 2
    path = tmp_path / "crema.toml"
    path.write_text(example)
    values = resolve(_args("--config", str(path)), {"CREMA_REQUIREPASS": "env"})
    assert values["requirepass"] == "change-me"  # the file wins over the environment
    config = cache_config(values)
    assert config.checkpoints.max_snapshots == 3
    assert config.raft_config.write_timeout_s == 2.0


def test_redis_py_asyncio_through_every_node(cluster: LocalCluster) -> None:
    async def run() -> None:
        clients = [aioredis.Redis(port=n.client_port) for n in cluster.nodes]
        try:
            await asyncio.gather(*(c.set(f"aio:{i}", i) for i, c in enumerate(clients)))
            for client in clients:
                values = await client.mget([f"aio:{i}" for i in range(len(clients))])
                assert values == [str(i).encode() for i in range(len(clients))]
        finally:
            for client in clients:
                await client.aclose()

    asyncio.run(run())


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")
def test_peer_tls_cluster(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-nodes", "-days", "1", "-subj", "/CN=crema-test",
         "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    assert main(["serve", "--peer-tls-cert", str(cert)]) == 2
    assert "--peer-tls-key: needed with --peer-tls-cert" in capsys.readouterr().err
    tls = ("--peer-tls-cert", str(cert), "--peer-tls-key", str(key), "--peer-tls-ca", str(cert))
    local = LocalCluster(tmp_path / "tls", extra_args=(*FAST, *tls))
    try:
        local.start_all()
        leader = local.wait_leader()
        follower = next(n for n in local.nodes if n is not leader)
        with follower.client() as client:
            assert client.set("tls:k", "v")
        for node in local.nodes:
            with node.client() as client:
                assert client.get("tls:k") == b"v"
    finally:
        codes = local.stop_all()
    assert all(code == 0 for code in codes.values()), codes


def test_max_capacity_evicts_the_least_recently_written(tmp_path: Path) -> None:
    node = single_node(tmp_path, "--max-capacity", "100")
    node.start()
    try:
        node.wait_ready()
        with node.client() as client:
            for i in range(150):
                client.set(f"k{i}", i)
            client.set("k0", "again")  # written last: the newest entry
            client.set("k150", 150)
            assert client.dbsize() == 100
            assert client.get("k0") == b"again"
            assert client.get("k150") == b"150"
            assert client.exists("k1", "k51") == 0  # the oldest writes went first
            assert client.exists("k52", "k149") == 2
        assert node.status()["max_capacity"] == 100
    finally:
        assert node.terminate() == 0


def test_fit_max_clients_raises_the_soft_limit_when_it_can() -> None:
    saved = resource.getrlimit(resource.RLIMIT_NOFILE)
    hard = saved[1]
    if hard != resource.RLIM_INFINITY and hard < 2000:
        pytest.skip("hard open-files limit too low here")
    resource.setrlimit(resource.RLIMIT_NOFILE, (300, hard))  # the soft one only: reversible
    try:
        assert fit_max_clients(1000, 2) == 1000
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == 1000 + 64 + 8
        assert fit_max_clients(5, 0) == 5  # fits already: nothing changes
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, saved)


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="prlimit (util-linux) not installed")
def test_a_low_open_files_limit_caps_clients_instead_of_failing(tmp_path: Path) -> None:
    node = single_node(tmp_path)
    node.launcher = ["prlimit", "--nofile=200:200", "--"]
    node.start()
    try:
        node.wait_ready()
        socks = []
        refused = 0
        for _ in range(150):  # more than fit in 200 descriptors less the 64 reserved
            sock = socket.create_connection(("127.0.0.1", node.client_port), timeout=10)
            socks.append(sock)
            sock.sendall(b"PING\r\n")
            reply = sock.recv(100)
            refused += reply.startswith(b"-ERR max number of clients reached")
            assert reply in (b"+PONG\r\n", b"-ERR max number of clients reached\r\n"), reply
        assert refused == 150 - 136
        for sock in socks:
            sock.close()
        with node.client() as client:  # still serving, and writing its WAL
            for i in range(50):
                assert client.set(f"fd{i}", "x") is True
        log = node.log_path.read_text()
        assert "serving at most 136 clients instead of 10000" in log
        assert "Too many open files" not in log
    finally:
        assert node.terminate() == 0

"""``crema cluster ...`` and ``crema snapshot create/restore`` against ``crema serve`` processes.

Called through ``crema.cli.main(argv)``; every process started is stopped by
PID in a fixture teardown or a ``finally``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from crema.cli import main
from crema.cli.local_cluster import LocalCluster, ServeNode, free_ports

pytestmark = pytest.mark.timeout(120)

FAST = ("--raft-tick-ms", "20")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    local = LocalCluster(tmp_path_factory.mktemp("cli-cluster"), extra_args=FAST)
    try:
        local.start_all()
        local.wait_leader()
        yield local
    finally:
        local.stop_all()


def _addr(node: ServeNode) -> str:
    return f"127.0.0.1:{node.client_port}"


def test_status_table_and_json(cluster: LocalCluster, capsys: pytest.CaptureFixture[str]) -> None:
    leader = cluster.wait_leader()
    assert main(["cluster", "status", "--addr", _addr(leader)]) == 0
    out = capsys.readouterr().out
    assert "role" in out and "leader" in out and "voters" in out and "1, 2, 3" in out
    assert main(["cluster", "status", "--addr", _addr(leader), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["role"] == "leader" and status["voters"] == [1, 2, 3]


def test_errors_are_one_line(cluster: LocalCluster, capsys: pytest.CaptureFixture[str]) -> None:
    (port,) = free_ports(1)
    assert main(["cluster", "status", "--addr", f"127.0.0.1:{port}", "--timeout", "2"]) == 1
    assert main(["cluster", "status", "--addr", "nohost"]) == 2
    assert main(["cluster", "remove-node", "0", "--addr", _addr(cluster.nodes[0])]) == 2
    assert main(["cluster", "add-node", "7", "bad", "--addr", _addr(cluster.nodes[0])]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 4, err
    assert "cannot reach" in err and "--addr" in err


def test_snapshot_create(cluster: LocalCluster, capsys: pytest.CaptureFixture[str]) -> None:
    node = cluster.nodes[1]
    with node.client() as client:
        client.set("snap:k", "v")
    assert main(["snapshot", "create", "--addr", _addr(node), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert Path(info["path"]).is_file() and info["index"] >= 1 and info["size"] > 0


def test_transfer_leader(cluster: LocalCluster, capsys: pytest.CaptureFixture[str]) -> None:
    leader = cluster.wait_leader()
    target = next(n for n in cluster.nodes if n is not leader)
    assert main(["cluster", "transfer-leader", str(target.node_id), "--addr", _addr(leader)]) == 0
    assert f"node {target.node_id} is the leader" in capsys.readouterr().out
    assert cluster.wait_leader() is target


def test_add_and_remove_a_learner(
    cluster: LocalCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    leader = cluster.wait_leader()
    with leader.client() as client:
        client.set("learner:k", "before")
    client_port, peer_port, admin_port = free_ports(3)
    peers = ",".join(f"{n.node_id}=127.0.0.1:{n.peer_port}" for n in cluster.nodes)
    node = ServeNode(4, client_port, peer_port, admin_port, tmp_path / "node-4", [
        "--node-id", "4", "--client-addr", f"127.0.0.1:{client_port}",
        "--peer-addr", f"127.0.0.1:{peer_port}", "--admin-addr", "off",
        "--peers", peers, "--data-dir", str(tmp_path / "node-4"),
        "--cluster-secret", "crema-local-cluster", "--min-free-bytes", "0", *FAST,
    ])  # fmt: skip
    try:
        node.start()
        node.wait_ready()
        argv = ["cluster", "add-node", "4", f"127.0.0.1:{peer_port}", "--learner"]
        assert main([*argv, "--addr", _addr(leader)]) == 0
        assert "added as a learner" in capsys.readouterr().out
        deadline = time.monotonic() + 30
        with node.client() as client:
            client.execute_command("CREMA.READMODE", "local")
            while client.get("learner:k") != b"before":
                assert time.monotonic() < deadline, "the learner never caught up"
                time.sleep(0.05)
        assert 4 in cluster.wait_leader().status()["learners"]
        assert main(["cluster", "remove-node", "4", "--addr", _addr(leader)]) == 0
        deadline = time.monotonic() + 30
        while 4 in cluster.wait_leader().status()["learners"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        node.terminate()


def test_snapshot_restore_seeds_a_new_cluster(
    cluster: LocalCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    leader = cluster.wait_leader()
    with leader.client() as client:
        client.mset({f"backup:{i}": str(i) for i in range(500)})
    assert main(["snapshot", "create", "--addr", _addr(leader), "--json"]) == 0
    backup = Path(json.loads(capsys.readouterr().out)["path"])

    fresh = LocalCluster(tmp_path / "restored", extra_args=FAST)
    peers = ",".join(f"{n.node_id}=127.0.0.1:{n.peer_port}" for n in fresh.nodes)
    for node in fresh.nodes:
        argv = ["snapshot", "restore", str(backup), "--data-dir", str(node.data_dir),
                "--node-id", str(node.node_id), "--peers", peers]  # fmt: skip
        assert main(argv) == 0
    assert main(argv) == 2  # the data dir now exists: refused
    assert "refusing" in capsys.readouterr().err
    try:
        fresh.start_all()
        new_leader = fresh.wait_leader()
        with new_leader.client() as client:
            assert client.get("backup:499") == b"499"
            assert client.set("after-restore", "1")
        with fresh.nodes[0].client() as client:
            assert client.get("after-restore") == b"1"
    finally:
        codes = fresh.stop_all()
    assert all(code == 0 for code in codes.values()), codes

"""``crema serve`` on a disk that fills up: clear errors, a clean exit, nothing acknowledged lost.

The node's data directory is a small tmpfs the test mounts (root only;
skipped elsewhere). redis-py writes 100 KB values until the WAL cannot take
more. The test checks that the failing write gets an error reply (not a hang
or a dropped connection), that ``/health`` turns 503 or the process is gone,
that the process exits with status 1 and one log line naming the cause, and
that after the disk grows the restarted node has every acknowledged write.
"""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from crema.cli.local_cluster import ServeNode, single_node
from tests.tmpfs import mounted_tmpfs

pytestmark = pytest.mark.timeout(120)

VALUE = b"v" * 100_000


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 6 MiB tmpfs (root only; skipped where mounting is impossible)."""
    with mounted_tmpfs(tmp_path / "mnt", "6m") as mount_point:
        yield mount_point


def _health(node: ServeNode) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{node.admin_port}/health", timeout=5):
            return 200
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None  # the process is gone


def test_a_full_disk_stops_the_node_cleanly_and_loses_nothing(tmp_path: Path, tmpfs: Path) -> None:
    node = single_node(tmp_path / "logs", "--raft-write-timeout", "3", data_dir=tmpfs / "node-1")
    node.start()
    try:
        node.wait_ready()
        client = node.client(socket_timeout=10)
        acked: list[str] = []
        error: redis.RedisError | None = None
        for i in range(200):  # 20 MB: far more than the 6 MiB disk
            try:
                assert client.set(f"k{i}", VALUE) is True
            except redis.RedisError as exc:
                error = exc
                break
            acked.append(f"k{i}")
        assert isinstance(error, redis.ResponseError), repr(error)  # a reply, not a reset
        assert str(error).startswith(("UNKNOWN", "TRYAGAIN")), str(error)
        assert _health(node) in (503, None)
        assert node.proc is not None
        assert node.proc.wait(timeout=30) == 1
        log = node.log_path.read_text()
        assert "No space left on device" in log and "exit status 1" in log, log[-2000:]
        assert "BufferError" not in log, log[-2000:]  # the first failure is the only one
        assert len(acked) > 5

        subprocess.run(["mount", "-o", "remount,size=64m", str(tmpfs)], check=True)
        node.start()
        node.wait_ready()
        with node.client(socket_timeout=10) as again:
            for key in acked:
                assert again.get(key) == VALUE, key
            assert again.set("after", b"x") is True
    finally:
        node.terminate()

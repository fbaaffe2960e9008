"""``crema demo``: a guided tour of a local 3-node cluster, driven with redis-py.

Starts three ``crema serve`` processes, writes keys (pipelined, a few with a
short TTL), shows the cluster status, checkpoints every node, SIGKILLs the
leader, shows the new leader and every key still readable, writes more,
restarts the killed node and shows it recovering from its snapshot plus log,
waits for the TTL to expire on every node, then stops every process it
started (also on an error or Ctrl-C).
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import redis

from crema.cli.local_cluster import LocalCluster, ServeNode, decoded, pairs

TTL_SECONDS = 8
BATCH = 1000


def _step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def _status_table(cluster: LocalCluster) -> None:
    print(f"{'node':>4} {'pid':>7} {'RESP':>6} {'role':<10} {'term':>4} {'commit':>8} "
          f"{'applied':>8} {'snapshot':>8}  leader")  # fmt: skip
    for node in cluster.nodes:
        if not node.running():
            print(f"{node.node_id:>4} {'-':>7} {node.client_port:>6} (stopped)")
            continue
        s = node.status()
        print(f"{node.node_id:>4} {node.pid:>7} {node.client_port:>6} {s['role']:<10} "
              f"{s['term']:>4} {s['commit_index']:>8} {s['applied_index']:>8} "
              f"{s['last_snapshot_index']:>8}  {s['leader_id']}")  # fmt: skip


def _value(i: int) -> bytes:
    return b"value-%d" % i


def _write(client: redis.Redis, keys: int, ttl_every: int) -> tuple[int, float]:
    """Write ``keys`` keys: MSETs of 1000 keys, and every ``ttl_every``-th with SET EX.

    A connection runs its commands one after the other (as Redis does), each
    write waiting for its Raft commit; MSET puts 1000 keys in one log entry.
    """
    started = time.monotonic()
    ttl_keys = [i for i in range(keys) if i % ttl_every == 0]
    pipe = client.pipeline(transaction=False)
    for i in ttl_keys:
        pipe.set(b"ttl:%d" % i, _value(i), ex=TTL_SECONDS)
    pipe.execute()
    for base in range(0, keys, BATCH):
        chunk = {b"key:%d" % i: _value(i) for i in range(base, min(base + BATCH, keys))}
        for i in range(base, min(base + BATCH, keys)):
            if i % ttl_every == 0:
                del chunk[b"key:%d" % i]
        client.mset(chunk)
    return len(ttl_keys), time.monotonic() - started


def _verify(client: redis.Redis, keys: int, ttl_every: int) -> int:
    """How many of the permanent keys read back with their value."""
    good = 0
    wanted = [i for i in range(keys) if i % ttl_every != 0]
    for base in range(0, len(wanted), BATCH):
        chunk = wanted[base : base + BATCH]
        values = client.mget([b"key:%d" % i for i in chunk])
        good += sum(1 for i, v in zip(chunk, values, strict=True) if v == _value(i))
    return good


def _live_ttl_keys(node: ServeNode, keys: int, ttl_every: int) -> int:
    with node.client() as client:
        client.execute_command("CREMA.READMODE", "local")
        names = [b"ttl:%d" % i for i in range(0, keys, ttl_every)]
        return sum(client.exists(*names[b : b + BATCH]) for b in range(0, len(names), BATCH))


def _recovery_lines(node: ServeNode, offset: int, wait: float = 3.0) -> list[str]:
    """The node's 'opened' and 'recovered' log lines written since ``offset``."""
    deadline = time.monotonic() + wait
    while True:
        text = node.log_path.read_bytes()[offset:].decode(errors="replace")
        found = re.findall(r"(opened in .*|recovered: .*)", text)
        if len(found) >= 2 or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def _wait_caught_up(node: ServeNode, index: int, timeout: float = 60.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if node.status()["applied_index"] >= index:
                return time.monotonic() - started
        except redis.RedisError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"node {node.node_id} did not reach index {index} in {timeout} s")


class Tour:
    """The guided tour, one method per step; each raises on anything unexpected."""

    def __init__(self, cluster: LocalCluster, keys: int) -> None:
        self.cluster = cluster
        self.keys = keys
        self.ttl_every = max(100, keys // 200)
        self.with_ttl = 0
        self.expires_at = 0.0

    def run(self) -> None:
        leader = self.start()
        self.write(next(n for n in self.cluster.nodes if n is not leader))
        _step("Cluster status (CREMA.STATUS on each node)")
        _status_table(self.cluster)
        self.checkpoint_all()
        self.write_more(leader, b"late", "after the checkpoints (only in the log)")
        killed, leader = self.kill_leader(leader)
        self.verify(next(n for n in self.cluster.live() if n is not leader))
        self.restart(killed, leader)
        self.expire()

    def start(self) -> ServeNode:
        _step("Starting 3 nodes: three `crema serve` processes")
        t0 = time.monotonic()
        self.cluster.start_all()
        leader = self.cluster.wait_leader()
        for node in self.cluster.nodes:
            print(f"node {node.node_id}: pid {node.pid}, redis-cli -p {node.client_port}, "
                  f"http://127.0.0.1:{node.admin_port}/metrics, log {node.log_path}")  # fmt: skip
        print(f"node {leader.node_id} leads after {time.monotonic() - t0:.1f} s")
        return leader

    def write(self, node: ServeNode) -> None:
        _step(f"Writing {self.keys:,} keys through node {node.node_id} (a follower: it forwards)")
        with node.client() as client:
            self.with_ttl, took = _write(client, self.keys, self.ttl_every)
        self.expires_at = time.monotonic() + TTL_SECONDS
        print(f"wrote {self.keys:,} keys in {took:.1f} s ({self.keys / took:,.0f}/s, "
              f"MSETs of {BATCH}); {self.with_ttl} of them (SET EX) expire in "
              f"{TTL_SECONDS} s")  # fmt: skip

    def checkpoint_all(self) -> None:
        _step("Forcing a checkpoint on each node (CREMA.CHECKPOINT)")
        for node in self.cluster.nodes:
            with node.client() as client:
                raw = pairs(client.execute_command("CREMA.CHECKPOINT"))
            reply = {k: decoded(v) for k, v in raw.items()}
            print(f"node {node.node_id}: snapshot at index {reply['index']}, "
                  f"{reply['entries']:,} entries, {reply['size']:,} bytes -> "
                  f"{Path(reply['path']).name}")  # fmt: skip

    def write_more(self, node: ServeNode, prefix: bytes, when: str) -> None:
        _step(f"Writing 2,000 '{prefix.decode()}:*' keys {when}, in MSETs of 100")
        with node.client() as client:
            for base in range(0, 2000, 100):
                client.mset({b"%s:%d" % (prefix, i): _value(i) for i in range(base, base + 100)})

    def kill_leader(self, leader: ServeNode) -> tuple[ServeNode, ServeNode]:
        _step(f"Killing the leader, node {leader.node_id} (SIGKILL, pid {leader.pid})")
        t0 = time.monotonic()
        leader.kill()
        new = self.cluster.wait_leader(exclude=leader.node_id)
        print(f"node {new.node_id} is the new leader after {time.monotonic() - t0:.1f} s")
        _status_table(self.cluster)
        return leader, new

    def verify(self, node: ServeNode) -> None:
        _step(f"Reading every key back through node {node.node_id} (linearizable reads)")
        t0 = time.monotonic()
        with node.client() as client:
            good = _verify(client, self.keys, self.ttl_every)
            dbsize = client.dbsize()
            late = client.mget([b"late:%d" % i for i in range(2000)])
        good += sum(1 for i, v in enumerate(late) if v == _value(i))
        expected = self.keys - self.with_ttl + 2000
        print(f"{good:,}/{expected:,} permanent keys read back with their value in "
              f"{time.monotonic() - t0:.1f} s; DBSIZE {dbsize:,}")  # fmt: skip
        if good != expected:
            raise RuntimeError(f"only {good} of {expected} keys survived the leader's death")

    def restart(self, killed: ServeNode, leader: ServeNode) -> None:
        self.write_more(leader, b"after", f"while node {killed.node_id} is down")
        target = leader.status()["commit_index"]
        _step(f"Restarting node {killed.node_id}: its snapshot + its own log, then catch-up")
        offset = killed.log_path.stat().st_size
        t0 = time.monotonic()
        killed.start()
        killed.wait_ready(60)
        ready = time.monotonic() - t0
        caught = _wait_caught_up(killed, target)
        print(f"node {killed.node_id} (pid {killed.pid}) answered PING after {ready:.1f} s and "
              f"caught up to index {target} {caught:.1f} s later")  # fmt: skip
        for line in _recovery_lines(killed, offset):
            print(f"  its log: {line}")
        with killed.client() as client:
            client.execute_command("CREMA.READMODE", "local")
            after = sum(1 for v in client.mget([b"after:%d" % i for i in range(2000)]) if v)
            print(f"node {killed.node_id} has {after:,}/2,000 of the keys written while it was "
                  f"down; DBSIZE {client.dbsize():,}")  # fmt: skip
        if after != 2000:
            raise RuntimeError(f"node {killed.node_id} missed writes made while it was down")
        self.cluster.wait_leader()
        _status_table(self.cluster)

    def expire(self) -> None:
        _step(f"Waiting for the {self.with_ttl} short-TTL keys to expire on every node")
        time.sleep(max(0.0, self.expires_at - time.monotonic()) + 0.2)
        counts = {n.node_id: _live_ttl_keys(n, self.keys, self.ttl_every)
                  for n in self.cluster.nodes}  # fmt: skip
        print("live short-TTL keys per node (local reads): "
              + ", ".join(f"node {i}: {c}" for i, c in counts.items()))  # fmt: skip
        if any(counts.values()):
            raise RuntimeError("short-TTL keys still visible after their expiry")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_cluster_demo(args: argparse.Namespace) -> int:
    """``crema demo``: run the tour; stop every process started, whatever happens."""
    keys = args.keys
    if keys < 100:
        print("crema demo: error: --keys: must be >= 100", file=sys.stderr)
        return 2
    created = args.dir is None
    directory = Path(tempfile.mkdtemp(prefix="crema-demo-")) if created else Path(args.dir)
    if not created and directory.exists() and any(directory.iterdir()):
        print(f"crema demo: error: --dir: {directory} is not empty", file=sys.stderr)
        return 2
    cluster = LocalCluster(directory)
    started = time.monotonic()
    previous = signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM stops the nodes too
    failed = True
    try:
        print(f"crema cluster demo: data and logs in {directory}")
        Tour(cluster, keys).run()
        failed = False
    except (RuntimeError, TimeoutError, OSError, redis.RedisError) as exc:
        print(f"\nDEMO FAILED: {exc} (node logs in {directory})")
    finally:
        _step("Stopping every process started (SIGTERM)")
        codes = cluster.stop_all()
        signal.signal(signal.SIGTERM, previous)
        print(", ".join(f"node {i} exited {c}" for i, c in codes.items()))
        if created and not failed:
            shutil.rmtree(directory, ignore_errors=True)
    if failed:
        return 1
    print(f"\nDone in {time.monotonic() - started:.0f} s; nothing left running.")
    print("Run a cluster by hand: see README.md, 'A 3-node cluster by hand'.")
    return 0

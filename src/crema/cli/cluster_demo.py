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
        client.mset(chunk)  # type: ignore[arg-type]
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


def _recovery_line(node: ServeNode, offset: int) -> str:
    text = node.log_path.read_bytes()[offset:].decode(errors="replace")
    found = re.findall(r"recovered: (.*)", text)
    return found[-1] if found else "(replay line not logged yet)"


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


def tour(cluster: LocalCluster, keys: int) -> None:
    """The guided tour proper; raises on anything unexpected."""
    ttl_every = max(100, keys // 200)
    _step("Starting 3 nodes: three `crema serve` processes")
    t0 = time.monotonic()
    cluster.start_all()
    leader = cluster.wait_leader()
    for node in cluster.nodes:
        print(f"node {node.node_id}: pid {node.pid}, redis-cli -p {node.client_port}, "
              f"http://127.0.0.1:{node.admin_port}/metrics, log {node.log_path}")  # fmt: skip
    print(f"node {leader.node_id} leads after {time.monotonic() - t0:.1f} s")

    follower = next(n for n in cluster.nodes if n is not leader)
    _step(f"Writing {keys:,} keys through node {follower.node_id} (a follower: it forwards)")
    with follower.client() as client:
        with_ttl, took = _write(client, keys, ttl_every)
    expires_at = time.monotonic() + TTL_SECONDS
    print(f"wrote {keys:,} keys in {took:.1f} s ({keys / took:,.0f}/s, MSETs of {BATCH}); "
          f"{with_ttl} of them expire in {TTL_SECONDS} s")  # fmt: skip

    _step("Cluster status (CREMA.STATUS on each node)")
    _status_table(cluster)

    _step("Forcing a checkpoint on each node (CREMA.CHECKPOINT)")
    for node in cluster.nodes:
        with node.client() as client:
            reply = {k: decoded(v) for k, v in pairs(client.execute_command("CREMA.CHECKPOINT")).items()}
        print(f"node {node.node_id}: snapshot at index {reply['index']}, {reply['entries']:,} "
              f"entries, {reply['size']:,} bytes -> {Path(reply['path']).name}")  # fmt: skip

    _step(f"Killing the leader, node {leader.node_id} (SIGKILL, pid {leader.pid})")
    killed = leader
    t0 = time.monotonic()
    killed.kill()
    leader = cluster.wait_leader(exclude=killed.node_id)
    print(f"node {leader.node_id} is the new leader after {time.monotonic() - t0:.1f} s")
    _status_table(cluster)

    reader = next(n for n in cluster.live() if n is not leader)
    _step(f"Reading every key back through node {reader.node_id} (linearizable reads)")
    t0 = time.monotonic()
    with reader.client() as client:
        good = _verify(client, keys, ttl_every)
        dbsize = client.dbsize()
    expected = keys - with_ttl
    print(f"{good:,}/{expected:,} permanent keys read back with their value in "
          f"{time.monotonic() - t0:.1f} s; DBSIZE {dbsize:,}")  # fmt: skip
    if good != expected:
        raise RuntimeError(f"only {good} of {expected} keys survived the leader's death")

    _step("Writing 2,000 more keys while node %d is down" % killed.node_id)
    with leader.client() as client:
        for base in range(0, 2000, 100):
            client.mset({b"after:%d" % i: _value(i) for i in range(base, base + 100)})
        target = leader.status()["commit_index"]

    _step(f"Restarting node {killed.node_id}: snapshot + its own log, then catch-up")
    offset = killed.log_path.stat().st_size
    t0 = time.monotonic()
    killed.start()
    killed.wait_ready(60)
    ready = time.monotonic() - t0
    caught = _wait_caught_up(killed, target)
    print(f"node {killed.node_id} (pid {killed.pid}) answered PING after {ready:.1f} s and "
          f"caught up to index {target} {caught:.1f} s later")  # fmt: skip
    print(f"its log says: {_recovery_line(killed, offset)}")
    with killed.client() as client:
        client.execute_command("CREMA.READMODE", "local")
        after = sum(1 for v in client.mget([b"after:%d" % i for i in range(2000)]) if v)
        print(f"node {killed.node_id} has all {after:,}/2,000 keys written while it was down; "
              f"DBSIZE {client.dbsize():,}")  # fmt: skip
    cluster.wait_leader()
    _status_table(cluster)

    _step(f"Waiting for the {with_ttl} short-TTL keys to expire on every node")
    time.sleep(max(0.0, expires_at - time.monotonic()) + 0.2)
    counts = {n.node_id: _live_ttl_keys(n, keys, ttl_every) for n in cluster.nodes}
    print("live short-TTL keys per node (local reads): "
          + ", ".join(f"node {i}: {c}" for i, c in counts.items()))  # fmt: skip
    if any(counts.values()):
        raise RuntimeError("short-TTL keys still visible after their expiry")


def run_cluster_demo(args: argparse.Namespace) -> int:
    """``crema demo``: run the tour; stop every process started, whatever happens."""
    keys = args.keys
    if keys < 100:
        print("crema demo: error: --keys: must be >= 100")
        return 2
    created = args.dir is None
    directory = Path(tempfile.mkdtemp(prefix="crema-demo-")) if created else Path(args.dir)
    if not created and directory.exists() and any(directory.iterdir()):
        print(f"crema demo: error: --dir: {directory} is not empty")
        return 2
    cluster = LocalCluster(directory)
    started = time.monotonic()
    failed = True
    try:
        print(f"crema cluster demo: data and logs in {directory}")
        tour(cluster, keys)
        failed = False
    except (RuntimeError, TimeoutError, OSError, redis.RedisError) as exc:
        print(f"\nDEMO FAILED: {exc} (node logs in {directory})")
    finally:
        _step("Stopping every process started (SIGTERM)")
        codes = cluster.stop_all()
        print(", ".join(f"node {i} exited {c}" for i, c in codes.items()))
        if created and not failed:
            shutil.rmtree(directory, ignore_errors=True)
    if failed:
        return 1
    print(f"\nDone in {time.monotonic() - started:.0f} s; nothing left running.")
    print("Run a cluster by hand: see README.md, 'A 3-node cluster by hand'.")
    return 0

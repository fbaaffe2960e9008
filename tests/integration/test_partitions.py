"""Three ``crema serve`` processes, redis-py clients, a network that fails under them.

Every peer link goes through a loopback proxy the test controls
(:mod:`tests.integration.netproxy`). While redis-py clients SET, DEL and
(linearizable) GET a few keys through every node, a nemesis isolates the
leader, isolates a follower, cuts links one way only, black-holes or resets
connections, pauses the leader (SIGSTOP, then SIGCONT), and SIGKILLs and
restarts nodes, once all three at once (the killed follower stays down
until the leader compacted its log past it, so it catches up by installing
a snapshot while clients use it). Afterwards the network heals and the test
checks:

* the recorded history is linearizable (a write answered ``-TRYAGAIN`` is
  left out, as definitely not applied; one answered ``-UNKNOWN``, or whose
  connection failed, may or may not have taken effect);
* every write acknowledged with ``OK`` to a unique key is there at the end;
* the nodes converge: one leader, the same applied index, the same values;
* the cluster serves again after every fault (ten more acknowledged writes
  before the next one), and the killed follower installed a snapshot.

Clients make one attempt per operation (no retries inside redis-py), so each
recorded operation is exactly what the server was asked once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
import random
import signal
import time
from pathlib import Path
from typing import Any, cast

import pytest
import redis.asyncio as aioredis
from redis import exceptions as rexc
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from crema.cli.local_cluster import ServeNode, free_ports, serve_node
from tests.integration.netproxy import Network
from tests.sim.linearizability import Operation, check_history

pytestmark = pytest.mark.timeout(240)

KEYS = [f"k{i}" for i in range(4)]
CLIENTS = 6
FAULT_SECONDS = 2.5
WRITE_TIMEOUT = "2"
LOG_THRESHOLD = 300  # a snapshot every 300 entries ...
TRAILING = 50  # ... and the log compacted to 50 entries before it
SEED = int(os.environ.get("CREMA_CHAOS_SEED", "1234"))
"""The nemesis's choices (the fault order, victims, black hole or reset)."""


class Cluster:
    """Three serve processes whose peer links run through :class:`Network`."""

    def __init__(self, tmp: Path) -> None:
        ports = free_ports(9 + 6)
        ids = [1, 2, 3]
        self.peer_ports = {i: ports[3 + i - 1] for i in ids}
        self.net = Network(self.peer_ports, ports[9:])
        self.nodes: dict[int, ServeNode] = {}
        for i in ids:
            node_ports = (ports[i - 1], self.peer_ports[i], ports[6 + i - 1])
            self.nodes[i] = serve_node(
                i, node_ports, tmp / f"node-{i}",
                "--peers", self.net.seeds_of(i, self.peer_ports),
                "--cluster-secret", "partition-test",
                "--raft-tick-ms", "20",
                "--raft-election-ticks", "10",
                "--raft-write-timeout", WRITE_TIMEOUT,
                "--checkpoint-log-threshold", str(LOG_THRESHOLD),
                "--raft-trailing-entries", str(TRAILING),
            )  # fmt: skip

    def status(self, node: ServeNode) -> dict[str, Any] | None:
        try:
            return node.status()
        except (rexc.RedisError, OSError):
            return None

    async def leader(self, timeout: float = 30.0) -> int:
        """The leader every running node agrees on."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen = set()
            for node in self.nodes.values():
                if node.running():
                    status = await asyncio.to_thread(self.status, node)
                    seen.add(None if status is None else status.get("leader_id"))
            if len(seen) == 1 and None not in seen:
                return int(seen.pop())  # type: ignore[arg-type]
            await asyncio.sleep(0.1)
        raise AssertionError("the nodes did not agree on a leader")


class Workload:
    """Clients recording a history of puts, deletes and linearizable gets."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.history: list[Operation] = []
        self.acked: set[str] = set()
        self.outcomes: dict[str, int] = {}
        self.running = True
        self.start = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self.start

    def note(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    async def client(self, cid: int) -> None:
        rng = random.Random(cid)
        conns = {  # no retries inside redis-py: every attempt is one operation in the history
            i: aioredis.Redis(
                port=n.client_port,
                socket_timeout=6,
                socket_connect_timeout=2,
                retry=Retry(NoBackoff(), 0),
            )
            for i, n in self.cluster.nodes.items()
        }
        try:
            for n in itertools.count():
                if not self.running:
                    return
                await self._one(cid, n, conns[rng.choice(list(conns))], rng)
        finally:
            for conn in conns.values():
                with contextlib.suppress(Exception):
                    await conn.aclose()

    async def _one(self, cid: int, n: int, conn: aioredis.Redis, rng: random.Random) -> None:
        key = rng.choice(KEYS)
        roll = rng.random()
        kind = "get" if roll < 0.4 else ("delete" if roll < 0.5 else "put")
        written = f"c{cid}-{n}"
        value = written if kind == "put" else None
        call = self.now()
        try:
            if kind == "get":
                got = cast("bytes | None", await conn.get(key))
                value = None if got is None else got.decode()
            elif kind == "put":
                assert await conn.set(key, written) is True
                await self._unique(conn, f"u{cid}-{n}")
            else:
                await conn.delete(key)
        except rexc.TryAgainError:  # definitely not applied: not in the history
            self.note("TRYAGAIN")
            await asyncio.sleep(0.05)
            return
        except rexc.ResponseError as exc:
            assert str(exc).startswith("UNKNOWN"), f"unexpected error reply: {exc}"
            self.note("UNKNOWN")
            if kind != "get":
                self.history.append(Operation(cid, kind, key, value, call, math.inf))
            return
        except (rexc.ConnectionError, rexc.TimeoutError, OSError):
            self.note("connection")
            if kind != "get":
                self.history.append(Operation(cid, kind, key, value, call, math.inf))
            await asyncio.sleep(0.05)
            return
        self.note("ok")
        self.history.append(Operation(cid, kind, key, value, call, self.now()))

    async def _unique(self, conn: aioredis.Redis, key: str) -> None:
        try:
            if await conn.set(key, "1") is True:
                self.acked.add(key)
        except (rexc.RedisError, OSError):
            self.note("unique-failed")


async def nemesis(cluster: Cluster, work: Workload, rng: random.Random) -> list[str]:
    """Run each kind of fault once, in a random order, healing in between."""
    net, done = cluster.net, []
    faults = ["isolate-leader", "isolate-follower", "one-way", "kill-leader", "kill-follower",
              "pause-leader", "kill-all"]  # fmt: skip
    rng.shuffle(faults)
    for fault in faults:
        leader = await cluster.leader()
        follower = rng.choice([i for i in cluster.nodes if i != leader])
        mode = rng.choice(["stalled", "reset"])
        if fault == "isolate-leader":
            net.isolate(leader, mode)
        elif fault == "isolate-follower":
            net.isolate(follower, mode)
        elif fault == "one-way":  # the leader hears the follower, not the other way round
            net.cut_one_way(leader, follower, mode)
        elif fault == "pause-leader":  # SIGSTOP: a long pause, then it wakes up as it was
            cluster.nodes[leader].signal(signal.SIGSTOP)
        elif fault == "kill-all":  # every process at once (the OS keeps what they wrote)
            for node in cluster.nodes.values():
                node.kill()
        else:
            victim = cluster.nodes[leader if fault == "kill-leader" else follower]
            victim.kill()
        done.append(f"{fault}({leader}->{follower},{mode})")
        await asyncio.sleep(FAULT_SECONDS)
        if fault == "kill-follower":  # down until the leader compacted past it: an install
            await _advance(cluster, leader, 2 * LOG_THRESHOLD + TRAILING)
        net.heal()
        if fault == "pause-leader":
            cluster.nodes[leader].signal(signal.SIGCONT)
        for node in cluster.nodes.values():
            if not node.running():
                await asyncio.to_thread(node.start)
                await asyncio.to_thread(node.wait_ready, 30.0)
        acked = len(work.acked)
        deadline = time.monotonic() + 30
        while len(work.acked) < acked + 10:  # the cluster serves again before the next fault
            assert time.monotonic() < deadline, (done, work.outcomes)
            await asyncio.sleep(0.05)
        if fault == "kill-follower":  # it caught up by installing the leader's snapshot
            await _installed(cluster, follower)
    return done


async def _advance(cluster: Cluster, leader: int, entries: int, timeout: float = 60.0) -> None:
    """Wait until the leader's commit index has moved ``entries`` past where it is now."""
    node = cluster.nodes[leader]
    start = (await asyncio.to_thread(cluster.status, node) or {}).get("commit_index", 0)
    deadline = time.monotonic() + timeout
    while True:
        status = await asyncio.to_thread(cluster.status, node)
        if status is not None and status["commit_index"] >= start + entries:
            return
        assert time.monotonic() < deadline, f"the leader committed too little: {status}"
        await asyncio.sleep(0.1)


async def _installed(cluster: Cluster, node_id: int, timeout: float = 30.0) -> None:
    """Wait until the restarted node ``node_id`` has installed a snapshot from the leader."""
    deadline = time.monotonic() + timeout
    while True:
        status = await asyncio.to_thread(cluster.status, cluster.nodes[node_id])
        if status is not None and status["snapshots_installed"] >= 1:
            return
        assert time.monotonic() < deadline, f"node {node_id} installed no snapshot: {status}"
        await asyncio.sleep(0.1)


async def converged(cluster: Cluster, timeout: float = 30.0) -> dict[str, bytes | None]:
    """Wait until every node applied the same index; the keys' values, equal on all nodes."""
    deadline = time.monotonic() + timeout
    while True:
        statuses = [await asyncio.to_thread(cluster.status, n) for n in cluster.nodes.values()]
        applied = {None if s is None else s.get("applied_index") for s in statuses}
        if len(applied) == 1 and None not in applied:
            break
        assert time.monotonic() < deadline, statuses
        await asyncio.sleep(0.1)
    seen = []
    for node in cluster.nodes.values():
        conn = aioredis.Redis(port=node.client_port, socket_timeout=10)
        try:
            await conn.execute_command("CREMA.READMODE", "local")  # type: ignore[no-untyped-call]
            seen.append({k: cast("bytes | None", await conn.get(k)) for k in KEYS})
        finally:
            await conn.aclose()
    assert all(s == seen[0] for s in seen), seen
    return seen[0]


def test_partitions_and_crashes_keep_the_history_linearizable(tmp_path: Path) -> None:
    async def main() -> None:
        cluster = Cluster(tmp_path)
        await cluster.net.start()
        try:
            for node in cluster.nodes.values():
                node.start()
            for node in cluster.nodes.values():
                await asyncio.to_thread(node.wait_ready, 30.0)
            await cluster.leader()
            work = Workload(cluster)
            clients = [asyncio.create_task(work.client(c)) for c in range(CLIENTS)]
            await asyncio.sleep(1.0)
            faults = await nemesis(cluster, work, random.Random(SEED))
            await asyncio.sleep(1.0)
            work.running = False
            await asyncio.gather(*clients)

            await cluster.leader()
            final = await converged(cluster)
            result = check_history(work.history)
            assert result.ok is not False, f"{result.explain()}\nfaults: {faults}"
            conn = aioredis.Redis(port=cluster.nodes[1].client_port, socket_timeout=10)
            try:
                for key in sorted(work.acked):  # no acknowledged write lost
                    assert await conn.get(key) == b"1", (key, faults)
            finally:
                await conn.aclose()
            assert work.outcomes.get("ok", 0) > 100, work.outcomes
            written = {op.value for op in work.history if op.kind == "put"}
            assert all(v is None or v.decode() in written for v in final.values()), final
        finally:
            for node in cluster.nodes.values():
                node.signal(signal.SIGCONT)  # in case the test failed while one was paused
                await asyncio.to_thread(node.terminate)
            await cluster.net.close()

    asyncio.run(main())

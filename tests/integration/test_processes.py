"""Three node processes on loopback: SIGKILL the leader under load, restart it, check history.

Clients write and read through every node while the leader is killed and
later restarted. Checks: a new leader appears; no acknowledged write is lost;
the restarted node recovers (snapshot + WAL) and catches up; all replicas end
with equal entries; the history of puts, deletes and consistent gets is
linearizable (local ``get`` is left out: it is only eventually consistent).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.procs import NodeProc, find_leader, proc_seeds
from tests.sim.linearizability import Operation, check_history

pytestmark = pytest.mark.timeout(180)

KEYS = [f"k{i}" for i in range(4)]


class Workload:
    """Concurrent clients recording a history and their acknowledged unique writes."""

    def __init__(self, procs: list[NodeProc]) -> None:
        self.procs = procs
        self.live = list(procs)
        self.history: list[Operation] = []
        self.acked: set[str] = set()
        self.running = True
        self.start = time.monotonic()
        self.errors: dict[str, int] = {}

    def now(self) -> float:
        return time.monotonic() - self.start

    async def client(self, cid: int) -> None:
        rng = random.Random(cid)
        for n in itertools.count():
            if not self.running:
                return
            node = self.live[(cid + n) % len(self.live)]
            await self._one(cid, n, node, rng)

    async def _one(self, cid: int, n: int, node: NodeProc, rng: random.Random) -> None:
        key = rng.choice(KEYS)
        roll = rng.random()
        kind = "get" if roll < 0.35 else ("delete" if roll < 0.45 else "put")
        value = f"c{cid}-{n}" if kind == "put" else None
        call = self.now()
        try:
            if kind == "get":
                reply = await node.call("cget", key=key, timeout=10)
            elif kind == "put":
                reply = await node.call("put", key=key, value=value, timeout=10)
            else:
                reply = await node.call("delete", key=key, timeout=10)
        except (ConnectionError, OSError, TimeoutError):
            reply = {"ok": False, "may_have_been_applied": True, "error": "connection"}
        ret = self.now()
        if reply["ok"]:
            observed = reply["value"] if kind == "get" else value
            self.history.append(Operation(cid, kind, key, observed, call, ret))
            if kind == "put":
                unique = f"u{cid}-{n}"
                await self._unique(node, unique)
            return
        self.errors[reply["error"]] = self.errors.get(reply["error"], 0) + 1
        if kind != "get" and reply.get("may_have_been_applied"):
            self.history.append(Operation(cid, kind, key, value, call, math.inf))
        await asyncio.sleep(0.02)

    async def _unique(self, node: NodeProc, key: str) -> None:
        try:
            reply = await node.call("put", key=key, value="1", timeout=10)
        except (ConnectionError, OSError, TimeoutError):
            return
        if reply["ok"]:
            self.acked.add(key)


async def _all_equal(procs: list[NodeProc], timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        digests = [await p.value("digest") for p in procs]
        if len({(d["index"], d["sha256"]) for d in digests}) == 1:
            return digests[0]  # type: ignore[no-any-return]
        if time.monotonic() > deadline:
            raise AssertionError(f"replicas differ: {digests}")
        await asyncio.sleep(0.1)


def test_sigkill_leader_under_load(tmp_path: Path) -> None:
    async def main() -> None:
        seeds = proc_seeds(3)
        extra = ("--log-threshold", "150", "--trailing", "30", "--write-timeout", "3")
        procs = [NodeProc(i, seeds, tmp_path, *extra) for i, _ in seeds]
        await asyncio.gather(*(p.start() for p in procs))
        try:
            leader = await find_leader(procs)
            work = Workload(procs)
            clients = [asyncio.create_task(work.client(c)) for c in range(6)]
            await asyncio.sleep(2.0)
            work.live = [p for p in procs if p is not leader]
            leader.kill()
            await leader.wait_exit()
            new_leader = await find_leader(work.live)
            assert new_leader is not leader
            acked_before = len(work.acked)
            killed_at = time.monotonic()
            while len(work.acked) <= acked_before + 20:  # progress under the new leader
                assert time.monotonic() - killed_at < 60, work.errors
                await asyncio.sleep(0.05)
            await leader.start()  # recovers from its snapshot + WAL, then catches up
            work.live = list(procs)
            await asyncio.sleep(1.5)
            work.running = False
            await asyncio.gather(*clients)

            for p in procs:  # get after put on the same node, leader or follower
                await p.value("put", key=f"same-{p.node_id}", value="x")
                assert await p.value("get", key=f"same-{p.node_id}") == "x"
            digest = await _all_equal(procs)
            assert digest["count"] >= len(KEYS)
            status = await leader.value("status")
            assert status["last_snapshot_index"] > 0
            for key in sorted(work.acked):
                assert await new_leader.value("get", key=key) == "1", key
            result = check_history(work.history)
            assert result.ok is not False, result.explain()
            puts = sum(1 for op in work.history if op.kind == "put" and op.ret != math.inf)
            assert puts > 20, (puts, work.errors)
        finally:
            await asyncio.gather(*(p.stop() for p in procs))

    asyncio.run(main())

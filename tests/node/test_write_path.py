"""The write path runs without the driver loop: proposals, inbound batches, held commits."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from crema.storage import SyncTicket, writer
from tests.node.harness import start_cluster, stop_all, wait_leader, wait_until


def test_writes_commit_and_replicate_without_the_driver_loop(tmp_path: Path) -> None:
    """With ticks and the driver task stopped, writes still commit and reach followers.

    Proposals are handled in a call_soon callback, inbound appends and their
    responses in the transport's on_drained callback, and a held commit index
    goes out one loop turn later; none of it waits for the driver loop.
    """

    async def main() -> None:
        nodes, _ = await start_cluster(tmp_path, fsync="always")
        try:
            leader = await wait_leader(nodes)
            for node in nodes.values():
                replica = node._replica
                assert replica._timer is not None and replica._task is not None
                replica._timer.cancel()
                replica._task.cancel()
            await asyncio.sleep(0.05)
            await asyncio.wait_for(
                asyncio.gather(*(leader.put(f"k{i}", f"v{i}") for i in range(50))), 10
            )
            for i in range(20):
                await asyncio.wait_for(leader.put(f"one-{i}", "x"), 10)  # one at a time
            index = leader.raft_index()
            await wait_until(
                lambda: all(n.raft_index() == index for n in nodes.values()),
                10,
                "followers to apply the last commit",
            )
            for node in nodes.values():
                assert await node.get("k49") == b"v49"
                assert await node.get("one-19") == b"x"
        finally:
            await stop_all(nodes)

    asyncio.run(main())


def test_the_leader_serves_while_its_own_fsync_is_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The leader's fsync runs on its thread; what it wrote commits on the followers' acks.

    The leader's fsync is held back (the followers fsync on their loops, as
    always): the writes of the Ready whose fsync is held still commit, apply
    and answer on the leader, and a read is served. Once the fsync is let go
    the leader catches up and every node has every write.
    """
    held = threading.Event()
    release = threading.Event()
    real = writer.fsync_ticket

    def slow(ticket: SyncTicket) -> None:
        held.set()
        release.wait(30)
        real(ticket)

    async def main() -> None:
        nodes, _ = await start_cluster(tmp_path, fsync="always")
        try:
            leader = await wait_leader(nodes)
            replica = leader._replica
            await wait_until(lambda: replica._syncing is None, 10, "no fsync in flight")
            monkeypatch.setattr(writer, "fsync_ticket", slow)
            try:
                writes = [leader.put(f"k{i}", f"v{i}") for i in range(30)]  # one Ready
                await asyncio.wait_for(asyncio.gather(*writes), 10)
                assert held.is_set() and not release.is_set()
                assert replica._syncing is not None  # its fsync is still held
                assert await asyncio.wait_for(leader.get("k29"), 10) == b"v29"
            finally:
                release.set()
            await asyncio.wait_for(leader.put("after", "x"), 10)
            index = leader.raft_index()
            await wait_until(lambda: all(n.raft_index() == index for n in nodes.values()), 10)
            for node in nodes.values():
                assert await node.get("k0") == b"v0"
                assert await node.get("after") == b"x"
        finally:
            release.set()
            await stop_all(nodes)

    asyncio.run(main())

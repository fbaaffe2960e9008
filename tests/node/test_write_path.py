"""The write path runs without the driver loop: proposals, inbound batches, held commits."""

from __future__ import annotations

import asyncio
from pathlib import Path

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

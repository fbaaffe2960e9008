"""ReadBarrier: reads share rounds, but never one that started before they arrived."""

from __future__ import annotations

import asyncio

import pytest

from crema.errors import WriteRejectedError
from crema.server.read_barrier import ReadBarrier


class Rounds:
    """A read_barrier whose rounds the test completes by hand."""

    def __init__(self) -> None:
        self.pending: list[asyncio.Future[None]] = []

    async def __call__(self) -> None:
        future = asyncio.get_running_loop().create_future()
        self.pending.append(future)
        await future


def test_reads_share_rounds_but_not_an_earlier_one() -> None:
    async def main() -> None:
        rounds = Rounds()
        barrier = ReadBarrier(rounds)
        first = asyncio.create_task(barrier.wait(barrier.ticket()))
        await asyncio.sleep(0)
        assert len(rounds.pending) == 1  # round 1 in flight
        late = [asyncio.create_task(barrier.wait(barrier.ticket())) for _ in range(5)]
        await asyncio.sleep(0)
        rounds.pending[0].set_result(None)
        await first
        await asyncio.sleep(0)
        assert not any(t.done() for t in late)  # round 1 began before they arrived
        assert len(rounds.pending) == 2  # one shared round for all five
        rounds.pending[1].set_result(None)
        await asyncio.gather(*late)
        assert barrier.rounds == 2
        assert barrier.satisfied(0) and not barrier.satisfied(barrier.ticket())

    asyncio.run(main())


def test_failure_reaches_every_waiter_and_the_next_round_retries() -> None:
    async def main() -> None:
        calls = 0

        async def flaky() -> None:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0)
            if calls == 1:
                raise WriteRejectedError("no leader")

        barrier = ReadBarrier(flaky)
        ticket = barrier.ticket()
        results = await asyncio.gather(
            *(barrier.wait(ticket) for _ in range(3)), return_exceptions=True
        )
        assert all(isinstance(r, WriteRejectedError) for r in results)
        await barrier.wait(barrier.ticket())
        assert calls == 2

    asyncio.run(main())


def test_cancelled_leader_hands_over() -> None:
    async def main() -> None:
        rounds = Rounds()
        barrier = ReadBarrier(rounds)
        ticket = barrier.ticket()
        leader = asyncio.create_task(barrier.wait(ticket))
        await asyncio.sleep(0)
        follower = asyncio.create_task(barrier.wait(ticket))
        await asyncio.sleep(0)
        leader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leader
        await asyncio.sleep(0)
        assert len(rounds.pending) == 2  # the follower started a round of its own
        rounds.pending[1].set_result(None)
        await follower

    asyncio.run(main())

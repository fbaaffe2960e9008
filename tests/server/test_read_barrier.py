"""ReadBarrier: reads share rounds, never one that started before they arrived; rounds overlap."""

from __future__ import annotations

import asyncio

from crema.errors import WriteRejectedError
from crema.server.read_barrier import MAX_ROUNDS_IN_FLIGHT, ReadBarrier


class Rounds:
    """A read_barrier whose rounds the test completes by hand."""

    def __init__(self) -> None:
        self.pending: list[asyncio.Future[None]] = []

    def __call__(self) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append(future)
        return future


async def _turn() -> None:
    """Let the loop run the callbacks scheduled so far (and the ones they schedule)."""
    for _ in range(3):
        await asyncio.sleep(0)


def test_reads_share_rounds_but_not_an_earlier_one() -> None:
    async def main() -> None:
        rounds = Rounds()
        barrier = ReadBarrier(rounds)
        first = barrier.wait(barrier.ticket())
        also_first = barrier.wait(barrier.ticket())  # the same loop turn: the same round
        await _turn()
        assert len(rounds.pending) == 1  # round 1 in flight
        late = [barrier.wait(barrier.ticket()) for _ in range(5)]
        await _turn()
        assert len(rounds.pending) == 2  # one shared round for all five, overlapping round 1
        rounds.pending[0].set_result(None)
        await first
        await also_first
        await _turn()
        assert not any(f.done() for f in late)  # round 1 began before they arrived
        rounds.pending[1].set_result(None)
        await asyncio.gather(*late)
        assert barrier.rounds == 2
        assert barrier.satisfied(0) and not barrier.satisfied(barrier.ticket())

    asyncio.run(main())


def test_a_later_round_finishing_first_satisfies_earlier_readers() -> None:
    async def main() -> None:
        rounds = Rounds()
        barrier = ReadBarrier(rounds)
        early = barrier.wait(barrier.ticket())
        await _turn()
        later = barrier.wait(barrier.ticket())
        await _turn()
        rounds.pending[1].set_result(None)  # round 2 started after both arrived
        await later
        assert not early.done()  # its own round is still in flight...
        assert barrier.satisfied(0)  # ...but a new read with ticket 0 needs no round
        rounds.pending[0].set_result(None)
        await early

    asyncio.run(main())


def test_rounds_in_flight_are_bounded() -> None:
    async def main() -> None:
        rounds = Rounds()
        barrier = ReadBarrier(rounds)
        readers = []
        for _ in range(MAX_ROUNDS_IN_FLIGHT + 3):
            readers.append(barrier.wait(barrier.ticket()))
            await _turn()
        assert len(rounds.pending) == MAX_ROUNDS_IN_FLIGHT  # the rest wait for a free slot
        rounds.pending[0].set_result(None)
        await _turn()
        assert len(rounds.pending) == MAX_ROUNDS_IN_FLIGHT + 1  # one round for all 3 queued
        for pending in rounds.pending[1:]:
            pending.set_result(None)
        await asyncio.gather(*readers)

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


def test_a_cancelled_reader_leaves_the_others_alone() -> None:
    async def main() -> None:
        rounds = Rounds()
        barrier = ReadBarrier(rounds)
        ticket = barrier.ticket()
        gone = barrier.wait(ticket)
        staying = barrier.wait(ticket)
        await _turn()
        gone.cancel()
        rounds.pending[0].set_result(None)
        await staying
        assert barrier.rounds == 1

    asyncio.run(main())


def test_a_cancelled_round_fails_its_readers_as_not_applied() -> None:
    async def main() -> None:
        rounds = Rounds()
        barrier = ReadBarrier(rounds)
        reader = barrier.wait(barrier.ticket())
        await _turn()
        rounds.pending[0].cancel()
        try:
            await reader
        except WriteRejectedError:
            pass
        else:
            raise AssertionError("the reader of a cancelled round must fail")
        after = barrier.wait(barrier.ticket())  # the next reader gets a new round
        await _turn()
        rounds.pending[1].set_result(None)
        await after

    asyncio.run(main())


def test_callback_readers_run_when_their_round_completes() -> None:
    async def main() -> None:
        rounds = Rounds()
        barrier = ReadBarrier(rounds)
        seen: list[tuple[str, BaseException | None]] = []
        barrier.when_ready(barrier.ticket(), lambda exc: seen.append(("a", exc)))
        barrier.when_ready(barrier.ticket(), lambda exc: seen.append(("b", exc)))
        assert not seen  # never from within when_ready
        await _turn()
        assert len(rounds.pending) == 1 and not seen
        late: list[BaseException | None] = []
        barrier.when_ready(barrier.ticket(), late.append)  # after round 1 started
        await _turn()
        rounds.pending[0].set_result(None)
        await _turn()
        assert seen == [("a", None), ("b", None)] and not late
        rounds.pending[1].set_exception(WriteRejectedError("no leader"))
        await _turn()
        assert len(late) == 1 and isinstance(late[0], WriteRejectedError)

    asyncio.run(main())


def test_a_callback_reader_of_a_completed_round_runs_soon() -> None:
    async def main() -> None:
        rounds = Rounds()
        barrier = ReadBarrier(rounds)
        ticket = barrier.ticket()
        first = barrier.wait(ticket)
        await _turn()
        rounds.pending[0].set_result(None)
        await first
        seen: list[BaseException | None] = []
        barrier.when_ready(ticket, seen.append)
        assert not seen  # not from within when_ready...
        await asyncio.sleep(0)
        assert seen == [None]  # ...but without a new round
        assert len(rounds.pending) == 1

    asyncio.run(main())


def test_a_failing_reader_does_not_starve_the_others() -> None:
    async def main() -> None:
        rounds = Rounds()
        barrier = ReadBarrier(rounds)
        ticket = barrier.ticket()

        def broken(exc: BaseException | None) -> None:
            raise RuntimeError("a bug in a reader")

        barrier.when_ready(ticket, broken)
        seen: list[BaseException | None] = []
        barrier.when_ready(ticket, seen.append)
        future = barrier.wait(ticket)
        await _turn()
        rounds.pending[0].set_result(None)
        await future
        assert seen == [None]
        assert barrier.rounds == 1

    asyncio.run(main())


def test_a_reader_may_queue_for_the_next_round_from_its_callback() -> None:
    async def main() -> None:
        rounds = Rounds()
        barrier = ReadBarrier(rounds)
        again: list[asyncio.Future[None]] = []
        barrier.when_ready(
            barrier.ticket(), lambda exc: again.append(barrier.wait(barrier.ticket()))
        )
        await _turn()
        rounds.pending[0].set_result(None)
        await _turn()
        assert len(again) == 1 and not again[0].done()
        assert len(rounds.pending) == 2  # a new round for the read queued from the callback
        rounds.pending[1].set_result(None)
        await again[0]

    asyncio.run(main())

"""PendingProposals: results by (index, term), deadlines swept by expire()."""

from __future__ import annotations

import asyncio

import pytest

from crema.errors import LeadershipLostError, WriteTimeoutError
from crema.node.proposals import PendingProposals


def test_expire_fails_only_proposals_past_their_deadline() -> None:
    async def main() -> None:
        pending = PendingProposals()
        first = pending.add(1, 1, deadline=10.0)
        second = pending.add(2, 1, deadline=20.0)
        assert pending.expire(9.9, 5) == 0
        assert not first.done()
        assert pending.expire(10.0, 5) == 1
        with pytest.raises(WriteTimeoutError, match="index 1 not confirmed in 5 s"):
            first.result()
        assert not second.done()
        pending.applied(2, 1, "ok")
        assert second.result() == "ok"
        pending.applied(1, 1, "late")  # applied after its timeout: nothing more happens
        assert pending.expire(30.0, 5) == 0

    asyncio.run(main())


def test_finished_proposals_leave_the_deadline_queue_early() -> None:
    async def main() -> None:
        pending = PendingProposals()
        futs = [pending.add(i, 1, deadline=100.0 + i) for i in range(1, 4)]
        pending.applied(1, 1, "a")
        pending.applied(2, 1, "b")
        assert pending.expire(0.0, 5) == 0
        assert len(pending._deadlines) == 1  # only the unfinished one is kept
        assert pending.expire(103.0, 5) == 1
        assert isinstance(futs[2].exception(), WriteTimeoutError)

    asyncio.run(main())


def test_applied_with_another_term_means_lost_and_command_is_kept() -> None:
    async def main() -> None:
        pending = PendingProposals()
        command = object()
        fut = pending.add(5, 2, command, deadline=1.0)
        assert pending.command(5, 2) is command
        assert pending.command(5, 3) is None
        pending.applied(5, 3, None)
        with pytest.raises(LeadershipLostError):
            fut.result()
        pending.fail_all(LeadershipLostError("x"))
        assert pending.expire(2.0, 5) == 0

    asyncio.run(main())

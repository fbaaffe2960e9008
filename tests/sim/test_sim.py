"""Deterministic simulation seeds (see ``tests/sim/simulator.py``).

``CREMA_SIM_SEEDS=N`` runs N seeds instead of the default; ``CREMA_SIM_SEED=S``
runs only seed S. A failure names its seed and the replay command.
"""

from __future__ import annotations

import os

import pytest

from tests.sim.simulator import SimFailure, run_seed

DEFAULT_SEEDS = 300
CHUNK = 25


def _seeds() -> list[int]:
    one = os.environ.get("CREMA_SIM_SEED")
    if one is not None:
        return [int(one)]
    return list(range(int(os.environ.get("CREMA_SIM_SEEDS", DEFAULT_SEEDS))))


def _chunks() -> list[list[int]]:
    seeds = _seeds()
    return [seeds[i : i + CHUNK] for i in range(0, len(seeds), CHUNK)]


@pytest.mark.parametrize("seeds", _chunks(), ids=lambda s: f"seeds{s[0]}-{s[-1]}")
def test_simulation_seeds(seeds: list[int]) -> None:
    """Safety, liveness after healing and linearizability hold for every seed."""
    failures = []
    for seed in seeds:
        try:
            run_seed(seed)
        except SimFailure as exc:
            failures.append(str(exc))
    assert not failures, "\n".join(failures)


def test_vote_without_log_check_is_caught() -> None:
    """Granting votes without the §5.4.1 up-to-date check breaks leader completeness."""
    caught = []
    for seed in range(60):
        try:
            run_seed(seed, testing_bug="vote-without-log-check")
        except SimFailure as exc:
            caught.append(exc)
            if len(caught) >= 2:
                break
    assert caught, "the simulation missed a deliberately broken vote rule"
    assert all("replay:" in str(exc) for exc in caught)


def test_count_own_before_durable_is_caught() -> None:
    """A leader counting its own entries before they are durable commits on a minority.

    Only asynchronous storage writes expose it (``tests/sim/writes.py``): the
    leader's early appends carry the commit index to a follower, which applies
    the entry, and then a crash loses the leader's copy before its write.
    """
    caught = []
    for seed in range(100):  # seeds 10 and 15 catch it today
        try:
            run_seed(seed, testing_bug="count-own-before-durable", async_writes=True)
        except SimFailure as exc:
            caught.append(exc)
            if len(caught) >= 2:
                break
    assert len(caught) >= 2, "the simulation missed a leader counting unpersisted entries"
    assert all("--async-writes on" in str(exc) for exc in caught)
    for failure in caught:
        run_seed(failure.seed, async_writes=True)  # the same seed passes without the bug


def test_async_writes_change_the_run() -> None:
    """Forcing asynchronous writes gives another, still deterministic, run of a seed."""
    sync, first, second = (run_seed(7, async_writes=a) for a in (False, True, True))
    assert first.log == second.log
    assert first.messages == second.messages
    assert (sync.log, sync.messages) != (first.log, first.messages)


def test_runs_are_deterministic() -> None:
    """The same seed gives the same run (needed for replay)."""
    first, second = run_seed(4), run_seed(4)
    assert first.log == second.log
    assert first.messages == second.messages

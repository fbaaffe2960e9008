"""The simulation's asynchronous storage writes (``tests/sim/writes.py``)."""

from __future__ import annotations

from dataclasses import replace

from tests.sim.node import SimNode
from tests.sim.params import SimParams
from tests.sim.simulator import Simulation


def _quiet(testing_bug: str | None = None) -> Simulation:
    """A 3-node run with asynchronous writes, no faults and no clients, with a leader."""
    params = SimParams(
        seed=11,
        drop=0.0,
        duplicate=0.0,
        max_delay=1,
        partition_rate=0.0,
        crash_rate=0.0,
        conf_change_rate=0.0,
        transfer_rate=0.0,
        client_rate=0.0,
        testing_bug=testing_bug,
        async_writes=True,
        write_delays=(1,),
    )
    sim = Simulation(params)
    for _ in range(500):
        sim.step()
        leader = sim.leader()
        if leader is None or any(n.writes for n in sim.nodes.values()):
            continue
        if leader.raw.raft.log.committed == leader.raw.raft.log.last_index():
            return sim
    raise AssertionError("no leader in a fault-free run")


def _slow_leader(sim: Simulation) -> SimNode:
    """Make the leader's disk slow (writes take up to 40 steps) and the followers' fast."""
    leader = sim.leader()
    assert leader is not None
    delays = tuple(40 if i == leader.id % 4 else 1 for i in range(4))
    sim.p = replace(sim.p, write_delays=delays)
    return leader


def _commits_before_durable(sim: Simulation) -> tuple[int, bool]:
    """Propose on a slow leader with one follower down (the leader's copy is needed).

    Returns the entry's index and whether the leader committed it before its write.
    """
    leader = _slow_leader(sim)
    sim.crash(min(set(sim.nodes) - {leader.id}), 1000)
    index = leader.raw.propose(b"").index
    early = False
    for _ in range(60):
        sim.step()
        durable = leader.disk.storage.last_index() >= index
        early |= leader.raw.raft.log.committed >= index and not durable
    return index, early


def test_leader_commits_only_durable_entries() -> None:
    """The follower acks at once; the slow leader commits only after its own write."""
    sim = _quiet()
    index, early = _commits_before_durable(sim)
    leader = sim.leader()
    assert leader is not None
    assert not early
    assert leader.raw.raft.log.committed >= index  # and it did commit in the end


def test_count_own_before_durable_commits_early() -> None:
    """The deliberate bug commits the entry while the leader's copy is not durable."""
    _, early = _commits_before_durable(_quiet("count-own-before-durable"))
    assert early


def test_crash_loses_writes_in_progress() -> None:
    """Entries of a write not yet complete are not on disk after a crash and restart."""
    sim = _quiet()
    leader = _slow_leader(sim)
    index = leader.raw.propose(b"").index
    for _ in range(60):
        sim.step()
        if leader.writes and leader.writes[0].entries:
            break
    assert leader.writes, "the leader's write completed at once"
    assert leader.disk.storage.last_index() < index
    sim.crash(leader.id, 1)
    sim.step()
    restarted = sim.nodes[leader.id]
    assert restarted.raw.raft.log.last_index() < index
    assert not restarted.writes

"""RawNode: Ready contents and ordering flags, restart, snapshots, reports, validation."""

from __future__ import annotations

import random

import pytest

from crema.errors import ConfigError, NotLeaderError, RaftError
from crema.raft.config import RaftConfig
from crema.raft.memory_storage import MemoryStorage
from crema.raft.messages import Message
from crema.raft.messages import MessageType as T
from crema.raft.progress import ProgressState
from crema.raft.rawnode import RawNode, bootstrap
from crema.raft.types import HardState, Index, NodeId, Term
from tests.raft.cluster import Cluster


def test_vote_change_requires_sync_commit_change_does_not() -> None:
    """Ready.must_sync: a new term/vote or entries need fsync; a commit-only change does not."""
    c = Cluster([1, 2, 3], pre_vote=False)
    c.node(1).campaign()
    rd = c.handle_ready(1)
    assert rd is not None and rd.hard_state is not None and rd.hard_state.vote == 1
    assert rd.must_sync
    c.stabilize()
    c.node(1).propose(b"x")
    c.handle_ready(1)
    c.deliver(to=2)
    rd = c.handle_ready(2)
    assert rd is not None and rd.entries and rd.must_sync
    c.deliver(frm=2)
    c.handle_ready(1)
    c.deliver(frm=1, to=2)
    rd = c.handle_ready(2)
    assert rd is not None and rd.hard_state is not None and not rd.entries
    assert not rd.must_sync


def test_ready_then_advance_leaves_nothing() -> None:
    """After advance the node has no Ready until something happens."""
    c = Cluster([1, 2, 3])
    c.campaign(1)
    for tn in c.nodes.values():
        assert not tn.node.has_ready()


def test_committed_entries_come_after_persisted_ones() -> None:
    """Ready: the leader counts its own entry only once advance reports it durable."""
    c = Cluster([1])
    c.campaign(1)
    node = c.node(1)
    node.propose(b"x")
    rd = node.ready()
    assert [e.data for e in rd.entries] == [b"x"]
    assert rd.committed_entries == []
    assert rd.must_sync
    c.nodes[1].storage.append(rd.entries)
    node.advance(rd)
    rd = node.ready()
    assert rd.entries == []
    assert [e.data for e in rd.committed_entries] == [b"x"]


def _follower_persists_and_answers(c: Cluster, message: Message, leader: RawNode) -> None:
    """Deliver ``message`` to its follower, persist what it takes, step its answers."""
    follower = c.node(message.to)
    follower.step(message)
    rd = follower.ready()
    c.nodes[message.to].storage.append(rd.entries)
    follower.advance(rd)
    for resp in rd.messages:
        leader.step(resp)


def test_leader_sends_appends_before_persisting() -> None:
    """A leader's appends may go before its fsync (thesis §10.2.1); they come first."""
    c = Cluster([1, 2, 3])
    c.campaign(1)
    c.stabilize()
    node = c.node(1)
    entry = node.propose(b"x")
    rd = node.ready()
    assert rd.early_messages == len(rd.messages) == 2
    assert all(m.type is T.APP and m.entries[-1] == entry for m in rd.messages)
    # Both followers acknowledge before the leader persisted: a majority without it.
    for m in rd.messages:
        _follower_persists_and_answers(c, m, node)
    assert node.status().commit == entry.index


def test_leader_does_not_commit_on_one_follower_before_its_own_fsync() -> None:
    """With one follower's ack the leader's own durable copy is still needed."""
    c = Cluster([1, 2, 3])
    c.campaign(1)
    c.stabilize()
    node = c.node(1)
    entry = node.propose(b"x")
    rd = node.ready()
    to_two = next(m for m in rd.messages if m.to == 2)
    _follower_persists_and_answers(c, to_two, node)
    assert node.status().commit < entry.index
    c.nodes[1].storage.append(rd.entries)
    node.advance(rd)
    assert node.status().commit == entry.index


def test_follower_responses_wait_for_persistence() -> None:
    """A follower's append response is never marked early."""
    c = Cluster([1, 2, 3])
    c.campaign(1)
    c.stabilize()
    c.node(1).propose(b"x")
    rd = c.node(1).ready()
    c.node(2).step(next(m for m in rd.messages if m.to == 2))
    follower = c.node(2).ready()
    assert [m.type for m in follower.messages] == [T.APP_RESP]
    assert follower.early_messages == 0


def test_restart_keeps_term_vote_and_log() -> None:
    """Hard state and log survive a restart from storage; unapplied entries are reapplied."""
    c = Cluster([1, 2, 3])
    c.campaign(1)
    c.node(1).propose(b"x")
    c.stabilize()
    before = c.node(2).status()
    c.restart(2)
    after = c.node(2).status()
    assert (after.term, after.vote, after.commit, after.last_index) == (
        before.term,
        before.vote,
        before.commit,
        before.last_index,
    )
    c.stabilize()
    assert c.nodes[2].applied[-1].data == b"x"


def test_step_refuses_local_and_misaddressed_messages() -> None:
    node = Cluster([1]).node(1)
    with pytest.raises(RaftError):
        node.step(Message(T.HUP, NodeId(1), NodeId(1)))
    with pytest.raises(RaftError):
        node.step(Message(T.APP, NodeId(2), NodeId(1), Term(1)))


def test_snapshot_created_validates_and_plans() -> None:
    c = Cluster([1, 2, 3])
    c.campaign(1)
    for i in range(5):
        c.node(1).propose(b"%d" % i)
    c.stabilize()
    node = c.node(1)
    applied = node.status().applied
    plan = node.snapshot_created(applied, keep_entries=3)
    assert plan.meta.index == applied and plan.compact_index == applied - 3
    assert plan.meta.conf_state.voters == {1, 2, 3}
    with pytest.raises(RaftError):
        node.snapshot_created(Index(applied + 1))


def test_failed_snapshot_is_retried() -> None:
    """report_snapshot(success=False): back to probing; the next probe sends it again."""
    c = Cluster([1, 2, 3])
    c.campaign(1)
    c.partition([1, 2], [3])
    for i in range(5):
        c.node(1).propose(b"%d" % i)
    c.stabilize()
    tn = c.nodes[1]
    plan = tn.node.snapshot_created(tn.node.status().applied)
    tn.storage.create_snapshot(plan.meta)
    tn.storage.compact(plan.compact_index)
    c.heal()
    leader = tn.node.raft
    for _ in range(5):  # heartbeat, rejection, then the snapshot request
        c.tick(1)
        c.handle_ready(1)
        if leader.progress[NodeId(3)].state is ProgressState.SNAPSHOT:
            break
        c.deliver()
        c.handle_ready(3)
        c.deliver()
    assert leader.progress[NodeId(3)].state is ProgressState.SNAPSHOT
    assert any(m.type is T.SNAP for m in c.queue)
    c.queue = []  # the transfer fails
    tn.node.report_snapshot(NodeId(3), success=False)
    assert leader.progress[NodeId(3)].state is ProgressState.PROBE
    c.tick(1)
    c.stabilize()
    assert leader.progress[NodeId(3)].match == leader.log.last_index()


def test_report_unreachable_goes_back_to_probe() -> None:
    c = Cluster([1, 2, 3])
    c.campaign(1)
    leader = c.node(1)
    assert leader.raft.progress[NodeId(2)].state is ProgressState.REPLICATE
    leader.report_unreachable(NodeId(2))
    assert leader.raft.progress[NodeId(2)].state is ProgressState.PROBE


def test_read_index_without_leader_raises() -> None:
    c = Cluster([1, 2, 3])
    with pytest.raises(NotLeaderError):
        c.node(2).read_index(b"x")


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("id", {"id": 0}),
        ("election_tick", {"election_tick": 1, "heartbeat_tick": 1}),
        ("heartbeat_tick", {"heartbeat_tick": 0}),
        ("max_inflight", {"max_inflight": 0}),
        ("max_size_per_msg", {"max_size_per_msg": True}),
        ("applied", {"applied": -1}),
        ("testing_bug", {"testing_bug": "nope"}),
    ],
)
def test_config_validation_names_the_field(field: str, kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"id": 1, **kwargs}
    with pytest.raises(ConfigError) as info:
        RaftConfig(**args)  # type: ignore[arg-type]
    assert info.value.field == field


def test_bootstrap_refuses_non_empty_storage() -> None:
    storage = MemoryStorage()
    bootstrap(storage, [NodeId(1)])
    with pytest.raises(RaftError):
        bootstrap(storage, [NodeId(1)])
    with pytest.raises(RaftError):
        bootstrap(MemoryStorage(), [])


def test_commit_beyond_log_is_refused() -> None:
    storage = MemoryStorage()
    storage.set_hard_state(HardState(Term(1), None, Index(5)))
    with pytest.raises(RuntimeError):
        RawNode(RaftConfig(id=NodeId(1)), storage, random.Random(0))


def _commit_on_leader(c: Cluster) -> tuple[RawNode, int]:
    """Propose one entry on leader 1 and bring its commit back, holding the broadcast."""
    node = c.node(1)
    entry = node.propose(b"x")
    rd = node.ready()
    c.nodes[1].storage.append(rd.entries)
    node.advance(rd)
    for m in rd.messages:
        _follower_persists_and_answers(c, m, node)
    return node, entry.index


def test_hold_commit_defers_commit_only_appends() -> None:
    """With hold_commit a new commit index is not broadcast alone; later it is."""
    c = Cluster([1, 2, 3])
    c.campaign(1)
    c.stabilize()
    node, index = _commit_on_leader(c)
    assert node.commit_held()
    rd = node.ready(hold_commit=True)
    assert rd.messages == []
    assert [e.index for e in rd.committed_entries] == [index]
    node.advance(rd)
    assert not node.has_ready(hold_commit=True)
    assert node.has_ready()
    rd = node.ready()
    assert sorted(m.to for m in rd.messages) == [2, 3]
    assert all(m.type is T.APP and not m.entries and m.commit == index for m in rd.messages)
    assert not node.commit_held()


def test_held_commit_rides_with_the_next_entries() -> None:
    """A held commit goes out with the next proposal's appends, not in appends of its own."""
    c = Cluster([1, 2, 3])
    c.campaign(1)
    c.stabilize()
    node, index = _commit_on_leader(c)
    node.advance(node.ready(hold_commit=True))
    node.propose(b"y")
    rd = node.ready(hold_commit=True)
    assert len(rd.messages) == 2
    assert all(m.entries and m.commit == index for m in rd.messages)
    assert not node.commit_held()


def test_leader_uses_what_followers_committed_before_its_ready_is_done() -> None:
    """While the leader's fsync runs, a quorum commit is applied and appends go out early.

    The first Ready is not advanced (its fsync "runs"): a second proposal's
    appends are taken early, both followers answer both appends, and the
    entries that are written come out of ``take_applicable``; the one not
    written yet waits. Advancing hands out nothing twice.
    """
    c = Cluster([1, 2, 3])
    c.campaign(1)
    c.stabilize()
    node = c.node(1)
    first = node.propose(b"x")
    rd = node.ready()
    c.nodes[1].storage.append(rd.entries)  # written, its fsync not done: no advance yet
    for m in rd.messages:
        _follower_persists_and_answers(c, m, node)
    assert node.status().commit == first.index
    second = node.propose(b"y")
    early = node.take_early_messages()
    assert sorted(m.to for m in early) == [2, 3] and all(m.entries[-1] == second for m in early)
    for m in early:
        _follower_persists_and_answers(c, m, node)
    assert node.status().commit == second.index
    committed, states = node.take_applicable(written=first.index)
    assert [e.index for e in rd.committed_entries] + [e.index for e in committed] == [first.index]
    assert states == []
    assert node.take_applicable(written=first.index) == ([], [])  # handed out once
    node.advance(rd)
    rd = node.ready()
    assert [e.index for e in rd.committed_entries] == [second.index]
    assert rd.entries == [second]


def test_only_a_leader_with_a_persisted_term_uses_entries_early() -> None:
    c = Cluster([1, 2, 3])
    c.campaign(1)
    c.stabilize()
    follower = c.node(2)
    assert follower.take_applicable(written=100) == ([], [])
    assert follower.take_early_messages() == []
    c.node(3).campaign()  # a new term, not persisted yet
    candidate = c.node(3)
    assert candidate.take_applicable(written=100) == ([], [])

"""One test per claim of the Raft paper (Ongaro & Ousterhout 2014; thesis 2014 where noted)."""

from __future__ import annotations

import random

import pytest

from crema.errors import NotLeaderError, ProposalDroppedError
from crema.raft.core import Role
from crema.raft.messages import MessageType as T
from crema.raft.types import Entry, Index, NodeId, Term
from tests.raft.cluster import Cluster
from tests.raft.helpers import elect, make_raft, msg, take


def test_nodes_start_as_followers() -> None:
    """§5.2: when servers start up, they begin as followers."""
    r = make_raft(1, [1, 2, 3])
    assert r.role is Role.FOLLOWER
    assert r.lead is None


@pytest.mark.parametrize("role", ["follower", "candidate", "leader"])
def test_higher_term_turns_any_node_into_follower(role: str) -> None:
    """§5.1: a server seeing a larger term updates its term and reverts to follower."""
    r = make_raft(1, [1, 2, 3], term=1)
    if role == "candidate":
        r.become_candidate()
    elif role == "leader":
        elect(r)
    r.step(msg(T.APP, 2, 1, 5, log_term=0, index=0))
    assert (r.role, r.term, r.lead, r.vote) == (Role.FOLLOWER, 5, 2, None)


def test_stale_term_messages_are_ignored() -> None:
    """§5.1: a request with a stale term number is rejected."""
    r = make_raft(1, [1, 2, 3], term=3)
    r.step(msg(T.APP, 2, 1, 2, entries=(Entry(Index(1), Term(2)),)))
    assert r.log.last_index() == 0
    assert take(r) == []


def test_stale_leader_is_told_the_newer_term() -> None:
    """§5.1 with check-quorum: a stale leader learns the newer term and steps down."""
    r = make_raft(1, [1, 2, 3], term=3, check_quorum=True)
    r.step(msg(T.HEARTBEAT, 2, 1, 2))
    (reply,) = take(r)
    assert (reply.type, reply.to, reply.term) == (T.APP_RESP, 2, 3)


def test_leader_sends_heartbeats() -> None:
    """§5.2: leaders send periodic heartbeats to all followers to maintain authority."""
    r = make_raft(1, [1, 2, 3], heartbeat_tick=1)
    elect(r)
    r.tick()
    beats = take(r)
    assert sorted(m.to for m in beats if m.type is T.HEARTBEAT) == [2, 3]


def test_follower_starts_election_on_timeout() -> None:
    """§5.2: a follower hearing nothing for an election timeout becomes a candidate."""
    r = make_raft(1, [1, 2, 3], term=1)
    for _ in range(2 * r.config.election_tick):
        r.tick()
    assert (r.role, r.term, r.vote) == (Role.CANDIDATE, 2, 1)
    requests = take(r)
    assert sorted(m.to for m in requests if m.type is T.VOTE) == [2, 3]


def test_election_timeouts_are_randomized() -> None:
    """§5.2: election timeouts are chosen randomly from a fixed interval."""
    timeouts = set()
    for seed in range(50):
        r = make_raft(1, [1, 2, 3], seed=seed)
        r.become_follower(Term(r.term + 1), None)
        assert 10 <= r.randomized_election_timeout < 20
        timeouts.add(r.randomized_election_timeout)
    assert len(timeouts) > 3


@pytest.mark.parametrize(
    ("size", "votes", "role"),
    [
        (1, {}, Role.LEADER),
        (3, {2: True}, Role.LEADER),
        (3, {2: False, 3: False}, Role.FOLLOWER),
        (3, {2: False}, Role.CANDIDATE),
        (5, {2: True, 3: True}, Role.LEADER),
        (5, {2: True, 3: False}, Role.CANDIDATE),
        (5, {2: False, 3: False, 4: False}, Role.FOLLOWER),
    ],
)
def test_election_outcome_depends_on_majority(
    size: int, votes: dict[int, bool], role: Role
) -> None:
    """§5.2: a candidate wins with votes from a majority; a majority of rejections loses."""
    r = make_raft(1, list(range(1, size + 1)))
    r.step(msg(T.HUP, 1, 1, 0))
    for node, granted in votes.items():
        r.step(msg(T.VOTE_RESP, node, 1, r.term, reject=not granted))
    assert r.role is role


def test_one_vote_per_term_first_come_first_served() -> None:
    """§5.2: each server votes for at most one candidate in a term."""
    r = make_raft(1, [1, 2, 3])
    r.step(msg(T.VOTE, 2, 1, 1, log_term=0, index=0))
    r.step(msg(T.VOTE, 3, 1, 1, log_term=0, index=0))
    first, second = take(r)
    assert not first.reject and second.reject
    assert r.vote == 2
    r.step(msg(T.VOTE, 2, 1, 1, log_term=0, index=0))  # a retry of the same candidate
    assert not take(r)[0].reject


def test_candidate_recognises_leader_of_same_term() -> None:
    """§5.2: a candidate receiving AppendEntries from a leader of its term becomes follower."""
    r = make_raft(1, [1, 2, 3])
    r.become_candidate()
    r.step(msg(T.APP, 2, 1, r.term, log_term=0, index=0))
    assert (r.role, r.lead) == (Role.FOLLOWER, 2)


def test_leader_replicates_and_commits_on_majority() -> None:
    """§5.3: the leader appends, sends AppendEntries, commits once a majority stored it."""
    c = Cluster([1, 2, 3], pre_vote=False)
    c.campaign(1)
    c.node(1).propose(b"x")
    c.handle_ready(1)
    apps = [m for m in c.queue if m.type is T.APP]
    assert sorted(m.to for m in apps) == [2, 3]
    assert all(m.entries[-1].data == b"x" for m in apps)
    c.deliver(to=2)
    c.handle_ready(2)
    c.deliver(frm=2)
    committed = c.node(1).raft.log.committed
    assert committed == apps[0].entries[-1].index  # leader + node 2 are a majority
    c.stabilize()
    assert all(tn.applied[-1].data == b"x" for tn in c.nodes.values())


def test_follower_rejects_append_without_matching_predecessor() -> None:
    """§5.3: the consistency check refuses entries whose predecessor does not match."""
    r = make_raft(2, [1, 2, 3], terms=[1, 1])
    r.step(msg(T.APP, 1, 2, 2, log_term=2, index=2, entries=(Entry(Index(3), Term(2)),)))
    (reply,) = take(r)
    assert reply.reject and reply.index == 2
    assert r.log.last_index() == 2


def test_follower_truncates_conflicting_entries() -> None:
    """§5.3: an existing entry conflicting with a new one is deleted with all that follow."""
    r = make_raft(2, [1, 2, 3], terms=[1, 1, 1, 1])
    r.step(msg(T.APP, 1, 2, 2, log_term=1, index=1, entries=(Entry(Index(2), Term(2)),)))
    assert not take(r)[0].reject
    assert [r.log.term(i) for i in range(1, r.log.last_index() + 1)] == [1, 2]


def test_leader_backs_off_quickly_with_reject_hints() -> None:
    """§5.3 (end): with the conflicting term in the rejection, a diverging log costs few probes."""
    leader = make_raft(1, [1, 2], terms=[1] * 5 + [4] * 5, term=5)
    follower = make_raft(2, [1, 2], terms=[1] * 5 + [2] * 40 + [3] * 40, term=5)
    elect(leader)
    follower.become_follower(leader.term, None)
    probes = 0
    for _ in range(10):
        leader.step(msg(T.BEAT, 1, 1, 0))
        for m in take(leader):
            if m.type is T.APP:
                probes += 1
            follower.step(m)
        for m in take(follower):
            leader.step(m)
        if leader.progress[NodeId(2)].match == leader.log.last_index():
            break
        for m in take(leader):
            follower.step(m)
            for reply in take(follower):
                leader.step(reply)
    assert leader.progress[NodeId(2)].match == leader.log.last_index()
    assert probes <= 4


@pytest.mark.parametrize(
    ("cand_last_term", "cand_last_index", "granted"),
    [(1, 3, False), (2, 1, False), (2, 2, True), (2, 3, True), (3, 1, True)],
)
def test_vote_requires_up_to_date_log(
    cand_last_term: int, cand_last_index: int, granted: bool
) -> None:
    """§5.4.1: a voter denies its vote when its own log is more up-to-date."""
    r = make_raft(1, [1, 2, 3], terms=[1, 2])
    r.step(msg(T.VOTE, 2, 1, 3, log_term=cand_last_term, index=cand_last_index))
    (reply,) = take(r)
    assert reply.reject is not granted


def test_new_leader_appends_a_noop_of_its_term() -> None:
    """§5.4.2 and §8: a new leader commits an entry of its own term (the no-op) first."""
    r = make_raft(1, [1, 2, 3], terms=[1, 1], term=1)
    elect(r)
    entry = r.log.slice(3, 4)[0]
    assert (entry.term, entry.data) == (r.term, b"")


def _elect_manually(c: Cluster, node: int, voters: list[int]) -> None:
    """Run ``node``'s election delivering only among ``voters``, without replication."""
    c.handle_ready(node)  # apply what a restart left unapplied (conf changes block campaigns)
    c.queue = []
    c.node(node).campaign()
    c.handle_ready(node)
    c.queue = [m for m in c.queue if m.to in voters]
    c.deliver()
    for v in voters:
        c.handle_ready(v)
    c.deliver(to=node)


def _figure8(bug: str | None) -> tuple[int, Cluster]:
    """Figure 8 of the paper up to (c); returns (index of the old-term entry, cluster).

    S1 leads term 4 and has just learned that S3 stored its term-2 entry, so
    that entry is on a majority (S1, S2, S3) while no term-4 entry is.
    """
    c = Cluster(
        [1, 2, 3, 4, 5], pre_vote=False, check_quorum=False, max_size_per_msg=1, testing_bug=bug
    )
    c.campaign(1)
    # (a) S1 leads term 2 and replicates an entry to S2 only.
    c.node(1).propose(b"old")
    c.handle_ready(1)
    old_index = c.node(1).raft.log.last_index()
    c.deliver(frm=1, to=2)
    c.handle_ready(2)
    c.queue = []
    # (b) S1 crashes; S5 leads term 3 with votes of S3 and S4, its no-op stays local.
    c.restart(1)
    _elect_manually(c, 5, [3, 4])
    assert c.node(5).raft.role is Role.LEADER and c.node(5).raft.term == 3
    c.handle_ready(5)
    c.queue = []
    # (c) S5 crashes; S1 leads term 4 with votes of S2 and S3.
    c.restart(5)
    c.node(1).raft.become_follower(Term(3), None)
    _elect_manually(c, 1, [2, 3])
    assert c.node(1).raft.role is Role.LEADER and c.node(1).raft.term == 4
    for _ in range(5):  # probe S2 and S3 until S3 stores the term-2 entry
        c.handle_ready(1)
        c.queue = [m for m in c.queue if m.to in (2, 3)]
        c.deliver()
        c.handle_ready(2)
        c.handle_ready(3)
        if c.node(3).raft.log.term(old_index) == 2:
            break
        c.deliver(to=1)
    c.deliver(to=1)  # S1 learns that S3 matches up to the old entry
    assert all(c.node(n).raft.log.term(old_index) == 2 for n in (1, 2, 3))
    return old_index, c


def test_leader_does_not_commit_old_term_entries_by_counting() -> None:
    """§5.4.2 (Figure 8): an old-term entry on a majority is not committed by counting."""
    old_index, c = _figure8(bug=None)
    assert c.node(1).raft.log.committed < old_index


def test_figure8_bug_is_visible_when_enabled() -> None:
    """The test-only bug commits the entry, which (d) a later leader overwrites."""
    old_index, c = _figure8(bug="commit-old-term")
    assert c.node(1).raft.log.committed >= old_index
    c.handle_ready(1)  # S1 applies the "committed" old entry
    applied = {int(e.index): e for e in c.nodes[1].applied}
    assert applied[old_index].data == b"old"
    # (d) S1 crashes; S5 (last term 3) is elected by S3, S4 and overwrites the entry.
    c.queue = []
    c.restart(1)
    c.partition([1, 2], [3, 4, 5])
    c.handle_ready(5)
    c.node(5).raft.become_follower(Term(4), None)
    c.campaign(5)
    c.stabilize()
    overwritten = {int(e.index): e for e in c.nodes[3].applied}[old_index]
    assert overwritten.term == 3  # state machine safety is broken


def test_proposals_on_followers_are_refused_with_a_hint() -> None:
    """Client interaction (§8): a follower refuses writes and names the leader."""
    c = Cluster([1, 2, 3])
    c.campaign(1)
    with pytest.raises(NotLeaderError) as info:
        c.node(2).propose(b"x")
    assert info.value.leader_hint == 1


def test_read_index_waits_for_a_commit_in_the_current_term() -> None:
    """Thesis §6.4: a new leader serves reads only once an entry of its term committed."""
    r = make_raft(1, [1, 2, 3], terms=[1, 1], term=1)
    elect(r)
    r.read_index(b"r")
    assert r.pending_reads and not r.read_states
    for node in (2, 3):
        r.step(msg(T.APP_RESP, node, 1, r.term, index=3))
    beats = [m for m in take(r) if m.type is T.HEARTBEAT]
    assert beats and all(m.context == b"r" for m in beats)
    r.step(msg(T.HEARTBEAT_RESP, 2, 1, r.term, context=b"r"))
    assert [(s.index, s.context) for s in r.read_states] == [(3, b"r")]


def test_check_quorum_leader_steps_down_when_isolated() -> None:
    """Thesis §6.2: a leader that hears from no quorum for an election timeout steps down."""
    r = make_raft(1, [1, 2, 3], check_quorum=True)
    elect(r)
    for _ in range(r.config.election_tick):
        r.tick()
    assert r.role is Role.FOLLOWER


def test_lease_ignores_disruptive_vote_requests() -> None:
    """Thesis §4.2.3: a node that recently heard from a leader ignores vote requests."""
    r = make_raft(1, [1, 2, 3], check_quorum=True, term=2)
    r.step(msg(T.HEARTBEAT, 2, 1, 2))
    take(r)
    r.step(msg(T.VOTE, 3, 1, 3, log_term=5, index=9))
    assert (r.term, take(r)) == (2, [])


def test_pre_vote_does_not_raise_the_term() -> None:
    """Thesis §9.6: a pre-candidate asks at term+1 without changing its own term."""
    r = make_raft(1, [1, 2, 3], pre_vote=True, term=2)
    r.step(msg(T.HUP, 1, 1, 0))
    assert (r.role, r.term) == (Role.PRE_CANDIDATE, 2)
    requests = take(r)
    assert all(m.type is T.PRE_VOTE and m.term == 3 for m in requests)
    r.step(msg(T.PRE_VOTE_RESP, 2, 1, 3))
    assert (r.role, r.term) == (Role.CANDIDATE, 3)


def test_leadership_transfer_refuses_proposals_then_hands_over() -> None:
    """Thesis §3.10: the leader stops accepting writes and sends TimeoutNow to the target."""
    c = Cluster([1, 2, 3])
    c.campaign(1)
    c.node(1).transfer_leadership(2)  # type: ignore[arg-type]
    with pytest.raises(ProposalDroppedError):
        c.node(1).propose(b"x")
    c.stabilize()
    assert c.leader() == 2


def test_single_node_commits_alone() -> None:
    """§5.3 with one voter: the leader alone is a majority."""
    c = Cluster([1])
    c.campaign(1)
    c.node(1).propose(b"x")
    c.stabilize()
    assert c.nodes[1].applied[-1].data == b"x"


def test_randomized_timeouts_resolve_split_votes() -> None:
    """§5.2: randomized timeouts make split votes rare; an election eventually succeeds."""
    c = Cluster([1, 2, 3, 4, 5], pre_vote=False, check_quorum=False, seed=7)
    rng = random.Random(1)
    for _ in range(400):
        for i in c.nodes:
            c.tick(i)
        c.stabilize()
        if c.leader() is not None:
            break
        rng.random()
    assert c.leader() is not None

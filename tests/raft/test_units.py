"""Quorum arithmetic, progress/inflights, conf change encoding and application, read-only."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crema.errors import InvalidConfChangeError
from crema.raft import quorum
from crema.raft.confchange import ConfChange, ConfChangeType
from crema.raft.progress import Progress, ProgressState
from crema.raft.read_only import ReadOnly
from crema.raft.types import ConfState, Index, NodeId


def ids(*xs: int) -> frozenset[NodeId]:
    return frozenset(NodeId(x) for x in xs)


def test_committed_index_is_the_majority_match() -> None:
    voters = ids(1, 2, 3)
    assert quorum.committed_index(voters, {NodeId(1): Index(5), NodeId(2): Index(3)}) == 3
    assert quorum.committed_index(ids(1, 2, 3, 4), {NodeId(n): Index(n) for n in (1, 2, 3, 4)}) == 2


def test_vote_result() -> None:
    voters = ids(1, 2, 3)
    assert quorum.vote_result(voters, {NodeId(1): True}) is quorum.VoteResult.PENDING
    assert quorum.vote_result(voters, {NodeId(1): True, NodeId(2): True}) is quorum.VoteResult.WON
    lost = {NodeId(2): False, NodeId(3): False}
    assert quorum.vote_result(voters, lost) is quorum.VoteResult.LOST


def test_progress_states_and_inflights() -> None:
    pr = Progress(Index(5), max_inflight=2)
    pr.sent_entries(Index(5), 1)
    assert pr.is_paused()  # probe: one message at a time
    assert pr.maybe_update(Index(5))
    pr.become_replicate()
    pr.sent_entries(Index(6), 1)
    pr.sent_entries(Index(7), 1)
    assert pr.is_paused() and pr.next == 8
    pr.inflights.free_le(6)
    assert not pr.is_paused()
    assert not pr.maybe_decr_to(Index(4), Index(0))  # stale rejection
    assert pr.maybe_decr_to(Index(7), Index(0))
    assert pr.next == 6
    pr.become_snapshot(Index(20))
    assert pr.is_paused() and pr.state is ProgressState.SNAPSHOT
    pr.become_probe()
    assert pr.next == 21


@given(
    st.sampled_from(list(ConfChangeType)),
    st.integers(min_value=1, max_value=2**63),
    st.binary(max_size=64),
)
def test_conf_change_round_trip(kind: ConfChangeType, node: int, context: bytes) -> None:
    change = ConfChange(kind, NodeId(node), context)
    assert ConfChange.decode(change.encode()) == change


@given(st.binary(max_size=12))
def test_conf_change_decode_rejects_garbage(data: bytes) -> None:
    try:
        change = ConfChange.decode(data)
    except InvalidConfChangeError:
        return
    assert change.encode() == data


def test_conf_change_application_is_idempotent() -> None:
    conf = ConfState(ids(1, 2, 3))
    learner = ConfChange(ConfChangeType.ADD_LEARNER, NodeId(4))
    once = learner.apply_to(conf)
    assert once == learner.apply_to(once)
    assert once.learners == {4}
    promoted = ConfChange(ConfChangeType.ADD_VOTER, NodeId(4)).apply_to(once)
    assert promoted.voters == {1, 2, 3, 4} and not promoted.learners
    removed = ConfChange(ConfChangeType.REMOVE_NODE, NodeId(1)).apply_to(promoted)
    assert removed.voters == {2, 3, 4}
    with pytest.raises(InvalidConfChangeError):
        ConfChange(ConfChangeType.REMOVE_NODE, NodeId(1)).apply_to(ConfState(ids(1)))


def test_read_only_releases_in_order() -> None:
    ro = ReadOnly()
    assert ro.add_request(Index(3), NodeId(1), b"a", NodeId(1))
    assert ro.add_request(Index(4), NodeId(2), b"b", NodeId(1))
    assert not ro.add_request(Index(4), NodeId(2), b"b", NodeId(1))
    assert ro.recv_ack(NodeId(2), b"b") == {1, 2}
    released = ro.advance(b"b")
    assert [s.context for s in released] == [b"a", b"b"]
    assert ro.last_pending_context() is None

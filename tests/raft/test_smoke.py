"""Smoke test: elect, replicate, apply."""

from __future__ import annotations

from tests.raft.cluster import Cluster


def test_three_nodes_elect_and_replicate() -> None:
    c = Cluster([1, 2, 3])
    c.campaign(1)
    assert c.leader() == 1
    for i in range(10):
        c.node(1).propose(b"x%d" % i)
    c.stabilize()
    for tn in c.nodes.values():
        data = [e.data for e in tn.applied if e.data.startswith(b"x")]
        assert data == [b"x%d" % i for i in range(10)]

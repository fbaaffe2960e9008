"""Safety and liveness checks of the simulation (Raft §5.2-§5.4 and Figure 3)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from crema.raft.core import Role
from crema.raft.types import Entry, NodeId

if TYPE_CHECKING:
    from tests.sim.node import SimNode
    from tests.sim.simulator import Simulation

LOG_MATCHING_EVERY = 25


@dataclass
class GlobalState:
    """What every node agreed on so far."""

    leaders: dict[int, int] = field(default_factory=dict)  # term -> leader id
    applied: dict[int, tuple[int, bytes]] = field(default_factory=dict)  # index -> (term, data)
    max_applied: int = 0
    applied_ops: set[int] = field(default_factory=set)


def on_leader(sim: Simulation, node: SimNode) -> None:
    """Election safety (§5.2) and leader completeness (§5.4) when ``node`` starts leading."""
    raft = node.raw.raft
    other = sim.state.leaders.setdefault(raft.term, node.id)
    if other != node.id:
        raise sim.fail(f"election safety: nodes {other} and {node.id} both lead term {raft.term}")
    log = raft.log
    first = log.first_index()
    for index in range(max(first, 1), sim.state.max_applied + 1):
        term, _ = sim.state.applied[index]
        if log.term(index) != term:
            raise sim.fail(
                f"leader completeness: leader {node.id} of term {raft.term} has term "
                f"{log.term(index)} at committed index {index} (expected {term})"
            )


def on_apply(sim: Simulation, node: SimNode, entry: Entry) -> None:
    """State machine safety: every node applies the same entry at each index."""
    seen = sim.state.applied.get(entry.index)
    if seen is None:
        sim.state.applied[entry.index] = (entry.term, entry.data)
        sim.state.max_applied = max(sim.state.max_applied, entry.index)
    elif seen != (entry.term, entry.data):
        raise sim.fail(
            f"state machine safety: node {node.id} applied term {entry.term} at index "
            f"{entry.index}, another node applied term {seen[0]}"
        )


def after_step(sim: Simulation) -> None:
    """Checks cheap enough for every step, and log matching every few steps."""
    for node in sim.nodes.values():
        raft = node.raw.raft
        if raft.role is Role.LEADER:
            other = sim.state.leaders.setdefault(raft.term, node.id)
            if other != node.id:
                raise sim.fail(f"election safety: {other} and {node.id} lead term {raft.term}")
        if raft.log.committed < raft.log.applied:
            raise sim.fail(f"node {node.id} applied beyond its commit index")
    if sim.now % LOG_MATCHING_EVERY == 0:
        check_log_matching(sim)


def _terms(node: SimNode) -> dict[int, int]:
    log = node.raw.raft.log
    terms: dict[int, int] = {}
    for index in range(log.first_index() - 1, log.last_index() + 1):
        term = log.term(index)
        if term is not None:
            terms[index] = term
    return terms


def check_log_matching(sim: Simulation) -> None:
    """Log matching (§5.3): same index and term imply identical preceding entries."""
    logs = {node_id: _terms(node) for node_id, node in sorted(sim.nodes.items())}
    ids = sorted(logs)
    for i, a in enumerate(ids):
        for b in ids[i + 1 :]:
            la, lb = logs[a], logs[b]
            common = [idx for idx in la if idx in lb and la[idx] == lb[idx]]
            if not common:
                continue
            top = max(common)
            for idx in range(top, 0, -1):
                if idx not in la or idx not in lb:
                    break
                if la[idx] != lb[idx]:
                    raise sim.fail(
                        f"log matching: nodes {a} and {b} agree at index {top} but differ "
                        f"at {idx} ({la[idx]} vs {lb[idx]})"
                    )


def _members(sim: Simulation) -> set[NodeId] | None:
    leader = sim.leader()
    if leader is None:
        return None
    conf = leader.raw.raft.conf
    return set(conf.voters | conf.learners)


def converged(sim: Simulation) -> bool:
    """A leader, and every member applied everything the leader has."""
    leader = sim.leader()
    if leader is None:
        return False
    log = leader.raw.raft.log
    if log.committed != log.last_index() or log.term(log.committed) != leader.raw.raft.term:
        return False
    members = _members(sim)
    assert members is not None
    for node_id in members:
        node = sim.nodes.get(node_id)
        if node is None or node.applied != log.committed or node.writes or node.raw.has_ready():
            return False
    return True


def describe(sim: Simulation) -> str:
    """A one-line summary of every node, for failure messages."""
    parts = []
    for node_id in sorted(sim.disks):
        node = sim.nodes.get(node_id)
        if node is None:
            parts.append(f"{node_id}: down")
            continue
        st = node.raw.status()
        parts.append(
            f"{node_id}: {st.role.value} t{st.term} lead={st.lead} commit={st.commit} "
            f"applied={node.applied} last={st.last_index} voters={sorted(st.conf_state.voters)}"
        )
    return "; ".join(parts)


def final(sim: Simulation) -> None:
    """After convergence: members hold identical state including every acknowledged write."""
    members = _members(sim)
    assert members is not None
    states = {node_id: sim.nodes[node_id].kv for node_id in members}
    reference = next(iter(states.values()))
    for node_id, kv in states.items():
        if kv != reference:
            raise sim.fail(f"replicas diverge after healing: node {node_id} has {kv}")
    leader = sim.leader()
    assert leader is not None
    if leader.raw.raft.log.committed < sim.state.max_applied:
        raise sim.fail(
            f"committed entries lost: commit {leader.raw.raft.log.committed} "
            f"< applied somewhere {sim.state.max_applied}"
        )
    for op_id, op in sim.ops.items():
        if op.kind != "get" and op.status == "ok" and op_id not in sim.state.applied_ops:
            raise sim.fail(f"acknowledged write {op_id} is not applied")

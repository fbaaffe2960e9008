"""A synchronous in-memory cluster for unit and transcript tests of the Raft core.

Messages are queued, never delivered until asked (``deliver``), so tests
control interleavings exactly. Each node persists, sends and applies its
Ready in the documented order.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from crema.raft.confchange import ConfChange
from crema.raft.config import RaftConfig
from crema.raft.memory_storage import MemoryStorage
from crema.raft.messages import Message
from crema.raft.rawnode import RawNode, Ready, bootstrap
from crema.raft.read_only import ReadState
from crema.raft.types import Entry, EntryType, NodeId


@dataclass
class TestNode:
    """A RawNode with its storage and what it applied."""

    node: RawNode
    storage: MemoryStorage
    applied: list[Entry] = field(default_factory=list)
    read_states: list[ReadState] = field(default_factory=list)


class Cluster:
    """Nodes plus a queue of in-flight messages; partitions drop messages."""

    def __init__(
        self,
        ids: list[int],
        *,
        election_tick: int = 10,
        heartbeat_tick: int = 1,
        pre_vote: bool = True,
        check_quorum: bool = True,
        max_size_per_msg: int = 1 << 20,
        max_inflight: int = 256,
        seed: int = 0,
        testing_bug: str | None = None,
    ) -> None:
        self.settings = dict(
            election_tick=election_tick,
            heartbeat_tick=heartbeat_tick,
            pre_vote=pre_vote,
            check_quorum=check_quorum,
            max_size_per_msg=max_size_per_msg,
            max_inflight=max_inflight,
            testing_bug=testing_bug,
        )
        self.seed = seed
        self.nodes: dict[int, TestNode] = {}
        self.queue: list[Message] = []
        self.cut: set[tuple[int, int]] = set()
        for i in ids:
            storage = MemoryStorage()
            bootstrap(storage, [NodeId(n) for n in ids])
            self.nodes[i] = TestNode(self._make(i, storage), storage)
        self.stabilize()  # apply the bootstrap entries

    def _make(self, node_id: int, storage: MemoryStorage, applied: int = 0) -> RawNode:
        config = RaftConfig(id=NodeId(node_id), applied=applied, **self.settings)  # type: ignore[arg-type]
        return RawNode(config, storage, random.Random(self.seed * 1000 + node_id))

    def add_node(self, node_id: int) -> None:
        """Create an empty node (to be added with a conf change)."""
        storage = MemoryStorage()
        self.nodes[node_id] = TestNode(self._make(node_id, storage), storage)

    def restart(self, node_id: int) -> None:
        """Rebuild a node from its storage (unapplied state is lost, applied replayed)."""
        old = self.nodes[node_id]
        snap = old.storage.snapshot_meta().index
        self.nodes[node_id] = TestNode(
            self._make(node_id, old.storage, snap),
            old.storage,
            [e for e in old.applied if e.index <= snap],
        )

    def node(self, node_id: int) -> RawNode:
        """The RawNode of ``node_id``."""
        return self.nodes[node_id].node

    def leader(self) -> int | None:
        """The id of a node that believes it leads, preferring the highest term."""
        best = None
        for i, tn in self.nodes.items():
            st = tn.node.status()
            if st.role.value == "leader" and (best is None or st.term > best[0]):
                best = (st.term, i)
        return best[1] if best else None

    # -- driving ---------------------------------------------------------------

    def handle_ready(self, node_id: int) -> Ready | None:
        """Persist, send and apply one Ready of ``node_id``."""
        tn = self.nodes[node_id]
        if not tn.node.has_ready():
            return None
        rd = tn.node.ready()
        if rd.snapshot is not None:
            tn.storage.apply_snapshot(rd.snapshot)
            tn.applied = [e for e in tn.applied if e.index <= 0]
        tn.storage.append(rd.entries)
        if rd.hard_state is not None:
            tn.storage.set_hard_state(rd.hard_state)
        self.queue.extend(rd.messages)
        for entry in rd.committed_entries:
            if entry.type is EntryType.CONF_CHANGE:
                conf = tn.node.apply_conf_change(ConfChange.decode(entry.data))
                tn.storage.set_conf_state(conf)
            tn.applied.append(entry)
        tn.read_states.extend(rd.read_states)
        tn.node.advance(rd)
        return rd

    def deliver(self, frm: int | None = None, to: int | None = None) -> list[Message]:
        """Deliver queued messages (optionally only from/to one node); returns them."""
        keep, take = [], []
        for m in self.queue:
            if (frm is None or m.frm == frm) and (to is None or m.to == to):
                take.append(m)
            else:
                keep.append(m)
        self.queue = keep
        delivered = []
        for m in take:
            if (m.frm, m.to) in self.cut or m.to not in self.nodes:
                continue
            self.nodes[m.to].node.step(m)
            delivered.append(m)
        return delivered

    def stabilize(self, max_rounds: int = 1000) -> None:
        """Process readies and deliver messages until nothing is left."""
        for _ in range(max_rounds):
            progressed = False
            for i in sorted(self.nodes):
                if self.handle_ready(i) is not None:
                    progressed = True
            if self.queue:
                self.deliver()
                progressed = True
            if not progressed:
                return
        raise AssertionError("cluster did not stabilize")

    def campaign(self, node_id: int) -> None:
        """Make ``node_id`` campaign and run the election to completion."""
        self.node(node_id).campaign()
        self.stabilize()

    def tick(self, node_id: int, n: int = 1) -> None:
        """Tick ``node_id`` ``n`` times."""
        for _ in range(n):
            self.node(node_id).tick()

    def partition(self, *groups: list[int]) -> None:
        """Cut every link between nodes in different groups."""
        where = {n: g for g, members in enumerate(groups) for n in members}
        self.cut = {(a, b) for a in where for b in where if where[a] != where[b]}

    def heal(self) -> None:
        """Restore every link."""
        self.cut = set()

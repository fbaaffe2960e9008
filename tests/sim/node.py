"""The simulated runtime of one node: disk (storage + app snapshot), Ready handling, kv apply."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import msgpack

from crema.raft.confchange import ConfChange
from crema.raft.config import RaftConfig
from crema.raft.core import Role
from crema.raft.memory_storage import MemoryStorage
from crema.raft.messages import Message
from crema.raft.rawnode import RawNode, Ready
from crema.raft.types import ConfState, Entry, EntryType, Index, NodeId, Term
from tests.sim.params import SimParams
from tests.sim.writes import PendingWrite

KV = dict[str, str]


def encode_command(op_id: int, kind: str, key: str, value: str | None) -> bytes:
    """A client command as stored in a log entry."""
    return msgpack.packb([op_id, kind, key, value])  # type: ignore[no-any-return]


def decode_command(data: bytes) -> tuple[int, str, str, str | None]:
    """Inverse of :func:`encode_command`."""
    op_id, kind, key, value = msgpack.unpackb(data)
    return op_id, kind, key, value


@dataclass
class Disk:
    """What survives a crash: the Raft storage and the latest application snapshot."""

    storage: MemoryStorage
    snap_index: Index = Index(0)  # noqa: RUF009
    snap_kv: KV = field(default_factory=dict)


@dataclass
class Applied:
    """What one node applied: the sink the simulator checks."""

    index: Index
    term: Term
    data: bytes
    type: EntryType


class SimNode:
    """A node's runtime: persists, sends and applies each Ready in the documented order."""

    def __init__(self, node_id: int, disk: Disk, params: SimParams, rng: random.Random) -> None:
        self.id = node_id
        self.disk = disk
        self.params = params
        config = RaftConfig(
            id=NodeId(node_id),
            election_tick=params.election_tick,
            heartbeat_tick=1,
            max_size_per_msg=params.max_size_per_msg,
            max_inflight=params.max_inflight,
            pre_vote=params.pre_vote,
            check_quorum=params.check_quorum,
            applied=disk.snap_index,
            testing_bug=params.testing_bug,
        )
        self.raw = RawNode(config, disk.storage, rng)
        self.kv: KV = dict(disk.snap_kv)
        self.applied = disk.snap_index
        self.conf: ConfState = disk.storage.initial_state()[1]
        self.pending_writes: dict[int, tuple[int, int]] = {}  # index -> (term, op id)
        self.pending_reads: dict[bytes, int] = {}  # context -> op id
        self.waiting_reads: list[tuple[int, int]] = []  # (index, op id)
        self.incoming_snapshots: dict[int, KV] = {}
        self.role = Role.FOLLOWER
        # Asynchronous writes (tests/sim/writes.py): not yet durable, lost on a crash.
        self.writes: list[PendingWrite] = []
        self.queued: dict[int, int] = {}  # index -> term of the entries written or queued
        self.queued_hard = disk.storage.initial_state()[0]

    def is_leader(self) -> bool:
        """Whether the core believes it leads."""
        return self.raw.raft.role is Role.LEADER

    def persist(self, rd: Ready) -> None:
        """Step 1 of a Ready: install snapshot, append entries, set hard state."""
        storage = self.disk.storage
        if rd.snapshot is not None:
            kv = self.incoming_snapshots[rd.snapshot.index]
            storage.apply_snapshot(rd.snapshot)
            self.disk.snap_index = rd.snapshot.index
            self.disk.snap_kv = dict(kv)
            self.kv = dict(kv)
            self.applied = rd.snapshot.index
            self.conf = rd.snapshot.conf_state
        storage.append(rd.entries)
        if rd.hard_state is not None:
            storage.set_hard_state(rd.hard_state)
        storage.sync()

    def apply(self, entry: Entry) -> None:
        """Step 3 of a Ready for one committed entry."""
        assert entry.index == self.applied + 1, f"apply {entry.index} after {self.applied}"
        self.applied = entry.index
        if entry.type is EntryType.CONF_CHANGE:
            self.conf = self.raw.apply_conf_change(ConfChange.decode(entry.data))
            self.disk.storage.set_conf_state(self.conf)
        elif entry.data:
            _, kind, key, value = decode_command(entry.data)
            if kind == "put":
                assert value is not None
                self.kv[key] = value
            elif kind == "delete":
                self.kv.pop(key, None)

    def maybe_snapshot(self) -> None:
        """Take an application snapshot and compact, every ``snapshot_interval`` entries."""
        if self.applied - self.disk.snap_index < self.params.snapshot_interval:
            return
        if self.applied > self.disk.storage.initial_state()[0].commit:
            return  # asynchronous writes: the commit index is not durable yet
        plan = self.raw.snapshot_created(self.applied, self.params.keep_entries)
        self.disk.snap_index = plan.meta.index
        self.disk.snap_kv = dict(self.kv)
        self.disk.storage.create_snapshot(plan.meta)
        self.disk.storage.compact(plan.compact_index)

    def outgoing(self, rd: Ready) -> list[tuple[Message, KV | None]]:
        """Step 2 of a Ready: messages, each SNAP carrying the snapshot it names."""
        result: list[tuple[Message, KV | None]] = []
        for m in rd.messages:
            payload = None
            if m.snapshot is not None:
                assert m.snapshot.index == self.disk.snap_index, "SNAP of a snapshot we lack"
                payload = dict(self.disk.snap_kv)
            result.append((m, payload))
        return result

"""Configuration of one Raft core (layer L0)."""

from __future__ import annotations

from dataclasses import dataclass

from crema.errors import ConfigError
from crema.raft.types import Index, NodeId

_I0 = Index(0)

TESTING_BUGS = frozenset({"vote-without-log-check", "commit-old-term", "count-own-before-durable"})
"""Deliberate bugs the simulation must catch; never enable outside tests."""


@dataclass(frozen=True, slots=True)
class RaftConfig:
    """Settings of a Raft core, validated on construction.

    Attributes:
        id: this node's id (>= 1).
        election_tick: ticks without hearing from a leader before campaigning;
            the actual timeout is randomised in ``[election_tick, 2 * election_tick)``.
        heartbeat_tick: ticks between leader heartbeats; must be < ``election_tick``.
        max_size_per_msg: byte cap of the entries in one append message (at
            least one entry is always sent).
        max_inflight: append messages in flight per follower in replicate state.
        pre_vote: run a pre-vote round before incrementing the term (thesis §9.6).
        check_quorum: a leader steps down when it has not heard from a quorum
            for an election timeout; followers ignore votes while in lease.
        applied: the index the application's state already includes (the
            snapshot it restored); committed entries are handed out after it.
        max_committed_size_per_ready: byte cap of committed entries in one Ready
            (None: no cap).
        testing_bug: test-only deliberate bug (one of :data:`TESTING_BUGS`).
    """

    id: NodeId
    election_tick: int = 10
    heartbeat_tick: int = 1
    max_size_per_msg: int = 1 << 20
    max_inflight: int = 256
    pre_vote: bool = True
    check_quorum: bool = True
    applied: Index = _I0
    max_committed_size_per_ready: int | None = None
    testing_bug: str | None = None

    def __post_init__(self) -> None:
        for name in ("id", "election_tick", "heartbeat_tick", "max_size_per_msg", "max_inflight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(name, f"must be an integer >= 1, got {value!r}")
        if self.max_committed_size_per_ready is not None and self.max_committed_size_per_ready < 1:
            raise ConfigError("max_committed_size_per_ready", "must be >= 1")
        if self.heartbeat_tick >= self.election_tick:
            raise ConfigError(
                "election_tick",
                f"must be greater than heartbeat_tick ({self.heartbeat_tick}), "
                f"got {self.election_tick}",
            )
        if self.applied < 0:
            raise ConfigError("applied", f"must be >= 0, got {self.applied}")
        if self.testing_bug is not None and self.testing_bug not in TESTING_BUGS:
            raise ConfigError("testing_bug", f"unknown bug {self.testing_bug!r}")

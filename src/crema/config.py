"""Frozen configuration values, validated where they are built (layer L0).

Every config is a frozen dataclass; ``with_*`` builders return a new config,
as in the checkpointing guide::

    config = (
        CheckpointConfig("./checkpoints")
        .with_log_threshold(10_000)
        .with_time_interval(3600)
        .with_max_snapshots(5)
    )

Invalid values raise :class:`crema.errors.ConfigError` naming the field.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from crema.errors import ConfigError

DurationLike = timedelta | float | int


def to_timedelta(field: str, value: DurationLike | None) -> timedelta | None:
    """Normalise a duration given as ``timedelta`` or seconds; None stays None.

    Raises:
        ConfigError: the value is not positive, not finite or of another type.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigError(field, f"expected seconds or a timedelta, got {value!r}")
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, int | float):
        if not math.isfinite(value):
            raise ConfigError(field, f"must be finite, got {value!r}")
        try:
            result = timedelta(seconds=value)
        except OverflowError as exc:
            raise ConfigError(field, f"out of range: {value!r}") from exc
    else:
        raise ConfigError(field, f"expected seconds or a timedelta, got {type(value).__name__}")
    if result <= timedelta(0):
        raise ConfigError(field, f"must be positive, got {result.total_seconds()} s")
    return result


def _positive_int(field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(field, f"expected an integer, got {value!r}")
    if value < 1:
        raise ConfigError(field, f"must be >= 1, got {value}")
    return value


def _flag(field: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(field, f"expected True or False, got {value!r}")
    return value


@dataclass(frozen=True, slots=True, init=False)
class CheckpointConfig:
    """How and when a node writes MCRS snapshots.

    Attributes:
        directory: where snapshot files live (created if missing).
        log_threshold: snapshot after this many applied log entries.
        time_interval: also snapshot after this much time (if anything was
            applied since the last snapshot); None disables the time trigger.
            Accepts a ``timedelta`` or seconds and is stored as a ``timedelta``.
        compression: LZ4-compress snapshot bodies.
        max_snapshots: how many newest snapshots to keep.
        auto_recover: on start, restore from the newest valid snapshot plus
            the log after it. On by default, so that a restarted node never
            silently comes back empty; turn it off only to discard local
            state and catch up from the leader.
    """

    directory: Path
    log_threshold: int = 10_000
    time_interval: timedelta | None = None
    compression: bool = True
    max_snapshots: int = 5
    auto_recover: bool = True

    def __init__(
        self,
        directory: str | os.PathLike[str],
        log_threshold: int = 10_000,
        time_interval: DurationLike | None = None,
        compression: bool = True,
        max_snapshots: int = 5,
        auto_recover: bool = True,
    ) -> None:
        if not isinstance(directory, str | os.PathLike) or str(directory) == "":
            raise ConfigError("directory", f"expected a non-empty path, got {directory!r}")
        object.__setattr__(self, "directory", Path(directory))
        object.__setattr__(self, "log_threshold", _positive_int("log_threshold", log_threshold))
        object.__setattr__(self, "time_interval", to_timedelta("time_interval", time_interval))
        object.__setattr__(self, "compression", _flag("compression", compression))
        object.__setattr__(self, "max_snapshots", _positive_int("max_snapshots", max_snapshots))
        object.__setattr__(self, "auto_recover", _flag("auto_recover", auto_recover))

    def _replace(self, **changes: object) -> CheckpointConfig:
        values: dict[str, object] = {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self)
        }
        values.update(changes)
        return CheckpointConfig(**values)  # type: ignore[arg-type]

    def with_log_threshold(self, log_threshold: int) -> CheckpointConfig:
        """A copy that snapshots every ``log_threshold`` applied entries."""
        return self._replace(log_threshold=log_threshold)

    def with_time_interval(self, time_interval: DurationLike | None) -> CheckpointConfig:
        """A copy that also snapshots every ``time_interval`` (None disables it)."""
        return self._replace(time_interval=time_interval)

    def with_compression(self, compression: bool) -> CheckpointConfig:
        """A copy with LZ4 compression on or off."""
        return self._replace(compression=compression)

    def with_max_snapshots(self, max_snapshots: int) -> CheckpointConfig:
        """A copy that keeps the ``max_snapshots`` newest snapshot files."""
        return self._replace(max_snapshots=max_snapshots)

    def with_auto_recover(self, auto_recover: bool) -> CheckpointConfig:
        """A copy with recovery from the newest snapshot on start on or off."""
        return self._replace(auto_recover=auto_recover)


def _non_negative_int(field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(field, f"expected an integer, got {value!r}")
    if value < 0:
        raise ConfigError(field, f"must be >= 0, got {value}")
    return value


@dataclass(frozen=True, slots=True)
class RaftConfig:
    """Runtime settings of a node's Raft replication, validated on construction.

    Attributes:
        tick_interval_ms: milliseconds per logical Raft tick.
        election_ticks: ticks without a leader before campaigning (randomised
            up to twice this); must exceed ``heartbeat_ticks``.
        heartbeat_ticks: ticks between leader heartbeats.
        max_message_bytes: byte cap of the entries in one append message.
        max_inflight: append messages in flight per follower.
        trailing_entries: log entries kept before a snapshot's index when the
            log is compacted, so slightly lagging followers need no snapshot.
        pre_vote: run a pre-vote round before starting an election.
        check_quorum: a leader steps down when it loses contact with a quorum.
        write_timeout: how long a write (or a consistent read) may wait, as a
            ``timedelta`` or seconds.
        fsync: the WAL fsync policy: ``"always"``, ``"batch"`` or ``"never"``.
    """

    tick_interval_ms: int = 50
    election_ticks: int = 20
    heartbeat_ticks: int = 2
    max_message_bytes: int = 1 << 20
    max_inflight: int = 256
    trailing_entries: int = 1_000
    pre_vote: bool = True
    check_quorum: bool = True
    write_timeout: DurationLike = timedelta(seconds=5)
    fsync: str = "always"

    def __post_init__(self) -> None:
        for name in (
            "tick_interval_ms",
            "election_ticks",
            "heartbeat_ticks",
            "max_message_bytes",
            "max_inflight",
        ):
            _positive_int(name, getattr(self, name))
        _non_negative_int("trailing_entries", self.trailing_entries)
        if self.heartbeat_ticks >= self.election_ticks:
            raise ConfigError("election_ticks", "must be greater than heartbeat_ticks")
        if self.max_message_bytes > 8 << 20:
            raise ConfigError("max_message_bytes", "must be at most 8 MiB (the frame limit)")
        _flag("pre_vote", self.pre_vote)
        _flag("check_quorum", self.check_quorum)
        object.__setattr__(self, "write_timeout", to_timedelta("write_timeout", self.write_timeout))
        if self.fsync not in ("always", "batch", "never"):
            raise ConfigError("fsync", f"expected always, batch or never, got {self.fsync!r}")

    @property
    def write_timeout_s(self) -> float:
        """The write timeout in seconds."""
        timeout = self.write_timeout
        assert isinstance(timeout, timedelta)
        return timeout.total_seconds()


def _check_addr(field: str, addr: object) -> str:
    if not isinstance(addr, str):
        raise ConfigError(field, f"expected 'host:port', got {addr!r}")
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(field, f"expected 'host:port', got {addr!r}")
    return addr


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """Everything a ``DistributedCache`` node needs; build with the ``with_*`` methods.

    Attributes:
        node_id: this node's id (>= 1).
        addr: the peer address ``"host:port"`` this node listens on.
        seed_nodes: the initial voters as ``(id, "host:port")`` pairs; empty
            means a single-node cluster of this node alone. A node that is
            not among them starts empty and waits to be added.
        max_capacity: maximum number of entries (None: unbounded).
        default_ttl: TTL applied by ``put`` (None: no expiry).
        data_dir: WAL directory and default checkpoint directory (None:
            ``./crema-data/node-{id}``).
        raft_storage: ``"disk"`` (the WAL, default) or ``"memory"``.
        raft_config: replication settings.
        checkpoint_config: snapshot settings (None: ``data_dir/checkpoints``).
        cluster_secret: shared secret peers must prove they know (None: none).
        cluster_id: must match on every peer connection.
        min_free_bytes: a snapshot is skipped unless the checkpoint file system
            keeps at least this much free beyond the snapshot's estimated size.
    """

    node_id: int
    addr: str
    seed_nodes: tuple[tuple[int, str], ...] = ()
    max_capacity: int | None = None
    default_ttl: timedelta | None = None
    data_dir: Path | None = None
    raft_storage: str = "disk"
    raft_config: RaftConfig = dataclasses.field(default_factory=RaftConfig)
    checkpoint_config: CheckpointConfig | None = None
    cluster_secret: bytes | None = None
    cluster_id: str = "crema"
    min_free_bytes: int = 64 << 20

    def __post_init__(self) -> None:
        _positive_int("node_id", self.node_id)
        _check_addr("addr", self.addr)
        seeds = tuple(self.seed_nodes)
        ids = set()
        for item in seeds:
            if not isinstance(item, tuple | list) or len(item) != 2:
                raise ConfigError("seed_nodes", f"expected (id, 'host:port'), got {item!r}")
            ids.add(_positive_int("seed_nodes", item[0]))
            _check_addr("seed_nodes", item[1])
        if len(ids) != len(seeds):
            raise ConfigError("seed_nodes", "node ids must be unique")
        object.__setattr__(self, "seed_nodes", tuple((int(i), str(a)) for i, a in seeds))
        if self.max_capacity is not None:
            _positive_int("max_capacity", self.max_capacity)
        object.__setattr__(self, "default_ttl", to_timedelta("default_ttl", self.default_ttl))
        if self.data_dir is not None:
            object.__setattr__(self, "data_dir", Path(self.data_dir))
        if self.raft_storage not in ("disk", "memory"):
            raise ConfigError("raft_storage", f"expected disk or memory, got {self.raft_storage!r}")
        if not isinstance(self.raft_config, RaftConfig):
            raise ConfigError("raft_config", "expected a RaftConfig")
        if self.checkpoint_config is not None and not isinstance(
            self.checkpoint_config, CheckpointConfig
        ):
            raise ConfigError("checkpoint_config", "expected a CheckpointConfig")
        if self.cluster_secret is not None:
            secret = self.cluster_secret
            if isinstance(secret, str):
                secret = secret.encode()
            if not isinstance(secret, bytes) or not secret:
                raise ConfigError("cluster_secret", "expected non-empty bytes or str")
            object.__setattr__(self, "cluster_secret", secret)
        if not isinstance(self.cluster_id, str) or not self.cluster_id:
            raise ConfigError("cluster_id", "expected a non-empty string")
        _non_negative_int("min_free_bytes", self.min_free_bytes)

    @property
    def data_directory(self) -> Path:
        """The data directory actually used."""
        if self.data_dir is not None:
            return self.data_dir
        return Path(f"./crema-data/node-{self.node_id}")

    @property
    def checkpoints(self) -> CheckpointConfig:
        """The checkpoint configuration actually used."""
        if self.checkpoint_config is not None:
            return self.checkpoint_config
        return CheckpointConfig(self.data_directory / "checkpoints")

    def voters(self) -> dict[int, str]:
        """The initial voters, id -> address (this node alone when there are no seeds)."""
        if not self.seed_nodes:
            return {self.node_id: self.addr}
        return dict(self.seed_nodes)

    def _with(self, **changes: object) -> CacheConfig:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def with_seed_nodes(self, seed_nodes: list[tuple[int, str]]) -> CacheConfig:
        """A copy whose initial voters are ``seed_nodes``."""
        return self._with(seed_nodes=tuple(seed_nodes))

    def with_max_capacity(self, max_capacity: int | None) -> CacheConfig:
        """A copy bounded to ``max_capacity`` entries (None: unbounded)."""
        return self._with(max_capacity=max_capacity)

    def with_default_ttl(self, default_ttl: DurationLike | None) -> CacheConfig:
        """A copy whose ``put`` uses ``default_ttl`` (None: no expiry)."""
        return self._with(default_ttl=default_ttl)

    def with_data_dir(self, data_dir: str | os.PathLike[str]) -> CacheConfig:
        """A copy keeping its WAL (and default checkpoints) under ``data_dir``."""
        return self._with(data_dir=Path(data_dir))

    def with_raft_storage(self, raft_storage: str) -> CacheConfig:
        """A copy with ``"disk"`` or ``"memory"`` Raft log storage."""
        return self._with(raft_storage=raft_storage)

    def with_raft_config(self, raft_config: RaftConfig) -> CacheConfig:
        """A copy with these replication settings."""
        return self._with(raft_config=raft_config)

    def with_checkpoint_config(self, checkpoint_config: CheckpointConfig) -> CacheConfig:
        """A copy with these snapshot settings."""
        return self._with(checkpoint_config=checkpoint_config)

    def with_cluster_secret(self, cluster_secret: bytes | str | None) -> CacheConfig:
        """A copy whose peers must prove they know ``cluster_secret``."""
        return self._with(cluster_secret=cluster_secret)

    @property
    def peer_cluster_id(self) -> str:
        """The cluster identity peers must present in the handshake.

        The entry bound is part of it: replicas with different bounds would
        evict different keys and drift apart, so such nodes refuse each other
        (``crema/max-capacity=1000`` is not ``crema``).
        """
        if self.max_capacity is None:
            return self.cluster_id
        return f"{self.cluster_id}/max-capacity={self.max_capacity}"

    def with_cluster_id(self, cluster_id: str) -> CacheConfig:
        """A copy in the cluster named ``cluster_id``."""
        return self._with(cluster_id=cluster_id)

    def with_min_free_bytes(self, min_free_bytes: int) -> CacheConfig:
        """A copy that skips snapshots when less than this would remain free."""
        return self._with(min_free_bytes=min_free_bytes)

"""Recovery on start: open the Raft log, restore the newest usable snapshot (layer L2).

With ``auto_recover`` on, the newest snapshot file that verifies and fits the
log (its index between the log's compaction index and its commit index, its
term matching) is restored, skipping entries expired by the local clock; the
Raft core then replays the durable log after it. Corrupted files are renamed
``.broken`` and the next older one is tried. When no snapshot fits and the
log no longer starts at index 1, local state cannot be rebuilt: it is moved
aside and the node catches up from the leader.

With ``auto_recover`` off, local state (log and snapshots) is moved aside into
``discarded-<time>`` and the node starts empty, to catch up from the leader
(by snapshot install if needed). Beware: such a node forgets its vote.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from crema.cache.state_machine import CacheStateMachine
from crema.checkpoint import CheckpointManager, SnapshotReader
from crema.checkpoint.writer import fsync_directory
from crema.config import CacheConfig
from crema.errors import CompactedError, EntryUnavailableError, SnapshotCorruptedError
from crema.raft import config as core_config
from crema.raft.memory_storage import MemoryStorage
from crema.raft.rawnode import bootstrap
from crema.raft.storage import LogStorage
from crema.raft.types import Index, NodeId
from crema.storage import DiskStorage

log = logging.getLogger("crema.node")


@dataclass(slots=True)
class Recovered:
    """What start-up found: the log, the state machine and where it came from."""

    storage: LogStorage
    state_machine: CacheStateMachine
    snapshot_index: int
    discarded: bool
    seconds: float = 0.0
    """Time spent opening the log and restoring the snapshot (set by the caller)."""


def _wal_dir(config: CacheConfig) -> Path:
    return config.data_directory / "wal"


def _open_storage(config: CacheConfig) -> LogStorage:
    if config.raft_storage == "memory":
        return MemoryStorage()
    storage = DiskStorage.open(_wal_dir(config), fsync=config.raft_config.fsync)
    storage.defer_removals = True  # the runtime unlinks dead segments off the event loop
    return storage


def _discard(config: CacheConfig, manager: CheckpointManager) -> None:
    """Move the WAL and the snapshot files aside (never delete them)."""
    aside = config.data_directory / f"discarded-{time.time_ns()}"
    aside.mkdir(parents=True)
    wal = _wal_dir(config)
    if wal.exists():
        shutil.move(str(wal), str(aside / "wal"))
    for path in manager.directory.glob("snapshot-*"):
        shutil.move(str(path), str(aside / path.name))
    fsync_directory(config.data_directory)
    log.warning("node %d: local state moved to %s", config.node_id, aside)


def recover(config: CacheConfig, manager: CheckpointManager, now_ms: int) -> Recovered:
    """Open the log and rebuild the state machine as the module docstring says."""
    config.data_directory.mkdir(parents=True, exist_ok=True)
    capacity = config.max_capacity
    storage = _open_storage(config)
    fresh = storage.last_index() == 0 and storage.initial_state()[0].term == 0
    if not fresh and not config.checkpoints.auto_recover:
        storage.close()
        _discard(config, manager)
        return Recovered(_open_storage(config), CacheStateMachine(capacity), 0, True)
    if fresh:
        voters = config.voters()
        if config.node_id in voters and not _has_snapshots(manager):
            bootstrap(storage, [NodeId(i) for i in sorted(voters)])
        return Recovered(storage, CacheStateMachine(capacity), 0, False)
    sm = _restore_newest(storage, manager, capacity, now_ms)
    if sm is not None:
        return Recovered(storage, sm, sm.applied_index, False)
    if storage.first_index() == 1:
        return Recovered(storage, CacheStateMachine(capacity), 0, False)
    log.error("node %d: no snapshot fits the compacted log; catching up", config.node_id)
    storage.close()
    _discard(config, manager)
    return Recovered(_open_storage(config), CacheStateMachine(capacity), 0, True)


def _has_snapshots(manager: CheckpointManager) -> bool:
    return any(manager.directory.glob("snapshot-*.snap"))


def _restore_newest(
    storage: LogStorage, manager: CheckpointManager, capacity: int | None, now_ms: int
) -> CacheStateMachine | None:
    low = storage.first_index() - 1
    commit = storage.initial_state()[0].commit
    for info in reversed(manager.list_snapshots()):
        index, term = info.metadata.index, info.metadata.term
        if not low <= index <= commit or _term(storage, index) != term:
            continue
        try:
            with SnapshotReader.open(info.path) as reader:
                entries = reader.read_all(live_at=now_ms)
        except SnapshotCorruptedError as exc:
            _quarantine(manager, info.path, exc.reason)
            continue
        sm = CacheStateMachine(capacity)
        sm.restore(entries, index, term)
        log.info("restored snapshot %s (%d live entries)", info.path.name, len(entries))
        return sm
    return None


def _term(storage: LogStorage, index: int) -> int | None:
    try:
        return storage.term(index)  # type: ignore[arg-type]
    except (CompactedError, EntryUnavailableError):
        return None


def _quarantine(manager: CheckpointManager, path: Path, reason: str) -> None:
    broken = path.with_name(path.name + ".broken")
    log.warning("snapshot %s is corrupted (%s); renamed to %s", path, reason, broken.name)
    os.replace(path, broken)
    fsync_directory(manager.directory)


def core_config_for(config: CacheConfig, applied: int) -> core_config.RaftConfig:
    """The Raft core's settings from the node's runtime settings."""
    rc = config.raft_config
    return core_config.RaftConfig(
        id=NodeId(config.node_id),
        election_tick=rc.election_ticks,
        heartbeat_tick=rc.heartbeat_ticks,
        max_size_per_msg=rc.max_message_bytes,
        max_inflight=rc.max_inflight,
        pre_vote=rc.pre_vote,
        check_quorum=rc.check_quorum,
        applied=Index(applied),
        max_committed_size_per_ready=4 << 20,
    )

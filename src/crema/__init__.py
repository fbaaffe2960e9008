"""crema: a strongly consistent distributed cache for Python, built on Raft.

Writes go through Raft; checkpoints (MCRS snapshot files) bound the log and
make restarts fast. See README.md and docs/ for the user guide.
"""

from __future__ import annotations

from crema.checkpoint import (
    CheckpointManager,
    CheckpointPolicy,
    RestoreTarget,
    SnapshotEntry,
    SnapshotInfo,
    SnapshotMetadata,
    SnapshotReader,
    SnapshotWriter,
)
from crema.config import CacheConfig, CheckpointConfig, RaftConfig
from crema.errors import (
    CompactedError,
    ConfigError,
    CorruptLogError,
    CremaError,
    EntryUnavailableError,
    LeadershipLostError,
    NoSnapshotError,
    NotLeaderError,
    OutcomeUnknownError,
    ProposalDroppedError,
    RaftError,
    ShutdownError,
    SnapshotCorruptedError,
    SnapshotError,
    StorageError,
    UnavailableError,
    WriteError,
    WriteRejectedError,
    WriteTimeoutError,
)
from crema.node import DistributedCache

__version__ = "0.1.0"

__all__ = [
    "CacheConfig",
    "CheckpointConfig",
    "CheckpointManager",
    "CheckpointPolicy",
    "CompactedError",
    "ConfigError",
    "CorruptLogError",
    "CremaError",
    "DistributedCache",
    "EntryUnavailableError",
    "LeadershipLostError",
    "NoSnapshotError",
    "NotLeaderError",
    "OutcomeUnknownError",
    "ProposalDroppedError",
    "RaftConfig",
    "RaftError",
    "RestoreTarget",
    "ShutdownError",
    "SnapshotCorruptedError",
    "SnapshotEntry",
    "SnapshotError",
    "SnapshotInfo",
    "SnapshotMetadata",
    "SnapshotReader",
    "SnapshotWriter",
    "StorageError",
    "UnavailableError",
    "WriteError",
    "WriteRejectedError",
    "WriteTimeoutError",
    "__version__",
]

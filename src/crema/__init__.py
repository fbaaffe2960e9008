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
from crema.config import CheckpointConfig
from crema.errors import (
    CompactedError,
    ConfigError,
    CorruptLogError,
    CremaError,
    EntryUnavailableError,
    NoSnapshotError,
    NotLeaderError,
    ProposalDroppedError,
    RaftError,
    SnapshotCorruptedError,
    SnapshotError,
    StorageError,
)

__version__ = "0.1.0"

__all__ = [
    "CheckpointConfig",
    "CheckpointManager",
    "CheckpointPolicy",
    "CompactedError",
    "ConfigError",
    "CorruptLogError",
    "CremaError",
    "EntryUnavailableError",
    "NoSnapshotError",
    "NotLeaderError",
    "ProposalDroppedError",
    "RaftError",
    "RestoreTarget",
    "SnapshotCorruptedError",
    "SnapshotEntry",
    "SnapshotError",
    "SnapshotInfo",
    "SnapshotMetadata",
    "SnapshotReader",
    "SnapshotWriter",
    "StorageError",
    "__version__",
]

"""Checkpoints: MCRS snapshot files, their writer, reader and manager.

See ``docs/checkpointing.md`` for the user guide and
``docs/snapshot-format.md`` for the file format.
"""

from __future__ import annotations

from crema.checkpoint.format import SnapshotEntry, SnapshotMetadata
from crema.checkpoint.info import SnapshotInfo
from crema.checkpoint.manager import CheckpointManager, RestoreTarget, snapshot_name
from crema.checkpoint.policy import CheckpointPolicy
from crema.checkpoint.reader import SnapshotReader
from crema.checkpoint.writer import SnapshotWriter
from crema.config import CheckpointConfig

__all__ = [
    "CheckpointConfig",
    "CheckpointManager",
    "CheckpointPolicy",
    "RestoreTarget",
    "SnapshotEntry",
    "SnapshotInfo",
    "SnapshotMetadata",
    "SnapshotReader",
    "SnapshotWriter",
    "snapshot_name",
]

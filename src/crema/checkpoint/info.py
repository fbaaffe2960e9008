"""``SnapshotInfo``: what a listing says about one snapshot file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from crema.checkpoint.format import SnapshotMetadata


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """A snapshot file as found on disk.

    Attributes:
        path: the file.
        metadata: index, term and creation time from its header.
        size: bytes on disk.
        entry_count: entries in its body.
        compressed: whether the body is LZ4-compressed.
    """

    path: Path
    metadata: SnapshotMetadata
    size: int
    entry_count: int
    compressed: bool

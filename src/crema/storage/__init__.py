"""Durable Raft log storage (layer L1): a segmented write-ahead log.

:class:`DiskStorage` implements :class:`crema.raft.storage.LogStorage` on
disk; see ``docs/wal.md`` for the on-disk layout and recovery rules.
"""

from __future__ import annotations

from crema.storage.recovery import RepairReport
from crema.storage.wal import DiskStorage, WalStats
from crema.storage.writer import FsyncPolicy, SyncTicket, fsync_ticket

__all__ = ["DiskStorage", "FsyncPolicy", "RepairReport", "SyncTicket", "WalStats", "fsync_ticket"]

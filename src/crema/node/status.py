"""What ``cluster_status()`` reports about a node (layer L2)."""

from __future__ import annotations

from typing import Any

from crema.histogram import Histogram
from crema.node.forward import Forwarder
from crema.node.replica import Replica
from crema.storage import DiskStorage


def status_of(replica: Replica, forwarder: Forwarder | None = None) -> dict[str, Any]:
    """Node id, role, term, leader, membership, indexes and counters.

    Every value is O(1) to compute, so a metrics scrape may call this freely.
    """
    status = replica.node.status()
    storage = replica.storage
    closed = replica.storage_closed
    cp = replica.checkpointer
    return {
        "node_id": int(replica.id),
        "role": status.role.value,
        "term": int(status.term),
        "leader_id": None if status.lead is None else int(status.lead),
        "voters": sorted(int(n) for n in status.conf_state.voters),
        "learners": sorted(int(n) for n in status.conf_state.learners),
        "commit_index": int(status.commit),
        "applied_index": replica.sm.applied_index,
        "last_snapshot_index": cp.last_index,
        "log_first_index": 0 if closed else int(storage.first_index()),
        "log_last_index": 0 if closed else int(storage.last_index()),
        "snapshots_written": cp.written,
        "snapshots_skipped_low_space": cp.skipped_low_space,
        "snapshots_failed": cp.failed,
        "snapshots_sent": replica.sender.sent,
        "snapshots_installed": replica.receiver.installed,
        "pending_proposals": len(replica.pending),
        "proposals": replica.proposals,
        "forwarded_writes": 0 if forwarder is None else forwarder.forwarded,
        "forwarded_writes_served": 0 if forwarder is None else forwarder.served,
        "leader_changes": replica.leader_changes,
        "cache_entries": len(replica.sm),
        "cache_bytes": replica.sm.nbytes,
        "max_capacity": replica.config.max_capacity,
        "last_snapshot_seconds": cp.last_seconds,
        "last_snapshot_size": cp.last_size,
        "last_snapshot_entries": cp.last_entries,
        "last_snapshot_compression_ratio": cp.last_compression_ratio,
        "recovery_snapshot_index": replica.recovery_snapshot_index,
        "recovery_entries_replayed": replica.recovery_entries_replayed,
        "recovery_seconds": replica.recovery_seconds,
        "failure": None if replica.failure is None else _describe(replica.failure),
    }


def histograms_of(replica: Replica) -> dict[str, Histogram]:
    """The node's latency histograms by name: ``wal_fsync_seconds`` (disk storage only)
    and ``checkpoint_seconds``. Live objects, read them without holding on."""
    out = {"checkpoint_seconds": replica.checkpointer.duration}
    storage = replica.storage
    if isinstance(storage, DiskStorage):
        out["wal_fsync_seconds"] = storage.fsync_latency
    return out


def _describe(exc: BaseException) -> str:
    """``"OSError: [Errno 28] No space left on device"``."""
    return f"{type(exc).__name__}: {exc}"

"""What ``cluster_status()`` reports about a node (layer L2)."""

from __future__ import annotations

from typing import Any

from crema.node.replica import Replica


def status_of(replica: Replica) -> dict[str, Any]:
    """Node id, role, term, leader, membership, indexes and counters."""
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
    }

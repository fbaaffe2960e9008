"""CheckpointPolicy: the log-count and time triggers."""

from __future__ import annotations

from crema.checkpoint import CheckpointConfig, CheckpointPolicy


def test_log_threshold_trigger() -> None:
    policy = CheckpointPolicy(CheckpointConfig("/c", log_threshold=100))
    assert not policy.should_snapshot(99, 1e9)
    assert policy.should_snapshot(100, 0)
    assert policy.should_snapshot(250, 0)


def test_time_trigger_needs_applied_entries() -> None:
    policy = CheckpointPolicy(CheckpointConfig("/c", log_threshold=1000, time_interval=60))
    assert not policy.should_snapshot(5, 59.9)
    assert policy.should_snapshot(5, 60)
    assert not policy.should_snapshot(0, 3600), "an idle node does not snapshot"


def test_no_time_trigger_by_default() -> None:
    policy = CheckpointPolicy(CheckpointConfig("/c", log_threshold=1000))
    assert not policy.should_snapshot(999, 10**9)

"""When to take a snapshot (layer L0: pure, reads no clock)."""

from __future__ import annotations

from crema.config import CheckpointConfig


class CheckpointPolicy:
    """Decides whether to snapshot now, from counts the caller measured.

    Either trigger fires: ``log_threshold`` entries applied since the last
    snapshot, or ``time_interval`` elapsed since it, provided at least one
    entry was applied meanwhile (an idle node does not rewrite the same state).
    """

    def __init__(self, config: CheckpointConfig) -> None:
        self.log_threshold = config.log_threshold
        interval = config.time_interval
        self.interval_seconds = None if interval is None else interval.total_seconds()

    def should_snapshot(self, entries_since_last: int, seconds_since_last: float) -> bool:
        """Whether to take a snapshot now.

        Args:
            entries_since_last: log entries applied since the last snapshot.
            seconds_since_last: seconds since the last snapshot (or since start).
        """
        if entries_since_last <= 0:
            return False
        if entries_since_last >= self.log_threshold:
            return True
        return self.interval_seconds is not None and seconds_since_last >= self.interval_seconds

"""A plain latency histogram: counts per bucket and a sum (no metrics library).

Storage and the node record durations here; the admin endpoint exports them
as Prometheus histograms at scrape time. Observing is a bisect and two
increments: no lock, no allocation.
"""

from __future__ import annotations

import bisect

__all__ = ["DURATION_BUCKETS", "FSYNC_BUCKETS", "Histogram"]

FSYNC_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                 0.25, 0.5, 1.0)  # fmt: skip
"""Upper bounds (seconds) for fsync latency."""

DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    120.0)  # fmt: skip
"""Upper bounds (seconds) for slow operations such as writing a snapshot."""


class Histogram:
    """Counts of observations per bucket (the last one unbounded) and their sum.

    Args:
        bounds: increasing upper bounds of the buckets, in seconds.
    """

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        """Count one observation."""
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    @property
    def count(self) -> int:
        """Observations so far."""
        return sum(self.counts)

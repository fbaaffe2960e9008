"""Exponential reconnect backoff with jitter (L0: randomness is injected)."""

from __future__ import annotations

import random


class Backoff:
    """Delays that double from ``initial`` up to ``maximum``, with "equal jitter".

    Each delay is drawn uniformly from ``[d/2, d]`` where ``d`` is the current
    exponential step, so peers that lost a node at the same moment do not all
    redial it in lockstep, and no delay is ever shorter than half the step.
    """

    def __init__(
        self, initial: float, maximum: float, rng: random.Random, multiplier: float = 2.0
    ) -> None:
        if not 0 < initial <= maximum:
            raise ValueError(f"need 0 < initial <= maximum, got {initial}, {maximum}")
        if multiplier < 1:
            raise ValueError(f"multiplier must be >= 1, got {multiplier}")
        self._initial = initial
        self._maximum = maximum
        self._multiplier = multiplier
        self._rng = rng
        self._step = initial

    def next_delay(self) -> float:
        """Return the next delay in seconds and grow the step."""
        step = self._step
        self._step = min(self._maximum, step * self._multiplier)
        return step / 2 + self._rng.uniform(0, step / 2)

    def reset(self) -> None:
        """Start again from ``initial`` (after a successful connection)."""
        self._step = self._initial

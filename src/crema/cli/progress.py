"""A minimal progress bar for long operations on a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """Draws ``label [#####.....]  42%`` on stderr, at most ten times a second.

    Call it as ``bar(delta, total)``, the shape of the reader's progress
    callbacks. Disabled (a no-op) when not ``enabled``.
    """

    def __init__(self, label: str, *, enabled: bool, stream: TextIO | None = None) -> None:
        self.label = label
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self._last_draw = 0.0
        self._drawn = False

    def __call__(self, delta: int, total: int) -> None:
        self.done += delta
        if not self.enabled or total <= 0:
            return
        now = time.monotonic()
        if now - self._last_draw < 0.1 and self.done < total:
            return
        self._last_draw = now
        fraction = min(self.done / total, 1.0)
        filled = int(fraction * 30)
        self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] {fraction:4.0%}")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        """Erase the bar."""
        if self._drawn:
            self.stream.write("\r" + " " * (len(self.label) + 40) + "\r")
            self.stream.flush()
            self._drawn = False


def interactive(json_output: bool = False) -> bool:
    """Whether to show progress: a terminal on both stdout and stderr, and no JSON."""
    return not json_output and sys.stdout.isatty() and sys.stderr.isatty()

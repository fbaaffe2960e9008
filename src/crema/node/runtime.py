"""Process-level runtime choices shared by every entry point (layer L2).

``crema serve``, ``python -m crema.node`` (tests and benchmarks) and
``python -m crema.server`` (the single-node preview) pick their event loop and
tune the cyclic garbage collector the same way, here.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
from collections.abc import Callable

__all__ = ["LOOP_CHOICES", "SERVING_GC_THRESHOLDS", "loop_factory", "loop_name", "tune_gc"]

LOOP_CHOICES = ("auto", "asyncio", "uvloop")
"""Values of the ``--event-loop`` options."""

SERVING_GC_THRESHOLDS = (20_000, 20, 20)
"""Cyclic GC thresholds of a serving node (Python's defaults: 700, 10, 10)."""


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop factory for ``choice`` (None: asyncio's own loop).

    ``auto`` uses uvloop when it can be imported (about 1.5-2x the requests/s
    of plain asyncio; a dependency everywhere but Windows), else asyncio;
    ``uvloop`` insists on it; ``asyncio`` never uses it.

    Raises:
        ImportError: ``uvloop`` was asked for and is not installed.
    """
    if choice == "asyncio":
        return None
    try:  # imported by name: type checks need no stubs, and it may be missing
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        if choice == "uvloop":
            raise
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def loop_name() -> str:
    """``uvloop`` or ``asyncio``: the running event loop's kind, for logs."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.startswith("uvloop") else "asyncio"


def tune_gc(thresholds: tuple[int, int, int] = SERVING_GC_THRESHOLDS) -> None:
    """Make the cyclic garbage collector cheap for a node that has just recovered.

    Every request allocates short-lived objects (futures, coroutines, lists),
    so with Python's default thresholds a young collection runs every few
    requests. With these thresholds collections run far less often, and what
    recovery built (the store, the log) is frozen out of them (``gc.freeze``):
    it stays alive, so scanning it is waste. Memory is still freed by
    reference counting as before.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)

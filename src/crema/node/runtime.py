"""Process-level runtime choices shared by every entry point (layer L2).

``crema serve``, ``python -m crema.node`` (tests and benchmarks) and
``python -m crema.server`` (the single-node preview) pick their event loop and
tune the cyclic garbage collector the same way, here.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
from collections.abc import Callable

__all__ = [
    "LOOP_CHOICES",
    "SERVING_GC_THRESHOLDS",
    "fit_max_clients",
    "loop_factory",
    "loop_name",
    "tune_gc",
]

log = logging.getLogger("crema.serve")

RESERVED_FDS = 64
"""File descriptors kept for everything but clients: the WAL and its lock,
snapshot files, the admin endpoint, the loop's own (plus 4 per peer)."""

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


def fit_max_clients(max_clients: int, peers: int) -> int:
    """``max_clients``, or fewer if the open-files limit cannot fit them.

    Like Redis, the soft ``RLIMIT_NOFILE`` is raised (up to the hard limit)
    to make room for every client plus :data:`RESERVED_FDS` and 4 per peer;
    if it cannot be, the client limit shrinks to what fits, with a warning.
    Otherwise a flood of clients would exhaust the descriptors the node
    needs for its WAL segments, snapshots and peer connections.
    """
    try:
        import resource  # noqa: PLC0415 - POSIX only
    except ImportError:  # pragma: no cover - Windows: no such limit to fit
        return max_clients
    reserved = RESERVED_FDS + 4 * peers
    want = max_clients + reserved
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < want:
        target = want if hard == resource.RLIM_INFINITY else min(want, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.debug("cannot raise the open files limit to %d: %s", target, exc)
    if soft != resource.RLIM_INFINITY and soft < want:
        fitted = max(1, soft - reserved)
        log.warning(
            "open files limit is %d: serving at most %d clients instead of %d "
            "(raise it with ulimit -n or LimitNOFILE=)",
            soft, fitted, max_clients,
        )  # fmt: skip
        return fitted
    return max_clients

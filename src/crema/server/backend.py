"""What the Redis-protocol server needs from a node (layer L2).

The RESP command layer turns each client command into either a state-machine
:class:`~crema.cache.commands.Command` (a write, or a conditional /
read-modify-write operation decided inside the state machine) or a read of
the local :class:`~crema.cache.state_machine.CacheStateMachine`. A
:class:`Backend` provides both: ``DistributedCache`` (writes through Raft)
and :class:`LocalBackend` (a single in-process state machine, for tests and
the embedded single-node case) implement it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any, Protocol

from crema.cache.commands import Command
from crema.cache.results import Result
from crema.cache.state_machine import CacheStateMachine


class Backend(Protocol):
    """The node as the server sees it."""

    @property
    def state_machine(self) -> CacheStateMachine:
        """The local replica, for reads (after :meth:`read_barrier` when linearizable)."""
        ...

    def clock_ms(self) -> int:
        """The node's wall clock in Unix ms: hides expired keys on reads, turns TTLs into
        absolute expiries when commands are built. (The leader restamps ``now_ms``.)"""
        ...

    async def execute(self, command: Command) -> Result:
        """Propose ``command``; return its result once committed and applied on this node.

        Raises:
            WriteRejectedError: definitely not applied (no leader, shutting down, ...).
            OutcomeUnknownError: proposed but unconfirmed (timeout, leader lost).
        """
        ...

    def submit(self, command: Command) -> asyncio.Future[Result] | None:
        """Start ``command`` now without waiting; a future of what :meth:`execute` returns.

        Ordering: the commands one caller submits, one after the other, apply
        in the order they were submitted (those that apply: one that fails
        with ``WriteRejectedError`` did not apply, and the ones after it may
        still). A submitted command is never retried behind the caller's back,
        so a refusal (the leader changed, ...) fails it with
        ``WriteRejectedError`` instead.

        Returns:
            The future, or None when the command cannot be sent at once (no
            leader known, leader unreachable): the caller then waits for its
            earlier submissions and uses :meth:`execute`, which retries.
        """
        ...

    def read_barrier(self) -> Awaitable[None]:
        """Wait until a linearizable read of the local state machine is safe (ReadIndex).

        The round starts when this is called (a future may be returned).

        Raises:
            WriteRejectedError: no leader could confirm a read index in time.
        """
        ...

    def status(self) -> dict[str, Any]:
        """Cluster status for ``CREMA.STATUS`` and ``INFO`` (node id, role, term, leader, ...)."""
        ...


class LocalBackend:
    """A single, unreplicated state machine behind the :class:`Backend` interface.

    Every command applies at once at the next index; reads need no barrier.
    """

    def __init__(self, state_machine: CacheStateMachine | None = None) -> None:
        self._sm = state_machine if state_machine is not None else CacheStateMachine()
        self._index = self._sm.applied_index

    @property
    def state_machine(self) -> CacheStateMachine:
        return self._sm

    def clock_ms(self) -> int:
        return time.time_ns() // 1_000_000

    async def execute(self, command: Command) -> Result:
        self._index += 1
        return self._sm.apply(self._index, 1, command)

    def submit(self, command: Command) -> asyncio.Future[Result] | None:
        fut: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._index += 1
        fut.set_result(self._sm.apply(self._index, 1, command))
        return fut

    async def read_barrier(self) -> None:
        return None

    def status(self) -> dict[str, Any]:
        return {
            "node_id": 1,
            "role": "leader",
            "term": 1,
            "leader_id": 1,
            "voters": [1],
            "learners": [],
            "commit_index": self._index,
            "applied_index": self._sm.applied_index,
        }

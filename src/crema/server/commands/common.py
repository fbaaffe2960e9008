"""Helpers shared by the command handlers: running writes, preparing reads, results to replies."""

from __future__ import annotations

import time
from typing import Any

from crema.cache.commands import Command
from crema.cache.results import CommandFailure, Result, Status
from crema.cache.state_machine import CacheStateMachine
from crema.errors import ProposalDroppedError
from crema.server.resp_reply import OK, ErrorReply, Reply
from crema.server.session import Session

__all__ = [
    "execute",
    "failure_reply",
    "may_retry",
    "now_ms",
    "read_view",
    "result_reply",
    "to_reply",
]


def failure_reply(failure: CommandFailure) -> ErrorReply:
    """The error reply for a state machine's :class:`CommandFailure`."""
    code, _, message = failure.message.partition(" ")
    return ErrorReply(code, message)


def result_reply(result: Result) -> Reply:
    """The reply for what applying a command returned."""
    if type(result) is Status:
        return OK
    if isinstance(result, CommandFailure):
        return failure_reply(result)
    assert not isinstance(result, Status)
    return result


async def execute(session: Session, command: Command) -> Reply:
    """Run ``command`` through the backend (atomic cluster-wide) and return its reply.

    The command is submitted at once (:meth:`Backend.submit`), so a connection
    can submit its next pipelined write while this one is in flight. When it
    cannot be sent at once (no leader known, ...), ``session.serial_write``
    is set: the connection runs nothing else until this write is done, which
    keeps the connection's writes in order while it waits and retries.

    Raises:
        WriteRejectedError: definitely not applied (the dispatcher replies ``-TRYAGAIN``).
        OutcomeUnknownError: may have been applied (``-UNKNOWN``).
    """
    server = session.server
    started = time.perf_counter()
    try:
        submitted = server.backend.submit(command)
        if submitted is None:
            session.serial_write = True
            result = await server.backend.execute(command)
        else:
            session.write_seq += 1
            seq = session.write_seq
            try:
                result = await submitted
            except ProposalDroppedError:
                if not may_retry(session, seq):
                    raise
                session.retrying += 1  # the connection starts nothing new meanwhile
                try:
                    result = await server.backend.execute(command)
                finally:
                    session.retrying -= 1
    finally:
        server.stats.write_latency.observe(time.perf_counter() - started)
    return result_reply(result)


def may_retry(session: Session, seq: int) -> bool:
    """Whether a write refused before it was proposed may be sent again.

    Only the connection's latest submission (number ``seq``) may: no write
    sent after it could then apply before it, so the order holds. Earlier
    ones in a pipeline fail with ``-TRYAGAIN`` instead.
    """
    return session.write_seq == seq and not session.closing


def now_ms(session: Session) -> int:
    """The node's wall clock in Unix ms, for building commands."""
    return session.server.backend.clock_ms()


async def read_view(session: Session) -> tuple[CacheStateMachine, int]:
    """Wait until a read is allowed by the session's read mode; the replica and the time.

    Raises:
        WriteRejectedError: linearizable mode and no read index could be confirmed.
    """
    await session.read_ready()
    backend = session.server.backend
    return backend.state_machine, backend.clock_ms()


def to_reply(value: Any) -> Reply:
    """Turn a status value (str, int, float, bool, None, list, dict) into a reply."""
    if value is None or isinstance(value, bytes | int | float):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, dict):
        return {str(k).encode(): to_reply(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_reply(v) for v in value]
    return str(value).encode()

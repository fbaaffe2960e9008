"""Run one client command: look it up, check arity and authentication, map errors to replies.

The order of checks is Redis 7.0's ``processCommand``: unknown command, then
arity (of the subcommand for containers such as CLIENT), then ``-NOAUTH``
for a client that has not authenticated, then the handler. Errors become
replies here, so handlers just raise:

==============================  =========================================
raised                          reply
==============================  =========================================
``CommandError``                ``-<code> <message>`` (Redis's wording)
``WriteRejectedError``          ``-TRYAGAIN <message>``: definitely not applied
``OutcomeUnknownError``         ``-UNKNOWN <message>``: may have been applied
``CommandTooLargeError``        ``-ERR <message>`` (not proposed)
``CremaError`` (other)          ``-ERR <message>``
==============================  =========================================
"""

from __future__ import annotations

import logging

from crema.errors import (
    CommandError,
    CommandTooLargeError,
    CremaError,
    OutcomeUnknownError,
    WriteRejectedError,
)
from crema.server.args import check_arity, text, unknown_command, unknown_subcommand
from crema.server.commands.table import COMMANDS, CommandSpec
from crema.server.resp_reply import ErrorReply, Reply
from crema.server.session import Session

__all__ = ["dispatch", "error_reply", "lookup", "prepare", "run", "runs_at_once"]

log = logging.getLogger(__name__)

_NOAUTH = ErrorReply("NOAUTH", "Authentication required.")


def lookup(args: list[bytes]) -> CommandSpec:
    """The spec that runs ``args``, its arity checked.

    Raises:
        CommandError: unknown command or subcommand, or wrong number of arguments.
    """
    spec = COMMANDS.get(args[0].lower())
    if spec is None:
        raise unknown_command(args)
    if spec.subcommands and (len(args) >= 2 or spec.handler is None):
        check_arity(spec.name, spec.arity, len(args))
        sub = spec.subcommands.get(text(args[1]).lower())
        if sub is None:
            raise unknown_subcommand(args[0], args[1])
        spec = sub
    check_arity(spec.name, spec.arity, len(args))
    return spec


def prepare(session: Session, args: list[bytes]) -> CommandSpec | ErrorReply:
    """Look ``args`` up and check arity and authentication: the spec to run, or the error reply."""
    stats = session.server.stats
    stats.commands_processed += 1
    try:
        spec = lookup(args)
    except CommandError as exc:
        stats.error_replies += 1
        return ErrorReply(exc.code, exc.message)
    session.last_command = spec.name
    if not session.authenticated and not spec.no_auth:
        stats.error_replies += 1
        return _NOAUTH
    return spec


def runs_at_once(session: Session, spec: CommandSpec) -> bool:
    """Whether ``spec`` can run without awaiting the backend (no write, no read barrier).

    Such a command may run outside a task, straight from the socket callback:
    it never calls ``backend.execute``, ``backend.read_barrier`` or a callback.
    """
    if spec.writes or spec.blocking:
        return False
    if "readonly" not in spec.flags or session.read_mode == "local":
        return True
    return session.server.barrier.satisfied(session.ticket)


async def run(session: Session, spec: CommandSpec, args: list[bytes]) -> Reply:
    """Run a prepared command; never raises a CremaError (it becomes an error reply)."""
    assert spec.handler is not None
    stats = session.server.stats
    calls = stats.calls
    calls[spec.name] = calls.get(spec.name, 0) + 1
    try:
        reply = await spec.handler(session, args)
    except CremaError as exc:
        reply = error_reply(exc)
    if type(reply) is ErrorReply:
        stats.error_replies += 1
        failed = stats.failed_calls
        failed[spec.name] = failed.get(spec.name, 0) + 1
    return reply


async def dispatch(session: Session, args: list[bytes]) -> Reply:
    """Run ``args`` (a whole command, name first) for ``session``; never raises a CremaError.

    Returns:
        The reply to send; an :class:`ErrorReply` when the command failed.
    """
    spec = prepare(session, args)
    if isinstance(spec, ErrorReply):
        return spec
    return await run(session, spec, args)


def error_reply(exc: CremaError) -> ErrorReply:
    """The reply a client gets for ``exc`` raised by a handler or the backend."""
    if isinstance(exc, CommandError):
        return ErrorReply(exc.code, exc.message)
    if isinstance(exc, WriteRejectedError):
        return ErrorReply("TRYAGAIN", str(exc) or "write not applied, safe to retry")
    if isinstance(exc, OutcomeUnknownError):
        return ErrorReply("UNKNOWN", str(exc) or "write outcome unknown, it may have been applied")
    if isinstance(exc, CommandTooLargeError):
        return ErrorReply("ERR", str(exc))
    log.warning("command failed: %s", exc)
    return ErrorReply("ERR", str(exc))

"""The command table: one :class:`CommandSpec` per command, filled by the handler modules.

A spec carries what Redis's command table carries (arity, flags, key
positions) so ``COMMAND INFO`` / ``COMMAND DOCS`` can describe crema's
commands the way clients and ``redis-cli`` expect, and the dispatcher can
check arity and authentication before a handler runs. Handler modules
register with the :func:`command` decorator; importing
:mod:`crema.server.commands` fills :data:`COMMANDS`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

from crema.server.resp_reply import Reply

if TYPE_CHECKING:
    from crema.server.session import Session

__all__ = ["COMMANDS", "CommandSpec", "Handler", "command", "container", "subcommand"]

Handler: TypeAlias = Callable[["Session", list[bytes]], Awaitable[Reply]]
"""A command handler: the session and the whole command (name first) in, a reply out."""


@dataclass(slots=True)
class CommandSpec:
    """One command (or subcommand) as Redis's command table describes it.

    Attributes:
        name: canonical lower-case name (``client|setname`` for a subcommand).
        arity: ``n`` exactly n arguments (the name included), ``-n`` at least n.
        flags: Redis command flags (``write``, ``readonly``, ``fast``,
            ``no-auth``, ``admin``, ...).
        first_key: position of the first key argument (0: no keys).
        last_key: position of the last key (-1: the last argument).
        step: distance between keys.
        group: the ``COMMAND DOCS`` group (``string``, ``generic``, ...).
        summary: one line for ``COMMAND DOCS``.
        since: the Redis version that introduced the command.
        handler: the coroutine that runs it (None for a container of subcommands).
        blocking: it awaits something other than the backend's methods (a
            callback), so it always runs in a task.
        subcommands: lower-case subcommand name to its spec.
    """

    name: str
    arity: int
    flags: tuple[str, ...]
    first_key: int
    last_key: int
    step: int
    group: str
    summary: str
    since: str
    handler: Handler | None = None
    blocking: bool = False
    subcommands: dict[str, CommandSpec] = field(default_factory=dict)

    @property
    def writes(self) -> bool:
        """Whether the command changes data (goes through ``backend.execute``)."""
        return "write" in self.flags

    @property
    def no_auth(self) -> bool:
        """Whether the command runs before the client has authenticated."""
        return "no-auth" in self.flags


COMMANDS: dict[bytes, CommandSpec] = {}
"""Lower-case command name to its spec, filled as the handler modules load."""


def command(
    name: str,
    arity: int,
    flags: str = "",
    keys: tuple[int, int, int] = (0, 0, 0),
    *,
    group: str,
    summary: str,
    since: str = "1.0.0",
    blocking: bool = False,
) -> Callable[[Handler], Handler]:
    """Register the decorated coroutine as the handler of a top-level command.

    Args:
        name: the lower-case command name.
        arity: Redis arity.
        flags: space-separated Redis flags.
        keys: (first key, last key, step).
        group: the documentation group.
        summary: one line of documentation.
        since: the Redis version that introduced it.
        blocking: see :attr:`CommandSpec.blocking`.
    """

    def register(handler: Handler) -> Handler:
        spec = _spec(name, arity, flags, keys, group, summary, since, handler)
        spec.blocking = blocking
        COMMANDS[name.encode()] = spec
        return handler

    return register


def container(
    name: str,
    *,
    group: str,
    summary: str,
    since: str = "1.0.0",
    arity: int = -2,
    flags: str = "",
    handler: Handler | None = None,
) -> None:
    """Register a command made of subcommands (``CLIENT``, ``COMMAND``).

    ``handler`` runs the command given without a subcommand (bare ``COMMAND``).
    """
    spec = _spec(name, arity, flags, (0, 0, 0), group, summary, since, handler)
    COMMANDS[name.encode()] = spec


def subcommand(
    parent: str,
    name: str,
    arity: int,
    flags: str = "",
    *,
    summary: str,
    since: str = "1.0.0",
) -> Callable[[Handler], Handler]:
    """Register the decorated coroutine as ``PARENT NAME`` (``CLIENT SETNAME``).

    The parent must have been registered with :func:`container`.
    """

    def register(handler: Handler) -> Handler:
        container = COMMANDS[parent.encode()]
        full = f"{parent}|{name}"
        spec = _spec(full, arity, flags, (0, 0, 0), container.group, summary, since, handler)
        container.subcommands[name] = spec
        return handler

    return register


def _spec(
    name: str,
    arity: int,
    flags: str,
    keys: tuple[int, int, int],
    group: str,
    summary: str,
    since: str,
    handler: Handler | None,
) -> CommandSpec:
    first, last, step = keys
    return CommandSpec(name, arity, tuple(flags.split()), first, last, step, group, summary, since,
                       handler)  # fmt: skip

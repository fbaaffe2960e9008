"""What applying a command returns (layer L0).

A result is a plain value the RESP layer can turn into a Redis reply:

============================  =============================================
result                        Redis reply
============================  =============================================
``OK``                        simple string ``+OK``
``None``                      null bulk string (``$-1`` / RESP3 null)
``bytes``                     bulk string
``int``                       integer
:class:`CommandFailure`       error reply ``-{message}``
============================  =============================================

A :class:`CommandFailure` is *returned*, not raised: it is a deterministic
outcome of the log (every replica computes the same one), so it travels back
to the client like any other reply and never stops the apply loop.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final


class Status(enum.Enum):
    """A status reply; the only member is ``OK``."""

    OK = "OK"


OK: Final = Status.OK
"""The ``+OK`` reply."""

NOT_AN_INTEGER: Final = "ERR value is not an integer or out of range"
"""Redis's error text when a stored value is not a 64-bit signed integer."""

OVERFLOW: Final = "ERR increment or decrement would overflow"
"""Redis's error text when INCRBY/DECRBY would leave the 64-bit range."""


@dataclass(frozen=True, slots=True)
class CommandFailure:
    """A command-level error reply, decided inside the state machine.

    Attributes:
        message: the full Redis error text without the leading ``-``, error
            code first (for example ``"ERR value is not an integer or out of
            range"``).
    """

    message: str

    @property
    def code(self) -> str:
        """The error code: the first word of the message (``"ERR"``)."""
        return self.message.split(" ", 1)[0]


Result = Status | bytes | int | CommandFailure | None
"""Anything :meth:`crema.cache.CacheStateMachine.apply` can return."""

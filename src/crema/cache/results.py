"""What applying a command returns, and Redis's integer rule (layer L0).

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

TOO_LARGE: Final = "ERR string exceeds maximum allowed size (proto-max-bulk-len)"
"""Redis's error text when APPEND would build a value over 512 MiB."""

_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_MAX_INT_CHARS: Final = 20


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


def parse_int64(raw: bytes) -> int | None:
    """Parse ``raw`` as Redis's ``string2ll`` does, or return None.

    Only canonical decimal: an optional ``-``, no ``+``, no spaces, no
    leading zeros (``"0"`` itself is fine, ``"-0"`` is not), 64-bit range.
    """
    if not raw or len(raw) > _MAX_INT_CHARS:
        return None
    if raw == b"0":
        return 0
    digits = raw[1:] if raw[0] == 0x2D else raw
    if not digits or not digits.isdigit() or digits[0] == 0x30:
        return None
    value = int(raw)
    return value if _INT64_MIN <= value <= _INT64_MAX else None

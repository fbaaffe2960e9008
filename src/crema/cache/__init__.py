"""The replicated cache state machine (layer L0: pure, no I/O, no clock).

- :mod:`crema.cache.commands`: the state-changing commands (frozen values).
- :mod:`crema.cache.codec`: their versioned msgpack encoding for log entries.
- :mod:`crema.cache.state_machine`: :class:`CacheStateMachine`, which applies
  committed commands, serves local reads and supports snapshots.
- :mod:`crema.cache.results`: what ``apply`` returns.
"""

from __future__ import annotations

from crema.cache.codec import MAX_COMMAND_BYTES, decode_command, encode_command
from crema.cache.commands import (
    Append,
    Clear,
    Command,
    Delete,
    Expire,
    ExpireCondition,
    GetDel,
    IncrBy,
    MSet,
    Noop,
    Persist,
    Set,
    SetCondition,
)
from crema.cache.glob import glob_match
from crema.cache.results import OK, CommandFailure, Result, Status, parse_int64
from crema.cache.state_machine import CacheStateMachine
from crema.cache.store import EntriesView, EntryLike

__all__ = [
    "MAX_COMMAND_BYTES",
    "OK",
    "Append",
    "CacheStateMachine",
    "Clear",
    "Command",
    "CommandFailure",
    "Delete",
    "EntriesView",
    "EntryLike",
    "Expire",
    "ExpireCondition",
    "GetDel",
    "IncrBy",
    "MSet",
    "Noop",
    "Persist",
    "Result",
    "Set",
    "SetCondition",
    "Status",
    "decode_command",
    "encode_command",
    "glob_match",
    "parse_int64",
]

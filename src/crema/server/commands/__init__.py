"""The RESP command layer: the command table and the handlers behind it.

Importing this package registers every handler in :data:`COMMANDS`;
:func:`dispatch` runs one command for a session. Handler modules:

- :mod:`.strings`: GET, SET, SETEX, PSETEX, SETNX, GETDEL, MGET, MSET, INCR
  family, APPEND, STRLEN
- :mod:`.keys`: DEL, UNLINK, EXISTS, EXPIRE and TTL families, PERSIST, TYPE,
  DBSIZE, FLUSHDB, FLUSHALL, SCAN, KEYS
- :mod:`.connection`: PING, ECHO, HELLO, AUTH, SELECT, QUIT, CLIENT
- :mod:`.admin`: INFO, COMMAND, SHUTDOWN, CREMA.STATUS, CREMA.READMODE,
  CREMA.CHECKPOINT
"""

from __future__ import annotations

from crema.server.commands import admin, connection, keys, strings
from crema.server.commands.dispatch import dispatch, error_reply, lookup
from crema.server.commands.table import COMMANDS, CommandSpec

__all__ = ["COMMANDS", "CommandSpec", "admin", "connection", "dispatch", "error_reply", "keys",
           "lookup", "strings"]  # fmt: skip

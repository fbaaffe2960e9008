"""Bodies of forwarded requests and their replies (pure encoding, no I/O).

A follower forwards a write to the leader as a ``Forward`` transport item
whose body is one of:

* ``[0, command bytes]``: a state-machine command (encoded by the cache codec);
* ``[1, change type, node id, address]``: a membership change;
* ``[2, node id]``: a leadership transfer;
* ``[3, node id]``: the sender discarded its local state and needs the leader to
  probe it from scratch (a snapshot install follows);
* ``[4, [command bytes, ...]]``: a batch of state-machine commands (at most
  :data:`MAX_BATCH_ITEMS`, :data:`MAX_BATCH_BYTES` of commands), proposed in
  this order;
* ``[6]``: the addresses the leader knows for the cluster's members (asked by
  a node that lacks some: see :mod:`crema.node.discovery`). Not a write.

The leader answers with a ``ForwardResp`` whose body is
``[status, index, value, leader_hint]``: status 0 = applied at ``index`` on the
leader with result ``value``; 1 = rejected before it was proposed (definitely
not applied); 2 = outcome unknown (may have been applied). A batch is answered
with ``[5, [reply, ...]]``, one ``[status, index, value, leader_hint]`` per
command in the batch's order. A leader that does not know batches (an older
version) answers a batch with one plain rejection (``unknown forward kind 4``).
The addresses are answered as ``[0, 0, [[node id, "host:port"], ...], None]``
(at most :data:`MAX_PEER_ROWS` rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from crema.cache.results import OK, CommandFailure, Result
from crema.errors import PeerProtocolError

REQ_COMMAND = 0
REQ_CONF_CHANGE = 1
REQ_TRANSFER = 2
REQ_REJOIN = 3
REQ_BATCH = 4
REPLY_BATCH = 5
REQ_PEERS = 6
_REQUEST_KINDS = frozenset(
    (REQ_COMMAND, REQ_CONF_CHANGE, REQ_TRANSFER, REQ_REJOIN, REQ_BATCH, REQ_PEERS)
)

MAX_BATCH_ITEMS = 256
"""Commands in one batch at most (checked when decoding, before building the list)."""
MAX_BATCH_BYTES = 1024 * 1024
"""Encoded commands in one batch at most (the sender starts a new batch past this)."""

MAX_PEER_ROWS = 1024
"""Rows of a ``REQ_PEERS`` answer at most (a sanity bound: clusters are small)."""
MAX_ADDRESS_CHARS = 300
"""Characters of one address in a ``REQ_PEERS`` answer at most."""

STATUS_OK = 0
STATUS_REJECTED = 1
STATUS_UNKNOWN = 2


@dataclass(frozen=True, slots=True)
class ForwardReply:
    """A decoded ``ForwardResp`` body."""

    status: int
    index: int
    value: Any
    leader_hint: int | None


def encode_request(kind: int, *fields: object) -> bytes:
    """The body of a ``Forward`` item."""
    return msgpack.packb([kind, *fields], use_bin_type=True)  # type: ignore[no-any-return]


def decode_request(body: bytes) -> tuple[int, list[Any]]:
    """``(kind, fields)`` of a ``Forward`` body.

    Raises:
        PeerProtocolError: the body is malformed.
    """
    try:
        item = msgpack.unpackb(
            body, raw=False, strict_map_key=True, max_array_len=MAX_BATCH_ITEMS, max_map_len=0
        )
    except Exception as exc:
        raise PeerProtocolError(f"bad forward body: {exc}") from exc
    if not isinstance(item, list) or not item or not isinstance(item[0], int):
        raise PeerProtocolError("forward body is not [kind, ...]")
    if item[0] not in (
        REQ_COMMAND,
        REQ_CONF_CHANGE,
        REQ_TRANSFER,
        REQ_REJOIN,
        REQ_BATCH,
        REQ_PEERS,
    ):
        raise PeerProtocolError(f"unknown forward kind {item[0]}")
    return item[0], item[1:]


def encode_batch(commands: list[bytes]) -> bytes:
    """The body of a ``Forward`` item carrying encoded commands to propose in order."""
    if not commands or len(commands) > MAX_BATCH_ITEMS:
        raise ValueError(f"a batch holds 1 to {MAX_BATCH_ITEMS} commands, got {len(commands)}")
    return msgpack.packb([REQ_BATCH, commands], use_bin_type=True)  # type: ignore[no-any-return]


def batch_commands(fields: list[Any]) -> list[bytes]:
    """The commands of a ``REQ_BATCH`` request's fields.

    Raises:
        PeerProtocolError: not a list of 1 to :data:`MAX_BATCH_ITEMS` byte strings.
    """
    if len(fields) != 1 or not isinstance(fields[0], list):
        raise PeerProtocolError("batch body is not [4, [command, ...]]")
    commands = fields[0]
    if not commands or len(commands) > MAX_BATCH_ITEMS:
        raise PeerProtocolError(f"batch of {len(commands)} commands")
    if not all(isinstance(c, bytes) for c in commands):
        raise PeerProtocolError("batch item is not bytes")
    return commands


def encode_batch_reply(replies: list[ForwardReply]) -> bytes:
    """The body of the ``ForwardResp`` answering a batch."""
    rows = [[r.status, r.index, r.value, r.leader_hint] for r in replies]
    return msgpack.packb([REPLY_BATCH, rows], use_bin_type=True)  # type: ignore[no-any-return]


def decode_batch_reply(body: bytes, count: int) -> list[ForwardReply] | ForwardReply:
    """The ``count`` replies of a batch, or the one reply refusing the batch as a whole.

    Raises:
        PeerProtocolError: the body is malformed or holds another number of replies.
    """
    try:
        item = msgpack.unpackb(
            body, raw=False, strict_map_key=True, max_array_len=MAX_BATCH_ITEMS, max_map_len=0
        )
    except Exception as exc:
        raise PeerProtocolError(f"bad forward reply: {exc}") from exc
    if isinstance(item, list) and len(item) == 4:
        return _reply_of(item)
    if not (isinstance(item, list) and len(item) == 2 and item[0] == REPLY_BATCH):
        raise PeerProtocolError("batch reply is not [5, [reply, ...]]")
    rows = item[1]
    if not isinstance(rows, list) or len(rows) != count:
        raise PeerProtocolError(f"batch reply does not hold {count} replies")
    return [_reply_of(row) for row in rows]


def peer_rows(value: Any) -> list[tuple[int, str]]:
    """The ``(node id, address)`` rows of a ``REQ_PEERS`` answer's value.

    Raises:
        PeerProtocolError: not a list of at most :data:`MAX_PEER_ROWS`
            ``[positive int, str]`` pairs (addresses of at most
            :data:`MAX_ADDRESS_CHARS` characters).
    """
    if not isinstance(value, list) or len(value) > MAX_PEER_ROWS:
        raise PeerProtocolError("peer list is not a list of at most 1024 rows")
    rows = []
    for row in value:
        if not (isinstance(row, list) and len(row) == 2):
            raise PeerProtocolError("peer row is not [node id, address]")
        node, addr = row
        if type(node) is not int or node < 1:
            raise PeerProtocolError(f"bad node id in peer list: {node!r}")
        if not isinstance(addr, str) or not 0 < len(addr) <= MAX_ADDRESS_CHARS:
            raise PeerProtocolError("bad address in peer list")
        rows.append((node, addr))
    return rows


def encode_result(result: Result) -> list[Any]:
    """A state-machine result as a msgpack-friendly list."""
    if result is OK:
        return [0]
    if result is None:
        return [1]
    if isinstance(result, bytes):
        return [2, result]
    if isinstance(result, CommandFailure):
        return [4, result.message]
    return [3, result]


def decode_result(value: Any) -> Result:
    """Inverse of :func:`encode_result`.

    Raises:
        PeerProtocolError: the value is malformed.
    """
    if not isinstance(value, list) or not value:
        raise PeerProtocolError("bad result")
    tag = value[0]
    if tag == 0:
        return OK
    if tag == 1:
        return None
    if tag == 2 and len(value) == 2 and isinstance(value[1], bytes):
        return value[1]
    if tag == 3 and len(value) == 2 and isinstance(value[1], int):
        return int(value[1])
    if tag == 4 and len(value) == 2 and isinstance(value[1], str):
        return CommandFailure(value[1])
    raise PeerProtocolError("bad result")


def encode_reply(reply: ForwardReply) -> bytes:
    """The body of a ``ForwardResp`` item."""
    packed = msgpack.packb(
        [reply.status, reply.index, reply.value, reply.leader_hint], use_bin_type=True
    )
    return packed  # type: ignore[no-any-return]


def decode_reply(body: bytes) -> ForwardReply:
    """Inverse of :func:`encode_reply`.

    Raises:
        PeerProtocolError: the body is malformed.
    """
    try:
        item = msgpack.unpackb(body, raw=False, strict_map_key=True)
    except Exception as exc:
        raise PeerProtocolError(f"bad forward reply: {exc}") from exc
    return _reply_of(item)


def _reply_of(item: Any) -> ForwardReply:
    if not isinstance(item, list) or len(item) != 4:
        raise PeerProtocolError("forward reply is not [status, index, value, hint]")
    status, index, value, hint = item
    if status not in (STATUS_OK, STATUS_REJECTED, STATUS_UNKNOWN) or not isinstance(index, int):
        raise PeerProtocolError("bad forward reply status or index")
    if hint is not None and not isinstance(hint, int):
        raise PeerProtocolError("bad leader hint")
    return ForwardReply(status, index, value, hint)

"""Bodies of forwarded requests and their replies (pure encoding, no I/O).

A follower forwards a write to the leader as a ``Forward`` transport item
whose body is one of:

* ``[0, command bytes]``: a state-machine command (encoded by the cache codec);
* ``[1, change type, node id, address]``: a membership change;
* ``[2, node id]``: a leadership transfer;
* ``[3, node id]``: the sender discarded its local state and needs the leader to
  probe it from scratch (a snapshot install follows).

The leader answers with a ``ForwardResp`` whose body is
``[status, index, value, leader_hint]``: status 0 = applied at ``index`` on the
leader with result ``value``; 1 = rejected before it was proposed (definitely
not applied); 2 = outcome unknown (may have been applied).
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
        item = msgpack.unpackb(body, raw=False, strict_map_key=True)
    except Exception as exc:
        raise PeerProtocolError(f"bad forward body: {exc}") from exc
    if not isinstance(item, list) or not item or not isinstance(item[0], int):
        raise PeerProtocolError("forward body is not [kind, ...]")
    if item[0] not in (REQ_COMMAND, REQ_CONF_CHANGE, REQ_TRANSFER, REQ_REJOIN):
        raise PeerProtocolError(f"unknown forward kind {item[0]}")
    return item[0], item[1:]


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
    if not isinstance(item, list) or len(item) != 4:
        raise PeerProtocolError("forward reply is not [status, index, value, hint]")
    status, index, value, hint = item
    if status not in (STATUS_OK, STATUS_REJECTED, STATUS_UNKNOWN) or not isinstance(index, int):
        raise PeerProtocolError("bad forward reply status or index")
    if hint is not None and not isinstance(hint, int):
        raise PeerProtocolError("bad leader hint")
    return ForwardReply(status, index, value, hint)

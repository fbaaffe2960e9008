"""Single-server membership changes carried in ``CONF_CHANGE`` log entries (Raft §6, thesis §4.1).

A :class:`ConfChange` is encoded with :mod:`struct` (never pickle) into the
entry's data. It takes effect when the runtime applies the committed entry and
calls ``RawNode.apply_conf_change``. Applying is idempotent: re-applying a
change after a restart (the application restored an older snapshot) yields the
same membership.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from crema.errors import InvalidConfChangeError
from crema.raft.types import ConfState, NodeId

_HEADER = struct.Struct(">BBQ")
_VERSION = 1


class ConfChangeType(enum.IntEnum):
    """The kind of single-server change."""

    ADD_VOTER = 0
    """Add a voter, or promote a learner to voter."""
    ADD_LEARNER = 1
    """Add a non-voting learner (also demotes a voter)."""
    REMOVE_NODE = 2
    """Remove a voter or a learner."""


@dataclass(frozen=True, slots=True)
class ConfChange:
    """One membership change; ``context`` is opaque to the core (e.g. the peer's address)."""

    type: ConfChangeType
    node_id: NodeId
    context: bytes = b""

    def __post_init__(self) -> None:
        if self.node_id < 1:
            raise InvalidConfChangeError(f"node id must be >= 1, got {self.node_id}")

    def encode(self) -> bytes:
        """The bytes stored in a ``CONF_CHANGE`` entry."""
        return _HEADER.pack(_VERSION, int(self.type), self.node_id) + self.context

    @classmethod
    def decode(cls, data: bytes) -> ConfChange:
        """Decode :meth:`encode` output.

        Raises:
            InvalidConfChangeError: the bytes are not a conf change.
        """
        if len(data) < _HEADER.size:
            raise InvalidConfChangeError(f"conf change too short: {len(data)} bytes")
        version, kind, node = _HEADER.unpack_from(data)
        if version != _VERSION:
            raise InvalidConfChangeError(f"unknown conf change version {version}")
        try:
            change_type = ConfChangeType(kind)
        except ValueError as exc:
            raise InvalidConfChangeError(f"unknown conf change type {kind}") from exc
        return cls(change_type, NodeId(node), bytes(data[_HEADER.size :]))

    def apply_to(self, conf: ConfState) -> ConfState:
        """The membership after this change (idempotent).

        Raises:
            InvalidConfChangeError: the change would leave no voter.
        """
        voters, learners = set(conf.voters), set(conf.learners)
        node = self.node_id
        if self.type is ConfChangeType.ADD_VOTER:
            learners.discard(node)
            voters.add(node)
        elif self.type is ConfChangeType.ADD_LEARNER:
            voters.discard(node)
            learners.add(node)
        else:
            voters.discard(node)
            learners.discard(node)
        if not voters:
            raise InvalidConfChangeError(f"{self.type.name} {node} would leave no voter")
        return ConfState(frozenset(voters), frozenset(learners))

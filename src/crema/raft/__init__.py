"""The Raft consensus core: a pure state machine (layer L0).

Nothing in this package touches a socket, a file, a clock, a thread or
asyncio. Randomness comes only from an injected ``random.Random``. See
``docs/raft.md`` for the driving loop; the names a runtime needs are
re-exported here.
"""

from __future__ import annotations

from crema.raft.confchange import ConfChange, ConfChangeType
from crema.raft.config import RaftConfig
from crema.raft.core import Role
from crema.raft.memory_storage import MemoryStorage
from crema.raft.messages import Message, MessageType
from crema.raft.rawnode import RawNode, Ready, SnapshotPlan, SoftState, Status, bootstrap
from crema.raft.read_only import ReadState

__all__ = [
    "ConfChange",
    "ConfChangeType",
    "MemoryStorage",
    "Message",
    "MessageType",
    "RaftConfig",
    "RawNode",
    "ReadState",
    "Ready",
    "Role",
    "SnapshotPlan",
    "SoftState",
    "Status",
    "bootstrap",
]

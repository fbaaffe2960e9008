"""The one exception tree of crema.

Every error crema raises on purpose derives from :class:`CremaError`. The tree
is split by blame: bad input that arrived from a file, a peer or a client
(corruption, protocol violations) versus misuse by the caller (bad
configuration, calling a method in the wrong state). Errors carry the fields a
handler needs (path, offset, leader hint) so that callers never have to parse
a message.

A broken internal invariant is not a ``CremaError``: it raises
``AssertionError`` or ``RuntimeError`` and is never swallowed.
"""

from __future__ import annotations

from pathlib import Path


class CremaError(Exception):
    """Root of every error crema raises on purpose."""


class ConfigError(CremaError, ValueError):
    """A configuration value is invalid.

    Attributes:
        field: the name of the offending configuration field.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


# --------------------------------------------------------------------------
# Snapshots (MCRS files)
# --------------------------------------------------------------------------


class SnapshotError(CremaError):
    """A snapshot could not be written, read or restored.

    Attributes:
        path: the file concerned, when there is one.
    """

    def __init__(self, message: str, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path


class SnapshotCorruptedError(SnapshotError):
    """A snapshot file failed verification (bad magic, CRC mismatch, ...).

    Attributes:
        path: the corrupted file.
        reason: what is wrong with it, in a few words.
    """

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}", path)
        self.reason = reason


class NoSnapshotError(SnapshotError):
    """No usable snapshot exists where one was asked for."""


# --------------------------------------------------------------------------
# Raft log storage
# --------------------------------------------------------------------------


class StorageError(CremaError):
    """The Raft log storage failed."""


class CompactedError(StorageError):
    """The requested log index has been compacted into a snapshot."""


class EntryUnavailableError(StorageError):
    """The requested log index is beyond the last index in storage."""


class CorruptLogError(StorageError):
    """A write-ahead-log record failed its checksum before the tail.

    Attributes:
        path: the segment file.
        offset: byte offset of the bad record in that file.
    """

    def __init__(self, path: Path, offset: int, reason: str) -> None:
        super().__init__(f"{path} at offset {offset}: {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason


# --------------------------------------------------------------------------
# Writes through the cluster: was it applied?
# --------------------------------------------------------------------------


class WriteError(CremaError):
    """A write did not complete. ``may_have_been_applied`` says whether a retry is safe.

    Attributes:
        may_have_been_applied: False when the write was refused before it was
            proposed (definitely not applied: retrying is safe); True when it
            was proposed but its outcome is unknown (timed out, leader lost):
            retry only if the write is idempotent, or read first.
    """

    may_have_been_applied: bool = False


class WriteRejectedError(WriteError):
    """The write was refused before it was proposed: definitely not applied."""

    may_have_been_applied = False


class UnavailableError(WriteRejectedError):
    """No leader was reachable within the write timeout; nothing was proposed."""


class OutcomeUnknownError(WriteError):
    """The write was proposed but not confirmed: it may have been applied."""

    may_have_been_applied = True


class WriteTimeoutError(OutcomeUnknownError, TimeoutError):
    """The write was proposed but not confirmed within the write timeout."""


class LeadershipLostError(OutcomeUnknownError):
    """The leader changed or stepped down after the write was proposed."""


class ShutdownError(WriteRejectedError):
    """The node is shutting down and accepts no new work."""


# --------------------------------------------------------------------------
# Consensus
# --------------------------------------------------------------------------


class RaftError(CremaError):
    """An operation on the Raft core was refused."""


class ProposalDroppedError(RaftError, WriteRejectedError):
    """A proposal was refused before it entered the log (definitely not applied).

    Attributes:
        leader_hint: the node id this node believes is leader, or None.
    """

    def __init__(self, message: str, leader_hint: int | None = None) -> None:
        super().__init__(message)
        self.leader_hint = leader_hint


class NotLeaderError(ProposalDroppedError):
    """The node is not the leader; ``leader_hint`` names the one it knows of."""


class InvalidConfChangeError(RaftError):
    """A membership change is malformed or would leave the cluster without voters."""


class ProposalInProgressError(ProposalDroppedError):
    """A configuration change is already pending; propose the next one after it applies."""


# --------------------------------------------------------------------------
# Peer transport
# --------------------------------------------------------------------------


class PeerProtocolError(CremaError):
    """Bytes from a peer break the transport protocol; the connection is dropped.

    Attributes:
        reason: what is wrong, in a few words (never contains secret material).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class FrameTooLargeError(PeerProtocolError):
    """A frame length exceeds the configured maximum (checked before allocating).

    Attributes:
        size: the announced or actual payload length.
        limit: the configured maximum frame size.
    """

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"frame of {size} bytes exceeds the {limit}-byte limit")
        self.size = size
        self.limit = limit


class HandshakeError(PeerProtocolError):
    """A peer failed the transport handshake (wrong cluster, wrong node, bad MAC, ...)."""


# --------------------------------------------------------------------------
# Client protocol (RESP)
# --------------------------------------------------------------------------


class ProtocolError(CremaError):
    """A client sent bytes that are not a valid RESP request.

    The message is Redis's wording (``Protocol error: invalid bulk length``);
    the server replies ``-ERR <message>`` and closes the connection.
    """


class CommandError(CremaError):
    """A client command was refused with a Redis-style error reply.

    The connection stays open; the server replies ``-<code> <message>``.

    Attributes:
        code: the error prefix, such as ``ERR``, ``WRONGTYPE`` or ``TRYAGAIN``.
        message: the text after the prefix.
    """

    def __init__(self, message: str, code: str = "ERR") -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message


# --------------------------------------------------------------------------
# Replicated cache state machine
# --------------------------------------------------------------------------


class CommandDecodeError(CremaError, ValueError):
    """Bytes that should hold a state-machine command do not decode to one.

    Raised for garbage, truncated or oversized input, an unknown version or
    opcode, or a field of the wrong type or out of range.

    Attributes:
        reason: what is wrong, in a few words.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"cannot decode command: {reason}")
        self.reason = reason


class CommandTooLargeError(CremaError, ValueError):
    """A command is larger than one Raft log entry may carry; it was not proposed.

    Attributes:
        size: the command's size, in ``unit``.
        limit: the maximum allowed, in ``unit``.
        unit: ``"bytes"`` (encoded size) or ``"keys"`` (keys in one command).
    """

    def __init__(self, size: int, limit: int, unit: str = "bytes") -> None:
        super().__init__(f"command has {size} {unit}, more than the limit of {limit}")
        self.size = size
        self.limit = limit
        self.unit = unit

"""Frozen configuration values, validated where they are built (layer L0).

Every config is a frozen dataclass; ``with_*`` builders return a new config,
as in the checkpointing guide::

    config = (
        CheckpointConfig("./checkpoints")
        .with_log_threshold(10_000)
        .with_time_interval(3600)
        .with_max_snapshots(5)
    )

Invalid values raise :class:`crema.errors.ConfigError` naming the field.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from crema.errors import ConfigError

DurationLike = timedelta | float | int


def to_timedelta(field: str, value: DurationLike | None) -> timedelta | None:
    """Normalise a duration given as ``timedelta`` or seconds; None stays None.

    Raises:
        ConfigError: the value is not positive, not finite or of another type.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigError(field, f"expected seconds or a timedelta, got {value!r}")
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, int | float):
        if not math.isfinite(value):
            raise ConfigError(field, f"must be finite, got {value!r}")
        try:
            result = timedelta(seconds=value)
        except OverflowError as exc:
            raise ConfigError(field, f"out of range: {value!r}") from exc
    else:
        raise ConfigError(field, f"expected seconds or a timedelta, got {type(value).__name__}")
    if result <= timedelta(0):
        raise ConfigError(field, f"must be positive, got {result.total_seconds()} s")
    return result


def _positive_int(field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(field, f"expected an integer, got {value!r}")
    if value < 1:
        raise ConfigError(field, f"must be >= 1, got {value}")
    return value


def _flag(field: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(field, f"expected True or False, got {value!r}")
    return value


@dataclass(frozen=True, slots=True, init=False)
class CheckpointConfig:
    """How and when a node writes MCRS snapshots.

    Attributes:
        directory: where snapshot files live (created if missing).
        log_threshold: snapshot after this many applied log entries.
        time_interval: also snapshot after this much time (if anything was
            applied since the last snapshot); None disables the time trigger.
            Accepts a ``timedelta`` or seconds and is stored as a ``timedelta``.
        compression: LZ4-compress snapshot bodies.
        max_snapshots: how many newest snapshots to keep.
        auto_recover: on start, restore from the newest valid snapshot plus
            the log after it. On by default, so that a restarted node never
            silently comes back empty; turn it off only to discard local
            state and catch up from the leader.
    """

    directory: Path
    log_threshold: int = 10_000
    time_interval: timedelta | None = None
    compression: bool = True
    max_snapshots: int = 5
    auto_recover: bool = True

    def __init__(
        self,
        directory: str | os.PathLike[str],
        log_threshold: int = 10_000,
        time_interval: DurationLike | None = None,
        compression: bool = True,
        max_snapshots: int = 5,
        auto_recover: bool = True,
    ) -> None:
        if not isinstance(directory, str | os.PathLike) or str(directory) == "":
            raise ConfigError("directory", f"expected a non-empty path, got {directory!r}")
        object.__setattr__(self, "directory", Path(directory))
        object.__setattr__(self, "log_threshold", _positive_int("log_threshold", log_threshold))
        object.__setattr__(self, "time_interval", to_timedelta("time_interval", time_interval))
        object.__setattr__(self, "compression", _flag("compression", compression))
        object.__setattr__(self, "max_snapshots", _positive_int("max_snapshots", max_snapshots))
        object.__setattr__(self, "auto_recover", _flag("auto_recover", auto_recover))

    def _replace(self, **changes: object) -> CheckpointConfig:
        values: dict[str, object] = {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self)
        }
        values.update(changes)
        return CheckpointConfig(**values)  # type: ignore[arg-type]

    def with_log_threshold(self, log_threshold: int) -> CheckpointConfig:
        """A copy that snapshots every ``log_threshold`` applied entries."""
        return self._replace(log_threshold=log_threshold)

    def with_time_interval(self, time_interval: DurationLike | None) -> CheckpointConfig:
        """A copy that also snapshots every ``time_interval`` (None disables it)."""
        return self._replace(time_interval=time_interval)

    def with_compression(self, compression: bool) -> CheckpointConfig:
        """A copy with LZ4 compression on or off."""
        return self._replace(compression=compression)

    def with_max_snapshots(self, max_snapshots: int) -> CheckpointConfig:
        """A copy that keeps the ``max_snapshots`` newest snapshot files."""
        return self._replace(max_snapshots=max_snapshots)

    def with_auto_recover(self, auto_recover: bool) -> CheckpointConfig:
        """A copy with recovery from the newest snapshot on start on or off."""
        return self._replace(auto_recover=auto_recover)

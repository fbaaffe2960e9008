"""``CheckpointManager``: the snapshot files of one checkpoint directory (layer L1).

The directory holds complete snapshots named
``snapshot-{index:016x}-{term:016x}.snap`` (so name order is log order),
temporary files of writers in progress (``.*.tmp``) and quarantined files
(``*.broken``) that failed verification and are kept for inspection.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Protocol

from crema.checkpoint.format import Now, SnapshotEntry, SnapshotMetadata, now_to_ms
from crema.checkpoint.info import SnapshotInfo
from crema.checkpoint.reader import SnapshotReader, gc_paused
from crema.checkpoint.writer import TEMP_SUFFIX, EntryLike, SnapshotWriter, fsync_directory
from crema.config import CheckpointConfig
from crema.errors import (
    ConfigError,
    NoSnapshotError,
    SnapshotCorruptedError,
    SnapshotError,
)

log = logging.getLogger(__name__)

SNAPSHOT_SUFFIX = ".snap"
BROKEN_SUFFIX = ".broken"
_NAME = re.compile(r"^snapshot-([0-9a-f]{16})-([0-9a-f]{16})\.snap$")


class RestoreTarget(Protocol):
    """Something a snapshot can be restored into (a cache's store)."""

    def restore_entries(self, entries: Iterable[SnapshotEntry]) -> None:
        """Replace the current contents with ``entries``."""
        ...


def snapshot_name(index: int, term: int) -> str:
    """The file name of the snapshot at (index, term)."""
    return f"snapshot-{index:016x}-{term:016x}{SNAPSHOT_SUFFIX}"


def parse_snapshot_name(name: str) -> tuple[int, int] | None:
    """(index, term) from a snapshot file name, or None if it is not one."""
    match = _NAME.match(name)
    if match is None:
        return None
    return int(match.group(1), 16), int(match.group(2), 16)


def snapshot_paths(directory: Path) -> list[Path]:
    """The ``*.snap`` files in ``directory``, in no particular order."""
    try:
        return [p for p in directory.iterdir() if p.name.endswith(SNAPSHOT_SUFFIX)]
    except OSError as exc:
        raise SnapshotError(f"cannot list {directory}: {exc}", directory) from exc


def list_snapshots(directory: Path) -> list[SnapshotInfo]:
    """Readable snapshots in ``directory``, oldest to newest by (index, term); reads only."""
    infos: list[SnapshotInfo] = []
    for path in snapshot_paths(directory):
        try:
            with SnapshotReader.open(path) as reader:
                infos.append(reader.info())
        except SnapshotError as exc:
            log.debug("not listing %s: %s", path, exc)
    infos.sort(key=lambda info: (info.metadata.index, info.metadata.term, info.path.name))
    return infos


class CheckpointManager:
    """Creates, lists, verifies, prunes and restores the snapshots in a directory.

    Args:
        config: the checkpoint configuration (directory, compression, retention).
        target: where :meth:`restore_from` restores to by default; a cache
            attaches itself here.

    Raises:
        SnapshotError: the directory cannot be created.
    """

    def __init__(self, config: CheckpointConfig, target: RestoreTarget | None = None) -> None:
        self.config = config
        self.target = target
        self.directory = config.directory
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SnapshotError(
                f"cannot create checkpoint directory {self.directory}: {exc}", self.directory
            ) from exc
        self._remove_leftover_temp_files()

    def _remove_leftover_temp_files(self) -> None:
        removed = False
        for path in self.directory.glob(f".*{TEMP_SUFFIX}"):
            try:
                path.unlink()
                removed = True
                log.warning("removed leftover temporary snapshot file %s", path)
            except OSError as exc:
                log.warning("cannot remove leftover temporary file %s: %s", path, exc)
        if removed:
            fsync_directory(self.directory)

    # -- listing ------------------------------------------------------------

    def _snapshot_paths(self) -> list[Path]:
        return snapshot_paths(self.directory)

    def list_snapshots(self) -> list[SnapshotInfo]:
        """Snapshots whose header and entry count can be read, oldest to newest.

        Ordered by (index, term), so ``[-1]`` is the latest. The CRC is not
        checked; unreadable files are left out (see :meth:`verify_snapshot`).
        """
        return list_snapshots(self.directory)

    def latest_snapshot(self) -> SnapshotInfo | None:
        """The newest listed snapshot, or None."""
        snapshots = self.list_snapshots()
        return snapshots[-1] if snapshots else None

    def verify_snapshot(self, path: str | os.PathLike[str]) -> None:
        """Fully verify one file.

        Raises:
            SnapshotCorruptedError: with ``reason`` saying what is wrong.
            SnapshotError: the file is missing or unreadable.
        """
        with SnapshotReader.open(path) as reader:
            reader.verify()

    # -- writing ------------------------------------------------------------

    def create_snapshot(
        self, metadata: SnapshotMetadata, entries: Iterable[EntryLike]
    ) -> SnapshotInfo:
        """Write a snapshot of ``entries`` at ``metadata``, then apply retention.

        Args:
            metadata: index, term and timestamp of the snapshot.
            entries: ``SnapshotEntry`` objects or ``(key, value, expiry)``
                tuples (expiry: None, Unix ms, or an aware datetime).

        Raises:
            SnapshotError: writing failed; existing snapshots are untouched.
        """
        path = self.directory / snapshot_name(metadata.index, metadata.term)
        with SnapshotWriter(path, metadata, compression=self.config.compression) as writer:
            writer.write_entries(entries)
        info = writer.finish()
        self._apply_retention()
        return info

    def _apply_retention(self) -> None:
        ordered = sorted(self._ordered_by_name(), key=lambda item: item[0])
        excess = len(ordered) - self.config.max_snapshots
        if excess <= 0:
            return
        for _, path in ordered[:excess]:
            try:
                path.unlink()
                log.info("retention: deleted old snapshot %s", path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("retention: cannot delete %s: %s", path, exc)
        fsync_directory(self.directory)

    def _ordered_by_name(self) -> Iterator[tuple[tuple[int, int], Path]]:
        """(index, term) and path of each snapshot, from its name or else its header."""
        for path in self._snapshot_paths():
            key = parse_snapshot_name(path.name)
            if key is None:
                try:
                    with SnapshotReader.open(path) as reader:
                        meta = reader.metadata()
                except SnapshotError:
                    continue
                key = (meta.index, meta.term)
            yield key, path

    # -- recovery -----------------------------------------------------------

    def load_latest(self, now: Now | None = None) -> tuple[SnapshotInfo, list[SnapshotEntry]]:
        """The newest snapshot that verifies, with its live entries.

        Every ``*.snap`` file is tried newest first; each that fails
        verification is renamed to ``<name>.broken`` and the next older one
        is tried.

        Raises:
            NoSnapshotError: no snapshot verifies.
        """
        now_ms = _now_ms(now)
        for _, path in sorted(self._ordered_by_name(), key=lambda item: item[0], reverse=True):
            try:
                with SnapshotReader.open(path) as reader:
                    # entries() checks the CRC first; decoding it all checks the structure.
                    live = reader.read_all(live_at=now_ms)
                    return reader.info(), live
            except SnapshotCorruptedError as exc:
                self._quarantine(path, exc.reason)
        raise NoSnapshotError(f"no valid snapshot in {self.directory}", self.directory)

    def _quarantine(self, path: Path, reason: str) -> None:
        broken = path.with_name(path.name + BROKEN_SUFFIX)
        log.warning("snapshot %s is corrupted (%s); renamed to %s", path, reason, broken.name)
        try:
            os.replace(path, broken)
            fsync_directory(self.directory)
        except OSError as exc:
            log.warning("cannot quarantine %s: %s", path, exc)

    def restore_from(
        self,
        path: str | os.PathLike[str],
        target: RestoreTarget | None = None,
        now: Now | None = None,
    ) -> SnapshotInfo:
        """Verify ``path`` whole, then restore its live entries into ``target``.

        Entries whose expiry is at or before ``now`` are skipped; the others
        keep their absolute expiry. A corrupted file never reaches the target.

        Args:
            path: the snapshot file.
            target: where to restore; defaults to the manager's target.
            now: aware datetime or Unix ms; defaults to the current time.

        Returns:
            The restored snapshot's :class:`SnapshotInfo`.

        Raises:
            ConfigError: neither ``target`` nor a manager target is set.
            SnapshotCorruptedError: the file fails verification.
            SnapshotError: the file is missing or unreadable.
        """
        destination = target if target is not None else self.target
        if destination is None:
            raise ConfigError("target", "restore_from() needs a target: pass one or attach one")
        now_ms = _now_ms(now)
        with SnapshotReader.open(path) as reader:
            # Decode everything (CRC first, then the full structure) before the
            # target sees a single entry: one pass instead of verify-then-read.
            live = reader.read_all(live_at=now_ms)
            info = reader.info()
        with gc_paused():  # the target builds as many objects as the file holds
            destination.restore_entries(live)
        return info


def _now_ms(now: Now | None) -> int:
    if now is None:
        now = datetime.now().astimezone()
    return now_to_ms(now)

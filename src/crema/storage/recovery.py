"""Scan a WAL directory, rebuild its state, and repair it when told to (layer L1).

:func:`scan_wal` only reads: it replays every segment in order and stops at
the first damage, which it classifies as a torn tail (a crash while
appending; safe to truncate) or corruption (refuse to start). The CLI uses it
as is; :class:`~crema.storage.wal.DiskStorage` then calls :func:`truncate_torn`
or :func:`repair` on the result.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from crema.errors import CorruptLogError
from crema.storage.record import FILE_HEADER_SIZE, PayloadError, RecordKind, decode_entries
from crema.storage.segment import (
    BROKEN_SUFFIX,
    TMP_SUFFIX,
    SegmentName,
    SegmentScan,
    fsync_dir,
    list_segments,
    quarantine,
    read_segment,
)
from crema.storage.state import WalState

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SegmentReport:
    """One segment as scanned."""

    seq: int
    first_index: int
    path: Path
    size: int
    records: int
    valid_end: int


@dataclass(frozen=True, slots=True)
class Damage:
    """The first bad spot of a WAL directory.

    Attributes:
        path: the segment concerned.
        offset: byte offset of the first bad record in it.
        reason: what is wrong, in a few words.
        torn: a crash artifact at the very end of the log (truncated on open).
        repairable: whether dropping everything from ``offset`` on fixes it.
    """

    path: Path
    offset: int
    reason: str
    torn: bool
    repairable: bool = True

    def error(self) -> CorruptLogError:
        """The error that refuses to open this directory."""
        return CorruptLogError(self.path, self.offset, self.reason)


@dataclass(slots=True)
class ScanResult:
    """What :func:`scan_wal` found."""

    state: WalState
    segments: list[SegmentReport] = field(default_factory=list)
    damage: Damage | None = None
    unscanned: list[SegmentName] = field(default_factory=list)
    superseded: list[Path] = field(default_factory=list)
    """Segments older than a gap in the sequence numbers (left by an interrupted cleanup)."""


@dataclass(frozen=True, slots=True)
class RepairReport:
    """What an ``open(repair=True)`` dropped to get back to a valid prefix.

    Attributes:
        path: the segment where corruption was found.
        offset: where the valid prefix of that segment ends.
        reason: the corruption found.
        dropped_bytes: bytes removed from the log (kept in ``.broken`` files).
        quarantined: the ``.broken`` files holding what was dropped.
    """

    path: Path
    offset: int
    reason: str
    dropped_bytes: int
    quarantined: list[Path]


def _scan_segment(result: ScanResult, seg: SegmentName, last: bool, deep: bool) -> bool:
    """Replay one segment into ``result``; return whether the scan may go on."""
    data = read_segment(seg.path)
    scan = SegmentScan(data, last=last)
    state = result.state
    count = 0
    for offset, kind, payload in scan:
        try:
            if count == 0 and kind != RecordKind.STATE:
                raise PayloadError("segment does not start with a STATE record")
            state.apply(kind, payload, seg.seq, offset, len(payload) + 16)
            if deep and kind == RecordKind.ENTRIES:
                decode_entries(payload)
        except PayloadError as exc:
            result.damage = Damage(seg.path, offset, str(exc), torn=False)
            scan.end = offset
            break
        count += 1
    else:
        if scan.problem is not None:
            p = scan.problem
            result.damage = Damage(seg.path, p.offset, p.reason, torn=p.torn)
    result.segments.append(
        SegmentReport(seg.seq, seg.first_index, seg.path, len(data), count, scan.end)
    )
    return result.damage is None


def scan_wal(directory: Path, *, deep: bool = False) -> ScanResult:
    """Replay the segments of ``directory`` (read only) up to the first damage.

    Args:
        directory: the WAL directory (a missing one scans as empty).
        deep: also decode every entry (recovery needs only the terms).
    """
    result = ScanResult(WalState())
    segments = list_segments(directory)
    lost = ""
    for i, seg in enumerate(segments):
        if i > 0 and seg.seq != segments[i - 1].seq + 1:
            # Every segment opens with the full state, so replay restarts here; if
            # the lost segments held live entries, the check below finds them missing.
            lost = f" (segments {segments[i - 1].seq + 1}..{seg.seq - 1} are gone)"
            superseded = result.superseded + [s.path for s in result.segments]
            result = ScanResult(WalState(), superseded=superseded)
        if not _scan_segment(result, seg, i == len(segments) - 1, deep):
            result.unscanned = segments[i + 1 :]
            return result
    gap = result.state.index.missing()
    if gap is not None and result.segments:
        reason = f"entries {gap[0]}..{gap[1]} are missing{lost or ' (a segment was lost)'}"
        first = result.segments[0].path
        result.damage = Damage(first, 0, reason, torn=False, repairable=False)
    return result


def truncate_torn(damage: Damage, *, durable: bool) -> None:
    """Cut a torn tail off the last segment, with a warning."""
    size = damage.path.stat().st_size
    log.warning(
        "WAL %s: torn tail at offset %d (%s); truncating %d bytes",
        damage.path,
        damage.offset,
        damage.reason,
        size - damage.offset,
    )
    _truncate(damage.path, damage.offset, durable=durable)


def _truncate(path: Path, offset: int, *, durable: bool) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, offset)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)


def repair(result: ScanResult, *, durable: bool) -> RepairReport:
    """Keep the valid prefix in front of ``result.damage``; quarantine the rest.

    Raises:
        CorruptLogError: the damage cannot be repaired by dropping a suffix.
    """
    damage = result.damage
    assert damage is not None
    if not damage.repairable:
        raise damage.error()
    quarantined: list[Path] = []
    dropped = 0
    later = list(result.unscanned)
    if damage.offset <= FILE_HEADER_SIZE:
        later.insert(0, SegmentName(0, 0, damage.path))
    else:
        data = read_segment(damage.path)
        tail = damage.path.with_name(f"{damage.path.name}.{damage.offset}{BROKEN_SUFFIX}")
        tail.write_bytes(data[damage.offset :])
        quarantined.append(tail)
        dropped += len(data) - damage.offset
        _truncate(damage.path, damage.offset, durable=durable)
    for seg in later:
        dropped += seg.path.stat().st_size
        quarantined.append(quarantine(seg.path))
    if durable:
        fsync_dir(damage.path.parent)
    report = RepairReport(damage.path, damage.offset, damage.reason, dropped, quarantined)
    log.warning(
        "WAL repaired: %s at offset %d: %s; dropped %d bytes, quarantined %s",
        damage.path,
        damage.offset,
        damage.reason,
        dropped,
        [str(p) for p in quarantined],
    )
    return report


def recover(
    directory: Path, *, allow_repair: bool, durable: bool
) -> tuple[ScanResult, RepairReport | None]:
    """Bring ``directory`` to a state a WAL can be opened from, and replay it.

    Removes leftover temporary files and superseded segments, truncates a
    torn tail (with a warning) and, if allowed, repairs corruption.

    Raises:
        CorruptLogError: corruption that ``allow_repair`` does not permit (or
            cannot) fix.
    """
    for name in os.listdir(directory):
        if name.endswith(TMP_SUFFIX):
            os.unlink(directory / name)
    result = scan_wal(directory)
    report = None
    damage = result.damage
    if damage is not None:
        if damage.torn:
            truncate_torn(damage, durable=durable)
        elif allow_repair:
            report = repair(result, durable=durable)
            result = scan_wal(directory)
            if result.damage is not None:
                raise result.damage.error()
        else:
            raise damage.error()
    for path in result.superseded:  # a cleanup interrupted by a crash: finish it
        path.unlink()
    if result.superseded and durable:
        fsync_dir(directory)
    return result, report

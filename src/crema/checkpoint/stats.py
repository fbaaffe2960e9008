"""Statistics of one snapshot file, for ``crema snapshot inspect`` and metrics (layer L1)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from crema.checkpoint.format import COUNT, CRC_SIZE, ENTRY_OVERHEAD, HEADER_SIZE, Now, now_to_ms
from crema.checkpoint.reader import Progress, SnapshotReader


@dataclass(frozen=True, slots=True)
class SizeStats:
    """Minimum, maximum, mean and total of a set of byte lengths."""

    min: int
    max: int
    mean: float
    total: int


@dataclass(frozen=True, slots=True)
class SnapshotStats:
    """What ``crema snapshot inspect`` reports about a verified snapshot."""

    path: Path
    index: int
    term: int
    timestamp_ms: int
    compressed: bool
    entry_count: int
    live: int
    expired: int
    with_ttl: int
    keys: SizeStats
    values: SizeStats
    stored_size: int
    plain_size: int

    @property
    def ratio(self) -> float:
        """Uncompressed file size over stored size (1.0 for an uncompressed file)."""
        plain_file = self.plain_size + HEADER_SIZE + CRC_SIZE
        return plain_file / self.stored_size if self.stored_size else 1.0

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        data = asdict(self)
        data["path"] = str(self.path)
        data["ratio"] = round(self.ratio, 3)
        return data


class _Sizes:
    def __init__(self) -> None:
        self.min: int | None = None
        self.max = 0
        self.total = 0
        self.count = 0

    def add(self, size: int) -> None:
        self.min = size if self.min is None or size < self.min else self.min
        self.max = max(self.max, size)
        self.total += size
        self.count += 1

    def result(self) -> SizeStats:
        mean = self.total / self.count if self.count else 0.0
        return SizeStats(self.min or 0, self.max, round(mean, 1), self.total)


def inspect_snapshot(path: str | Path, now: Now, progress: Progress | None = None) -> SnapshotStats:
    """Verify ``path`` and gather its statistics (entries live or expired at ``now``).

    Raises:
        SnapshotCorruptedError: the file fails verification.
        SnapshotError: the file is missing or unreadable.
    """
    now_ms = now_to_ms(now)
    keys, values = _Sizes(), _Sizes()
    live = with_ttl = 0
    with SnapshotReader.open(path) as reader:
        for entry in reader.entries(progress):
            keys.add(len(entry.key))
            values.add(len(entry.value))
            if entry.expiry_ms is None:
                live += 1
            else:
                with_ttl += 1
                live += entry.expiry_ms > now_ms
        meta = reader.metadata()
        count = reader.entry_count
        plain = COUNT.size + keys.total + values.total + ENTRY_OVERHEAD * count
        return SnapshotStats(
            path=reader.path,
            index=meta.index,
            term=meta.term,
            timestamp_ms=meta.timestamp_ms,
            compressed=reader.compressed,
            entry_count=count,
            live=live,
            expired=count - live,
            with_ttl=with_ttl,
            keys=keys.result(),
            values=values.result(),
            stored_size=reader.size,
            plain_size=plain,
        )

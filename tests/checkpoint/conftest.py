"""Fixtures shared by the checkpoint tests."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from crema.checkpoint import SnapshotMetadata, SnapshotWriter
from crema.checkpoint import format as fmt

NOW_MS = 1_790_000_000_000  # a fixed "now" for TTL tests: 2026-09-21


def metadata(index: int = 7, term: int = 3, ms: int = NOW_MS) -> SnapshotMetadata:
    """Snapshot metadata with a fixed timestamp."""
    return SnapshotMetadata(index, term, datetime.fromtimestamp(ms / 1000, UTC))


def write_snapshot(
    path: Path,
    entries: list[tuple[bytes, bytes, int | None]],
    *,
    compression: bool = True,
    meta: SnapshotMetadata | None = None,
) -> Path:
    """Write ``entries`` to ``path`` with crema's writer."""
    with SnapshotWriter(path, meta or metadata(), compression=compression) as writer:
        for key, value, expiry in entries:
            writer.write_entry(key, value, expiry)
    return path


@pytest.fixture
def small_entries() -> list[tuple[bytes, bytes, int | None]]:
    """A handful of entries: plain, with a past expiry, with a future expiry, empty."""
    return [
        (b"user:1", b"alice", None),
        (b"session:9", b"token-9", NOW_MS - 1),
        (b"session:10", b"token-10", NOW_MS + 60_000),
        (b"", b"", None),
    ]


@pytest.fixture(autouse=True, params=["accelerated", "pure-python"])
def codec_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run every checkpoint test on both codec paths: the C accelerator and pure Python."""
    if request.param == "accelerated":
        if not fmt.accelerated():
            pytest.skip("the C accelerator is not built")
    else:
        monkeypatch.setattr(fmt, "_accel", None)
    return str(request.param)

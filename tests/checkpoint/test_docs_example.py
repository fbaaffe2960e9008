"""The worked hex example in docs/snapshot-format.md is exactly what crema writes."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from crema.checkpoint import SnapshotEntry, SnapshotMetadata, SnapshotReader, SnapshotWriter
from tests.checkpoint import mcrs_reference

DOC = Path(__file__).resolve().parents[2] / "docs" / "snapshot-format.md"


def _doc_bytes() -> bytes:
    text = DOC.read_text()
    block = text.split("## Worked example", 1)[1].split("```", 2)[1]
    hex_digits = "".join(
        " ".join(re.findall(r"\b[0-9a-f]{2}\b", line.split("  ", 1)[1]))
        for line in block.strip().splitlines()
    )
    return bytes.fromhex(hex_digits.replace(" ", ""))


def test_doc_example_matches_writer(tmp_path: Path) -> None:
    meta = SnapshotMetadata(42, 3, datetime(2026, 11, 26, 12, tzinfo=UTC))
    path = tmp_path / "example.snap"
    with SnapshotWriter(path, meta, compression=False) as writer:
        writer.write_entry(b"user:1", b"alice")
        writer.write_entry(b"otp", b"123456", 1795000000000)
    assert path.read_bytes() == _doc_bytes()
    with SnapshotReader.open(path) as reader:
        assert list(reader.entries()) == [
            SnapshotEntry(b"user:1", b"alice", None),
            SnapshotEntry(b"otp", b"123456", 1795000000000),
        ]
    assert mcrs_reference.decode(_doc_bytes())[:2] == (42, 3)

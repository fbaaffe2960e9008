"""Run every transcript under ``tests/raft/testdata`` (``CREMA_REWRITE=1`` rewrites them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.raft.transcript import check_file

TESTDATA = Path(__file__).parent / "testdata"


@pytest.mark.parametrize("path", sorted(TESTDATA.glob("*.txt")), ids=lambda p: p.stem)
def test_transcript(path: Path) -> None:
    """The core's behaviour matches the recorded transcript."""
    check_file(path)

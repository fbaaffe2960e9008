"""``crema wal inspect`` / ``crema wal verify`` through ``crema.cli.main``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crema.cli import main
from crema.raft.types import ConfState, HardState, Index, NodeId, SnapshotMeta, Term
from crema.storage import DiskStorage
from crema.storage.segment import list_segments
from tests.storage.conftest import ents


@pytest.fixture
def wal_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "wal"
    with DiskStorage.open(directory, segment_size=4096) as s:
        for lo in range(1, 100, 10):
            s.append(ents(lo, lo + 9, term=2, size=100))
        s.set_hard_state(HardState(Term(2), NodeId(1), Index(90)))
        s.set_conf_state(ConfState(frozenset({NodeId(1), NodeId(2)})))
        s.create_snapshot(SnapshotMeta(Index(50), Term(2)))
        s.compact(Index(40))
    return directory


def test_inspect_reports_the_log(wal_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["wal", "inspect", str(wal_dir)]) == 0
    out = capsys.readouterr().out
    assert "entries:     41..100" in out
    assert "hard state:  term 2 vote 1 commit 90" in out
    assert "snapshot:    index 50 term 2" in out
    assert main(["wal", "inspect", str(wal_dir), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["first_index"], summary["last_index"]) == (41, 100)
    assert summary["conf_state"]["voters"] == [1, 2]
    assert [s["file"] for s in summary["segments"]] == [s.path.name for s in list_segments(wal_dir)]
    assert summary["ok"] and summary["corruption"] is None


def test_verify_ok_torn_and_corrupt(wal_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["wal", "verify", str(wal_dir)]) == 0
    assert capsys.readouterr().out.startswith("OK:")
    last = list_segments(wal_dir)[-1].path
    data = last.read_bytes()
    last.write_bytes(data[:-5])  # a torn tail: sound, reported
    assert main(["wal", "verify", str(wal_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["torn_tail"]["path"] == str(last)
    first = list_segments(wal_dir)[0].path
    damaged = bytearray(first.read_bytes())
    damaged[100] ^= 0x01
    first.write_bytes(bytes(damaged))
    assert main(["wal", "verify", str(wal_dir)]) == 1
    assert f"CORRUPT: {first} at offset" in capsys.readouterr().out
    assert main(["wal", "inspect", str(wal_dir), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["corruption"]["path"] == str(first)


def test_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["wal", "verify", str(tmp_path / "missing")]) == 2
    assert "no such directory" in capsys.readouterr().err
    assert main(["wal"]) == 2
    assert main(["wal", "inspect"]) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["wal", "verify", str(empty)]) == 0
    assert "entries 1..0" in capsys.readouterr().out

"""``crema snapshot ...`` and ``crema demo`` through ``main(argv)``: output and exit codes."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from crema.checkpoint import CheckpointConfig, CheckpointManager
from crema.cli import main
from tests.checkpoint.conftest import NOW_MS, metadata


@pytest.fixture
def checkpoints(tmp_path: Path) -> Path:
    manager = CheckpointManager(CheckpointConfig(tmp_path / "ckpt", max_snapshots=10))
    entries: list[tuple[bytes, bytes, int | None]] = [
        (b"user:1", b"alice", None),
        (b"otp:1", b"123456", NOW_MS - 1000),  # long expired
        (b"\xff\xfe", b"\x80\x01binary", 4_000_000_000_000),  # far future
    ]
    manager.create_snapshot(metadata(10, 1), entries)
    manager.create_snapshot(metadata(20, 2), entries[:1])
    return manager.directory


def _corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-6] ^= 0x01  # inside the body, past the LZ4 frame header
    path.write_bytes(bytes(data))


def test_list_table_and_json(checkpoints: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["snapshot", "list", str(checkpoints)]) == 0
    out = capsys.readouterr().out
    assert "INDEX" in out
    assert "snapshot-000000000000000a-0000000000000001.snap" in out
    assert main(["snapshot", "list", str(checkpoints), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(s["index"], s["term"], s["entries"]) for s in doc["snapshots"]] == [
        (10, 1, 3),
        (20, 2, 1),
    ]
    assert all(s["ratio"] > 0 for s in doc["snapshots"])


def test_list_missing_directory_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["snapshot", "list", str(tmp_path / "nope")]) == 2
    assert "no such directory" in capsys.readouterr().err
    assert not (tmp_path / "nope").exists(), "listing must not create the directory"


def test_verify_ok_corrupted_and_missing(
    checkpoints: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["snapshot", "verify", str(checkpoints)]) == 0
    out = capsys.readouterr().out
    assert out.count(": OK") == 2
    newest = sorted(checkpoints.glob("*.snap"))[-1]
    _corrupt(newest)
    assert main(["snapshot", "verify", str(checkpoints)]) == 1
    out = capsys.readouterr().out
    assert f"{newest}: CORRUPTED - CRC mismatch" in out
    assert main(["snapshot", "verify", str(checkpoints / "missing.snap")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["snapshot", "verify", str(newest), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False
    assert doc["results"][0]["status"] == "CORRUPTED"
    assert "CRC" in doc["results"][0]["reason"]


def test_inspect_reports_live_and_expired(
    checkpoints: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    oldest = sorted(checkpoints.glob("*.snap"))[0]
    assert main(["snapshot", "inspect", str(oldest), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["index"] == 10
    assert doc["entry_count"] == 3
    assert doc["live"] == 2
    assert doc["expired"] == 1
    assert doc["with_ttl"] == 2
    assert doc["keys"] == {"min": 2, "max": 6, "mean": 4.3, "total": 13}
    assert doc["plain_size"] == 8 + 3 * 16 + 13 + (5 + 6 + 8)
    assert main(["snapshot", "inspect", str(oldest)]) == 0
    assert "2 live, 1 expired" in capsys.readouterr().out
    _corrupt(oldest)
    assert main(["snapshot", "inspect", str(oldest)]) == 1
    assert "CORRUPTED - CRC mismatch" in capsys.readouterr().err


def test_dump_jsonl_with_base64_for_binary(
    checkpoints: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    oldest = sorted(checkpoints.glob("*.snap"))[0]
    assert main(["snapshot", "dump", str(oldest)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0] == {
        "key": "user:1",
        "key_encoding": "utf-8",
        "value": "alice",
        "value_encoding": "utf-8",
        "expiry_ms": None,
    }
    assert lines[1]["expiry_ms"] == NOW_MS - 1000, "expired entries are included"
    assert lines[2]["key_encoding"] == "base64"
    assert base64.b64decode(lines[2]["key"]) == b"\xff\xfe"
    assert base64.b64decode(lines[2]["value"]) == b"\x80\x01binary"
    _corrupt(oldest)
    assert main(["snapshot", "dump", str(oldest)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "", "nothing is dumped from a file that fails its CRC"
    assert "CORRUPTED" in captured.err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["snapshot"]) == 2
    assert main(["snapshot", "frobnicate"]) == 2
    assert main(["snapshot", "dump", "x.snap", "--format", "xml"]) == 2
    assert main(["--version"]) == 0
    capsys.readouterr()


def test_python_dash_m_and_demo_run(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "crema",
            "demo",
            "--checkpoints-only",
            "--dir",
            str(tmp_path / "d"),
            "--entries",
            "2000",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "CORRUPTED - CRC mismatch" in result.stdout
    assert "skipped 500 expired" in result.stdout
    assert "keeps its absolute expiry: True" in result.stdout

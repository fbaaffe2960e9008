"""The examples in docs/wal.md work as written and print what the doc shows."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from crema.cli import main

DOC = Path(__file__).resolve().parents[2] / "docs" / "wal.md"


def blocks(kind: str) -> list[str]:
    """The fenced blocks of ``docs/wal.md`` tagged ``kind``."""
    parts = DOC.read_text().split("```")
    return [p[len(kind) :].strip("\n") for p in parts[1::2] if p.startswith(kind + "\n")]


def commands(block: str) -> list[tuple[str, str]]:
    """(command, expected output) pairs of a console block."""
    pairs: list[tuple[str, str]] = []
    for chunk in ("\n" + block).split("\n$ ")[1:]:
        command, _, output = chunk.partition("\n")
        pairs.append((command, output))
    return pairs


def run(command: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    argv = shlex.split(command.split(";", maxsplit=1)[0])
    assert argv[0] == "crema"
    code = main(argv[1:])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_python_and_cli_examples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks("python")[0], str(DOC), "exec"), {})  # the first example
    assert capsys.readouterr().out == "durable up to record 2 last index 100\n"
    first, second = blocks("console")
    assert len(commands(first)) == 3
    for command, expected in commands(first):
        code, out, _ = run(command, capsys)
        assert code == 0, command
        assert out.strip("\n") == expected.strip("\n"), command
    # the second block: flip the byte the doc flips, then verify
    segment = tmp_path / "demo-wal" / "0000000000000001-0000000000000001.wal"
    data = bytearray(segment.read_bytes())
    data[200] ^= 1
    segment.write_bytes(bytes(data))
    shown = [(c, o) for c, o in commands(second) if c.startswith("crema")]
    assert len(shown) == 2
    for command, expected in shown:
        code, out, err = run(command, capsys)
        *lines, exit_line = expected.strip("\n").splitlines()
        assert f"exit {code}" == exit_line, command
        assert (out + err).strip("\n") == "\n".join(lines), command

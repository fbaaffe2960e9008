"""The README's embedded example runs as written (three nodes in one process)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_embedded_example_runs(tmp_path: Path) -> None:
    text = README.read_text()
    section = text.split("## Embedded in an asyncio program", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    script = tmp_path / "three.py"
    script.write_text(code)
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "b'ada'"
    assert lines[1] == "b'x'"
    leader, count = lines[2].split()
    assert leader in {"1", "2", "3"}
    assert count == "2"

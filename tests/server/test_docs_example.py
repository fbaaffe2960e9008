"""docs/server.md's examples run as written against ``python -m crema.server``.

The preview server is started as a subprocess on a free port (the docs say
7379); the ``redis-cli`` console session must print what the docs show, the
redis-py block must run, and ``SHUTDOWN`` must stop the process with status 0.
"""

from __future__ import annotations

import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.server.redis_server import free_port

DOC = Path(__file__).resolve().parents[2] / "docs" / "server.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), re.DOTALL)


def wait_for(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the preview server did not start")


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="needs redis-cli")
def test_preview_server_runs_the_docs_examples() -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "crema.server", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for(port)
        console = blocks("console")[0].splitlines()
        for i, line in enumerate(console):
            if not line.startswith("$ "):
                continue
            argv = shlex.split(line[2:].replace("7379", str(port)))
            out = subprocess.run([argv[0], "--no-raw", *argv[1:]], capture_output=True,
                                 text=True, timeout=20, check=True).stdout  # fmt: skip
            assert out.rstrip("\n") == console[i + 1], line
        code = blocks("python")[0].replace("7379", str(port))
        exec(compile(code, str(DOC), "exec"), {})
        subprocess.run(["redis-cli", "-p", str(port), "SHUTDOWN"], timeout=20, check=False)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

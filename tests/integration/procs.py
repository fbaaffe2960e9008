"""Node processes (``python -m crema.node``) and a JSON-lines control client."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from tests.node.harness import free_ports


class NodeProc:
    """One node process and a control connection to it."""

    def __init__(self, node_id: int, seeds: list[tuple[int, str]], data: Path, *extra: str):
        self.node_id = node_id
        self.seeds = seeds
        self.data = data / f"node-{node_id}"
        self.extra = extra
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0
        self._conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def start(self, *more: str) -> None:
        """Spawn the process and wait for READY."""
        peers = ",".join(f"{i}={a}" for i, a in self.seeds)
        args = [
            "-m",
            "crema.node",
            "--id",
            str(self.node_id),
            "--addr",
            dict(self.seeds)[self.node_id],
            "--peers",
            peers,
            "--data",
            str(self.data),
            "--tick-ms",
            "10",
            *self.extra,
            *more,
        ]
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2] / "src"))
        self.data.mkdir(parents=True, exist_ok=True)
        log = open(self.data / "node.log", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            env=env,
        )
        log.close()
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        assert line.startswith(b"READY"), line
        self.port = int(line.split()[1])
        self._conns = []

    async def call(self, op: str, timeout: float = 15.0, **fields: Any) -> dict[str, Any]:
        """One control request on a pooled connection."""
        if self._conns:
            reader, writer = self._conns.pop()
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port, limit=1 << 24)
        writer.write(json.dumps({"op": op, **fields}).encode() + b"\n")
        await writer.drain()
        try:
            line = await asyncio.wait_for(reader.readline(), timeout)
        except TimeoutError:
            writer.close()
            if self.proc is not None and self.proc.returncode is None:
                self.proc.send_signal(signal.SIGUSR1)  # the node dumps its stacks to its log
                await asyncio.sleep(0.5)
            state = _proc_state(self.proc)
            raise TimeoutError(
                f"node {self.node_id}: no reply to {op} in {timeout} s; {state}"
            ) from None
        if not line:
            writer.close()
            raise ConnectionError(f"node {self.node_id} closed the control connection")
        self._conns.append((reader, writer))
        reply: dict[str, Any] = json.loads(line)
        return reply

    async def value(self, op: str, **fields: Any) -> Any:
        """The value of a request that must succeed."""
        reply = await self.call(op, **fields)
        assert reply["ok"], reply
        return reply["value"]

    def kill(self) -> None:
        """SIGKILL the process."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)

    async def wait_exit(self) -> None:
        """Wait for the process to end; drop control connections."""
        assert self.proc is not None
        await self.proc.wait()
        for _, writer in self._conns:
            writer.close()
        self._conns = []

    async def stop(self) -> None:
        """Close stdin (a clean shutdown), or kill after a grace period."""
        if self.proc is None or self.proc.returncode is not None:
            return
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.kill()
        await self.wait_exit()


def _proc_state(proc: asyncio.subprocess.Process | None) -> str:
    if proc is None:
        return "no process"
    try:
        with open(f"/proc/{proc.pid}/status") as f:
            state = [line.strip() for line in f if line.startswith(("State", "Threads"))]
        with open(f"/proc/{proc.pid}/wchan") as f:
            state.append(f.read())
    except OSError as exc:
        return f"returncode {proc.returncode}: {exc}"
    return f"pid {proc.pid} returncode {proc.returncode} {state}"


def proc_seeds(n: int) -> list[tuple[int, str]]:
    """``n`` ids with free loopback addresses."""
    return [(i + 1, f"127.0.0.1:{p}") for i, p in enumerate(free_ports(n))]


async def find_leader(procs: list[NodeProc], timeout: float = 30.0) -> NodeProc:
    """Wait until the live processes agree on a leader."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        statuses = []
        for p in procs:
            try:
                statuses.append((p, await p.value("status")))
            except (ConnectionError, OSError, TimeoutError, AssertionError):
                continue
        leaders = {s["leader_id"] for _, s in statuses}
        if len(statuses) == len(procs) and len(leaders) == 1 and None not in leaders:
            lead = leaders.pop()
            for p, s in statuses:
                if s["node_id"] == lead and s["role"] == "leader":
                    return p
        await asyncio.sleep(0.05)
    raise AssertionError("no leader")

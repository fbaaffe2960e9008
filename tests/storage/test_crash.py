"""Crash tests with real processes: SIGKILL a writer at random moments.

A child process appends batches with fsync ``always`` and prints the last
index of every acknowledged (committed) batch on a pipe; now and then it
also writes the hard state, takes a snapshot and compacts, so kills land
in segment rolls and segment removal too. The parent kills it with SIGKILL
after a random delay, then reopens the directory: every acknowledged entry
must be there and intact, and the log must be one contiguous run of
entries whose bytes match what the child wrote.

SIGKILL keeps the page cache, so this checks process crashes, not power
loss; the torn-tail tests cover what a power loss can leave behind.
"""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from crema.raft.types import Index
from crema.storage import DiskStorage

CHILD = r"""
import random, sys
from crema.raft.types import Entry, HardState, Index, NodeId, SnapshotMeta, Term
from crema.storage import DiskStorage

def payload(index, term):
    return (b"%d/%d|" % (index, term)) * (1 + index % 7)

directory, term, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
wal = DiskStorage.open(directory, segment_size=16384, cache_entries=16)
out = sys.stdout
while True:
    first = wal.last_index() + 1
    n = rng.randint(1, 20)
    batch = range(first, first + n)
    wal.append([Entry(Index(i), Term(term), data=payload(i, term)) for i in batch])
    last = first + n - 1
    wal.set_hard_state(HardState(Term(term), NodeId(1), Index(last)))
    if rng.random() < 0.05 and last > 30:
        wal.create_snapshot(SnapshotMeta(Index(last - 5), wal.term(Index(last - 5))))
        wal.compact(Index(last - 20))
    wal.commit()
    out.write("%d\n" % last)
    out.flush()
"""


def payload(index: int, term: int) -> bytes:
    return (b"%d/%d|" % (index, term)) * (1 + index % 7)


def run_and_kill(directory: Path, term: int, rng: random.Random) -> int:
    """Run one child, SIGKILL it after a random delay; return its last acknowledged index."""
    src = Path(__file__).resolve().parents[2] / "src"
    env = {**os.environ, "PYTHONPATH": str(src)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(directory), str(term), str(rng.randrange(1 << 30))],
        stdout=subprocess.PIPE,
        env=env,
    )
    assert child.stdout is not None
    fd = child.stdout.fileno()
    received = b""
    deadline: float | None = None
    while True:
        ready, _, _ = select.select([fd], [], [], 0.005)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            received += chunk
            if deadline is None:  # the child is up and writing: start the clock
                deadline = time.monotonic() + rng.uniform(0, 0.06)
        if deadline is not None and time.monotonic() >= deadline:
            break
        assert child.poll() is None, "the writer died on its own"
    child.send_signal(signal.SIGKILL)
    received += child.stdout.read()  # acks written before death are still in the pipe
    child.wait()
    child.stdout.close()
    acked = [int(line) for line in received.split(b"\n")[:-1]]  # the last piece is partial
    return max(acked, default=0)


def test_acknowledged_entries_survive_sigkill(tmp_path: Path) -> None:
    rng = random.Random(4)
    acked = 0
    for term in range(1, 26):
        acked = max(acked, run_and_kill(tmp_path, term, rng))
        with DiskStorage.open(tmp_path, fsync="never") as wal:
            last = wal.last_index()
            assert last >= acked, f"run {term}: acknowledged {acked}, recovered {last}"
            first = wal.first_index()
            entries = wal.entries(Index(first), Index(last + 1))
            assert [e.index for e in entries] == list(range(first, last + 1))
            for e in entries:
                assert 1 <= e.term <= term
                assert e.data == payload(e.index, e.term)
            hard = wal.initial_state()[0]
            assert hard.commit <= last
            assert wal.snapshot_meta().index <= last

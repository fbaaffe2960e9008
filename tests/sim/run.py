"""Command line for the simulation: run or replay seeds.

.venv/bin/python -m tests.sim.run --seed 42 -v          # replay one seed, with a trace
.venv/bin/python -m tests.sim.run --seeds 0:10000       # a range of seeds
.venv/bin/python -m tests.sim.run --seed 3 --bug vote-without-log-check
.venv/bin/python -m tests.sim.run --seeds 0:50 --async-writes on   # force asynchronous writes
"""

from __future__ import annotations

import argparse
import sys
import time

from tests.sim.simulator import SimFailure, run_seed


def main(argv: list[str] | None = None) -> int:
    """Run the seeds named on the command line; 1 when any failed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, help="one seed to run")
    parser.add_argument("--seeds", default="0:100", help="range lo:hi of seeds")
    parser.add_argument("--bug", default=None, help="enable a test-only deliberate bug")
    parser.add_argument(
        "--async-writes",
        choices=("on", "off"),
        default=None,
        help="force asynchronous storage writes on or off (default: the seed decides)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print the event trace")
    parser.add_argument("--progress", type=int, default=0, help="report every N seeds")
    args = parser.parse_args(argv)
    if args.seed is not None:
        seeds = range(args.seed, args.seed + 1)
    else:
        lo, hi = (int(x) for x in args.seeds.split(":"))
        seeds = range(lo, hi)
    async_writes = None if args.async_writes is None else args.async_writes == "on"
    failures = 0
    start = time.perf_counter()
    for done, seed in enumerate(seeds, 1):
        if args.progress and done % args.progress == 0:
            elapsed = time.perf_counter() - start
            print(f"{done} seeds, {failures} failed, {elapsed:.0f} s", flush=True)
        try:
            stats = run_seed(seed, args.bug, args.verbose, async_writes)
        except SimFailure as exc:
            failures += 1
            print(exc, flush=True)
            continue
        if args.verbose or len(seeds) == 1:
            print(
                f"seed {seed}: ok, {stats.steps} steps, {stats.messages} messages, "
                f"{stats.elections} elections, {stats.crashes} crashes, "
                f"{stats.conf_changes} conf changes, {stats.transfers} transfers, "
                f"{stats.snapshots_sent} snapshots sent, {stats.ops_ok} ops ok "
                f"({stats.reads_ok} reads), {stats.ops_unknown} unknown"
            )
    elapsed = time.perf_counter() - start
    print(f"{len(seeds)} seeds, {failures} failed, {elapsed:.1f} s", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

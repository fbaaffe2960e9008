"""RESP layer throughput: request parsing (hiredis vs pure engine) and reply encoding.

Run: ``.venv/bin/python bench/resp_parser_bench.py [--write]``. Parses a
pipelined stream of alternating ``SET key:<i> <100 bytes>`` / ``GET key:<i>``
fed in 64 KiB chunks, as a socket read loop would, and reports commands/s
for a bare ``hiredis.Reader`` (the reference, no validation), the parser's
hiredis engine and its pure-Python engine; then replies/s for common replies.
``--write`` records the figures in ``bench/RESULTS_resp.md``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from crema.server.resp import (
    HIREDIS_AVAILABLE,
    OK,
    RequestParser,
    encode_command,
    encode_reply,
)
from crema.server.resp_reply import Reply

CHUNK = 64 * 1024


def make_stream(count: int) -> bytes:
    parts = []
    for i in range(count):
        key = b"key:%d" % i
        parts.append(encode_command([b"SET", key, b"v" * 100] if i % 2 else [b"GET", key]))
    return b"".join(parts)


def best_of(runs: int, fn: Callable[[], int]) -> float:
    """Best items/s over ``runs`` runs of ``fn`` (which returns the item count)."""
    best = 0.0
    for _ in range(runs):
        start = time.perf_counter()
        items = fn()
        best = max(best, items / (time.perf_counter() - start))
    return best


def parse_all(stream: bytes, use_hiredis: bool) -> int:
    parser = RequestParser(use_hiredis=use_hiredis)
    count = 0
    for offset in range(0, len(stream), CHUNK):
        parser.feed(stream[offset : offset + CHUNK])
        while parser.next_command() is not None:
            count += 1
    return count


def bare_hiredis(stream: bytes) -> int:
    import hiredis  # noqa: PLC0415 - optional

    reader = hiredis.Reader()
    count = 0
    for offset in range(0, len(stream), CHUNK):
        reader.feed(stream[offset : offset + CHUNK])
        while reader.gets() is not False:
            count += 1
    return count


def encode_many(reply: Reply, protocol: int, count: int) -> int:
    for _ in range(count):
        encode_reply(reply, protocol)
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="RESP parser and encoder throughput")
    parser.add_argument("--commands", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="write bench/RESULTS_resp.md")
    opts = parser.parse_args(argv)
    stream = make_stream(opts.commands)
    lines = [f"stream: {opts.commands} pipelined SET/GET commands, {len(stream)} bytes, "
             f"fed in {CHUNK // 1024} KiB chunks"]  # fmt: skip
    rows: list[tuple[str, float]] = []
    if HIREDIS_AVAILABLE:
        rows.append(
            ("bare hiredis.Reader (reference)", best_of(opts.runs, lambda: bare_hiredis(stream)))
        )
        rows.append(
            ("RequestParser, hiredis engine", best_of(opts.runs, lambda: parse_all(stream, True)))
        )
    pure = best_of(opts.runs, lambda: parse_all(stream, False))
    rows.append(("RequestParser, pure engine", pure))
    lines.append("")
    lines.append("| parser | commands/s | vs pure |")
    lines.append("|---|---:|---:|")
    for name, rate in rows:
        lines.append(f"| {name} | {rate:,.0f} | {rate / pure:.2f}x |")
    replies: list[tuple[str, Reply]] = [
        ("+OK", OK), ("nil", None), ("integer 42", 42), ("bulk 100 B", b"v" * 100),
        ("array of 10 bulks", [b"v" * 20] * 10), ("map of 5", {b"k%d" % i: i for i in range(5)}),
    ]  # fmt: skip
    lines.append("")
    lines.append("| reply | RESP2 replies/s | RESP3 replies/s |")
    lines.append("|---|---:|---:|")
    n = opts.commands
    for name, reply in replies:
        r2 = best_of(opts.runs, lambda reply=reply: encode_many(reply, 2, n))  # type: ignore[misc]
        r3 = best_of(opts.runs, lambda reply=reply: encode_many(reply, 3, n))  # type: ignore[misc]
        lines.append(f"| {name} | {r2:,.0f} | {r3:,.0f} |")
    report = "\n".join(lines)
    print(report)
    if opts.write:
        write_results(report)
    return 0


def write_results(report: str) -> None:
    try:
        cpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        machine = "\n".join(cpu.splitlines()[:10])
    except (OSError, subprocess.CalledProcessError):
        machine = platform.processor() or platform.machine()
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    text = (
        "# RESP layer benchmark\n\n"
        f"Recorded {now} with `python bench/resp_parser_bench.py --write`, "
        f"Python {platform.python_version()}, load average {load} after the run (the\n"
        "machine is shared: absolute figures are noisy, ratios within a run hold better).\n"
        "The bare reader only splits frames; the parser also validates every request\n"
        "as Redis does, enforces the limits and handles inline commands.\n\n"
        f"Machine (`lscpu | head`):\n\n```\n{machine}\n```\n\n{report}\n"
    )
    Path(__file__).with_name("RESULTS_resp.md").write_text(text)


if __name__ == "__main__":
    raise SystemExit(main())

"""Micro-benchmark of the cache state machine (a program, not a test).

Measures, single-threaded:

- encode and decode cost of SET commands (16-byte keys, 100-byte values),
  against a bare ``msgpack.packb``/``unpackb`` of the same fields (the peer);
- apply throughput of decoded SETs and of encoded SETs (decode + apply), with
  and without TTLs and a capacity bound, against bare ``dict`` assignment;
- the cost of ``entries_view()`` (the stall a snapshot causes on the apply
  loop), the slowest apply just after it (copy-on-write of one shard), and
  iterating the view, against ``dict.copy()`` of a same-sized dict;
- the slowest single write of a long rewrite run (a hot tenth of the keys
  rewritten many times while the rest stay put, so write sequence numbers
  grow sparse), against the median write of the same run.

Usage: ``python bench/cache_bench.py [--n 200000] [--view-n 1000000]
[--rewrite-n 1000000] [--rewrites 5000000] [--only rewrite]``
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
import time
from collections.abc import Callable
from functools import partial

import msgpack

from crema.cache import CacheStateMachine, Set, decode_command, encode_command

NOW = 1_700_000_000_000


def _timed(fn: Callable[[], object]) -> float:
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start
    finally:
        gc.enable()


def _best(fn: Callable[[], object], repeat: int = 3) -> float:
    return min(_timed(fn) for _ in range(repeat))


def _commands(n: int, ttl: bool) -> list[Set]:
    value = b"v" * 100
    return [
        Set(b"key:%012d" % i, value, NOW + i, expiry_ms=NOW + i + 60_000 if ttl else None)
        for i in range(n)
    ]


def _row(name: str, n: int, seconds: float, peer: float | None = None) -> None:
    rate = n / seconds
    ratio = f"  ({seconds / peer:.2f}x the peer's time)" if peer else ""
    print(f"{name:<44} {rate:>12,.0f}/s  {seconds / n * 1e6:7.2f} us{ratio}")


def bench_codec(n: int) -> None:
    cmds = _commands(n, ttl=True)
    raw = [[1, 1, c.now_ms, c.key, c.value, c.expiry_ms, 0, 0] for c in cmds]
    peer_enc = _best(lambda: [msgpack.packb(r, use_bin_type=True) for r in raw])
    enc = _best(lambda: [encode_command(c) for c in cmds])
    data = [encode_command(c) for c in cmds]
    peer_dec = _best(lambda: [msgpack.unpackb(d, use_list=False) for d in data])
    dec = _best(lambda: [decode_command(d) for d in data])
    print(f"-- codec (SET, 100-byte value, {len(data[0])} bytes encoded)")
    _row("bare msgpack.packb (peer)", n, peer_enc)
    _row("encode_command", n, enc, peer_enc)
    _row("bare msgpack.unpackb (peer)", n, peer_dec)
    _row("decode_command (strict)", n, dec, peer_dec)


def _apply_all(sm: CacheStateMachine, cmds: list[Set]) -> None:
    apply = sm.apply
    for i, c in enumerate(cmds, start=1):
        apply(i, 1, c)


def _apply_encoded_all(sm: CacheStateMachine, data: list[bytes]) -> None:
    apply = sm.apply_encoded
    for i, d in enumerate(data, start=1):
        apply(i, 1, d)


def _run_fresh(cmds: list[Set], capacity: int | None) -> None:
    _apply_all(CacheStateMachine(capacity), cmds)


def bench_apply(n: int) -> None:
    print(f"-- apply ({n:,} SETs of distinct keys into an empty store)")
    plain = _commands(n, ttl=False)
    with_ttl = _commands(n, ttl=True)

    def peer() -> None:
        d: dict[bytes, tuple[bytes, int | None]] = {}
        for c in plain:
            d[c.key] = (c.value, c.expiry_ms)

    peer_t = _best(peer)
    _row("bare dict assignment (peer)", n, peer_t)
    cases: list[tuple[str, list[Set], int | None]] = [
        ("apply(Set)", plain, None),
        ("apply(Set with TTL)", with_ttl, None),
        ("apply(Set), capacity n/2 (evicting)", plain, n // 2),
    ]
    for name, cmds, capacity in cases:
        t = _best(partial(_run_fresh, cmds, capacity))
        _row(name, n, t, peer_t)
    data = [encode_command(c) for c in plain]
    t = _best(lambda: _apply_encoded_all(CacheStateMachine(), data))
    _row("apply_encoded(bytes) = decode + apply", n, t, peer_t)
    overwrite = _commands(n, ttl=False)
    sm = CacheStateMachine()
    _apply_all(sm, overwrite)
    base = sm.applied_index

    def rewrite() -> None:
        apply = sm.apply
        for i, c in enumerate(overwrite, start=sm.applied_index + 1):
            apply(i, 1, c)

    t = _timed(rewrite)
    _row("apply(Set) overwriting existing keys", n, t, peer_t)
    assert sm.applied_index == base + n


def _apply_latencies(sm: CacheStateMachine, cmds: list[Set]) -> list[float]:
    times = []
    for c in cmds:
        start = time.perf_counter()
        sm.apply(sm.applied_index + 1, 1, c)
        times.append(time.perf_counter() - start)
    return times


def bench_view(n: int) -> None:
    print(f"-- snapshot view ({n:,} entries, 100-byte values)")
    sm = CacheStateMachine()
    value = b"v" * 100
    for i in range(n):
        sm.apply(i + 1, 1, Set(b"key:%012d" % i, value, NOW))
    peer_dict = {b"key:%012d" % i: (value, None) for i in range(n)}
    peer_t = _best(peer_dict.copy)
    writes = [Set(b"key:%012d" % (i * 7919 % n), value, NOW) for i in range(2000)]
    gc.disable()
    try:
        before = _apply_latencies(sm, writes)
        start = time.perf_counter()
        view = sm.entries_view()
        view_t = time.perf_counter() - start
        after = _apply_latencies(sm, writes)
    finally:
        gc.enable()
    iter_t = _timed(lambda: sum(1 for _ in view))
    extra = sum(after) - sum(before)
    print(f"{'dict.copy() of a same-size dict (peer)':<44} {peer_t * 1e3:10.1f} ms")
    print(f"{'entries_view() (stall on the apply loop)':<44} {view_t * 1e3:10.3f} ms")
    print(f"{'slowest of 2,000 applies before the view':<44} {max(before) * 1e3:10.3f} ms")
    print(f"{'slowest of 2,000 applies after (shard copy)':<44} {max(after) * 1e3:10.3f} ms")
    print(f"{'extra apply time for those 2,000 (all copies)':<44} {extra * 1e3:10.1f} ms")
    print(f"{'iterating the view (off the loop)':<44} {iter_t * 1e3:10.1f} ms")


def bench_rewrite(n: int, writes: int) -> None:
    print(f"-- rewrite run ({n:,} entries, then {writes:,} SETs of the hottest {n // 10:,})")
    sm = CacheStateMachine()
    value = b"v" * 100
    for i in range(n):
        sm.apply(i + 1, 1, Set(b"key:%012d" % i, value, NOW))
    hot = [Set(b"key:%012d" % (i * 7 % n), value, NOW) for i in range(n // 10)]
    times = [0.0] * writes
    apply, clock, cpu_clock, index = sm.apply, time.perf_counter, time.thread_time, sm.applied_index
    most_cpu = 0.0  # CPU time is not inflated by other processes on a shared machine
    gc.collect()
    gc.disable()
    try:
        cpu = time.process_time()
        for w in range(writes):
            start, start_cpu = clock(), cpu_clock()
            apply(index + 1 + w, 1, hot[w % len(hot)])
            times[w] = clock() - start
            most_cpu = max(most_cpu, cpu_clock() - start_cpu)
        cpu = time.process_time() - cpu
    finally:
        gc.enable()
    times.sort()
    slow = sum(1 for t in times if t > 0.010)
    print(f"{'CPU per write, timers included':<44} {cpu / writes * 1e6:10.2f} us")
    print(f"{'median write':<44} {times[writes // 2] * 1e6:10.2f} us")
    print(f"{'99.99th percentile write':<44} {times[writes * 9999 // 10000] * 1e3:10.3f} ms")
    print(f"{'slowest write (wall clock)':<44} {times[-1] * 1e3:10.3f} ms")
    print(f"{'slowest write (thread CPU time)':<44} {most_cpu * 1e3:10.3f} ms")
    print(f"{'writes slower than 10 ms (wall clock)':<44} {slow:10d}")
    _full_scan(sm, count=10)


def _full_scan(sm: CacheStateMachine, count: int) -> None:
    """A whole SCAN over the store as the rewrite run left it (sparse seqs)."""
    cursor, steps, keys, most = 0, 0, 0, 0.0
    cpu = time.process_time()
    while True:
        start = time.thread_time()
        cursor, page = sm.scan(cursor, NOW, count=count)
        most = max(most, time.thread_time() - start)
        steps, keys = steps + 1, keys + len(page)
        if cursor == 0:
            break
    cpu = time.process_time() - cpu
    print(f"{f'full SCAN, COUNT {count}: steps for {keys:,} keys':<44} {steps:10,d}")
    print(f"{'full SCAN: CPU per step':<44} {cpu / steps * 1e6:10.2f} us")
    print(f"{'full SCAN: slowest step (thread CPU time)':<44} {most * 1e3:10.3f} ms")


def main(argv: list[str] | None = None) -> int:
    """Run every benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200_000, help="commands per run")
    parser.add_argument("--view-n", type=int, default=1_000_000, help="entries for the view")
    parser.add_argument("--rewrite-n", type=int, default=1_000_000, help="entries, rewrite run")
    parser.add_argument("--rewrites", type=int, default=5_000_000, help="writes, rewrite run")
    parser.add_argument("--only", choices=["rewrite"], help="run only this benchmark")
    args = parser.parse_args(argv)
    print(f"python {platform.python_version()} on {platform.machine()}, msgpack {msgpack.version}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.only is None:
        bench_codec(args.n)
        bench_apply(args.n)
        bench_view(args.view_n)
    bench_rewrite(args.rewrite_n, args.rewrites)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run one node from argv, with a JSON-lines control port (tests and benchmarks).

``python -m crema.node --id 1 --addr 127.0.0.1:7001 --peers 1=...,2=...,3=...
--data DIR`` starts a node, listens for control connections on
``--control`` (port 0 picks one) and prints ``READY <control port>``. Each
control request is one JSON object per line, ``{"op": ..., ...}``; each reply
is ``{"ok": true, "value": ...}`` or ``{"ok": false, "error": <class name>,
"may_have_been_applied": bool, "message": ...}``. Ops: ``put`` (key, value,
ttl?), ``delete`` (key), ``get`` / ``cget`` (key), ``status``, ``checkpoint``,
``digest`` (applied index and a hash of the live entries), ``shutdown``.
Keys and values are UTF-8 strings. Not a public protocol.

``--event-loop auto`` (the default) runs on uvloop when it is installed,
else on asyncio's own loop; ``--event-loop asyncio`` forces the latter.
``--gc-gen0 N`` raises the garbage collector's generation-0 threshold
(fewer collections on the write path) and freezes the objects alive after
recovery (``gc.freeze()``), so later collections skip them.
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import gc
import hashlib
import json
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from crema.config import CacheConfig, CheckpointConfig, RaftConfig
from crema.errors import CremaError, WriteError
from crema.node.cache import DistributedCache
from crema.node.runtime import LOOP_CHOICES, loop_factory, tune_gc
from crema.transport.config import TransportConfig


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m crema.node")
    p.add_argument("--id", type=int, required=True)
    p.add_argument("--addr", required=True)
    p.add_argument("--peers", required=True, help="id=host:port,... (the seed voters)")
    p.add_argument("--data", required=True)
    p.add_argument("--control", default="127.0.0.1:0")
    p.add_argument("--secret", default="crema-node-secret")
    p.add_argument("--fsync", default="always")
    p.add_argument("--log-threshold", type=int, default=10_000)
    p.add_argument("--trailing", type=int, default=1_000)
    p.add_argument("--tick-ms", type=int, default=50)
    p.add_argument("--write-timeout", type=float, default=5.0)
    p.add_argument("--no-auto-recover", action="store_true")
    p.add_argument("--event-loop", choices=LOOP_CHOICES, default="auto")
    p.add_argument("--gc-gen0", type=int, default=0, help="gen-0 GC threshold (0: default)")
    return p.parse_args(argv)


def config_from(args: argparse.Namespace) -> CacheConfig:
    """The node configuration the arguments describe."""
    seeds = []
    for item in args.peers.split(","):
        node_id, _, addr = item.partition("=")
        seeds.append((int(node_id), addr))
    raft = RaftConfig(
        tick_interval_ms=args.tick_ms,
        trailing_entries=args.trailing,
        write_timeout=args.write_timeout,
        fsync=args.fsync,
    )
    checkpoints = CheckpointConfig(
        f"{args.data}/checkpoints",
        log_threshold=args.log_threshold,
        auto_recover=not args.no_auto_recover,
    )
    return (
        CacheConfig(args.id, args.addr)
        .with_seed_nodes(seeds)
        .with_data_dir(args.data)
        .with_raft_config(raft)
        .with_checkpoint_config(checkpoints)
        .with_cluster_secret(args.secret)
        .with_min_free_bytes(0)
    )


def _digest(cache: DistributedCache) -> dict[str, Any]:
    h = hashlib.sha256()
    count = 0
    for key, value, expiry in sorted(cache.entries()):
        h.update(b"%d:%s%d:%s%d;" % (len(key), key, len(value), value, expiry or 0))
        count += 1
    return {"index": cache.raft_index(), "count": count, "sha256": h.hexdigest()}


ExtraOps = dict[str, Callable[[DistributedCache, dict[str, Any]], Awaitable[Any]]]
"""More control ops (benchmarks add their own): name -> ``op(cache, request)``."""


async def _op(cache: DistributedCache, req: dict[str, Any], extra: ExtraOps) -> Any:  # noqa: PLR0911
    op = req["op"]
    if op in extra:
        return await extra[op](cache, req)
    if op == "put":
        if req.get("ttl"):
            return await cache.put_with_ttl(req["key"], req["value"], req["ttl"])
        return await cache.put(req["key"], req["value"])
    if op == "delete":
        return await cache.delete(req["key"])
    if op in ("get", "cget"):
        fn = cache.get if op == "get" else cache.consistent_get
        value = await fn(req["key"])
        return None if value is None else value.decode()
    if op == "status":
        return cache.cluster_status()
    if op == "checkpoint":
        return (await cache.checkpoint()).metadata.index
    if op == "digest":
        return _digest(cache)
    raise ValueError(f"unknown op {op!r}")


async def _serve_client(
    cache: DistributedCache,
    extra: ExtraOps,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> None:
    try:
        while line := await reader.readline():
            req = json.loads(line)
            try:
                reply = {"ok": True, "value": await _op(cache, req, extra)}
            except (CremaError, TimeoutError, ValueError, KeyError) as exc:
                reply = {
                    "ok": False,
                    "error": type(exc).__name__,
                    "may_have_been_applied": isinstance(exc, WriteError)
                    and exc.may_have_been_applied,
                    "message": str(exc),
                }
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def run(args: argparse.Namespace, extra: ExtraOps | None = None) -> None:
    """Start the node and its control server; run until stdin closes."""
    ops = extra or {}
    transport = TransportConfig(backoff_initial=0.02, backoff_max=0.5)
    cache = await DistributedCache.create(config_from(args), transport_config=transport)
    tune_gc_for(args)
    host, _, port = args.control.rpartition(":")
    server = await asyncio.start_server(
        lambda r, w: _serve_client(cache, ops, r, w), host, int(port), limit=1 << 24
    )
    print("READY", server.sockets[0].getsockname()[1], flush=True)
    loop = asyncio.get_running_loop()
    stdin_closed = asyncio.Event()
    loop.add_reader(sys.stdin.fileno(), stdin_closed.set)
    await stdin_closed.wait()
    server.close()
    await cache.shutdown()


def tune_gc_for(args: argparse.Namespace) -> None:
    """``--gc-gen0 N``: freeze what recovery built, raise the gen-0 threshold to N."""
    if args.gc_gen0 > 0:
        tune_gc((args.gc_gen0, *gc.get_threshold()[1:]))


def run_node(args: argparse.Namespace, extra: ExtraOps | None = None) -> None:
    """Run :func:`run` to completion on the loop ``args.event_loop`` selects."""
    with asyncio.Runner(loop_factory=loop_factory(args.event_loop)) as runner:
        runner.run(run(args, extra))


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m crema.node``."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s node %(message)s")
    args = parse_args(argv)
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # stack dump on demand
    run_node(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``crema serve``: run one cluster node that speaks the Redis protocol.

The node (:class:`~crema.node.DistributedCache`) listens for peers, the
:class:`~crema.server.RespServer` for Redis clients and, unless turned off,
the admin HTTP endpoint for ``/metrics``, ``/health`` and ``/status``.
SIGTERM and SIGINT (and the ``SHUTDOWN`` command) stop it cleanly: stop
accepting clients, finish the commands in flight, shut the node down (which
flushes the WAL), exit 0. Options: see :mod:`crema.cli.serve_config` and
``docs/serve.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import ssl
import sys
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from crema.cli.serve_config import (
    SettingError,
    add_arguments,
    cache_config,
    client_ssl,
    environment,
    resolve,
    transport_config,
)
from crema.config import CacheConfig
from crema.errors import CremaError
from crema.node import DistributedCache
from crema.node.runtime import fit_max_clients, loop_factory, loop_name, tune_gc
from crema.server.admin import AdminServer
from crema.server.server import RespServer
from crema.server.session import MembershipOps
from crema.transport.config import TransportConfig, parse_addr

log = logging.getLogger("crema.serve")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``crema serve`` to the command line."""
    parser = commands.add_parser(
        "serve",
        help="run a cluster node that speaks the Redis protocol",
        description="Run one crema node. Every option can also be set in a TOML file "
        "(--config; key = flag without '--', '-' as '_') or by the environment "
        "(CREMA_ + key in upper case). Precedence: flag > TOML > environment > default.",
    )
    add_arguments(parser)
    setattr(parser, "error", _one_line_error)  # noqa: B010 - usage errors: one line, exit 2
    parser.set_defaults(handler=run_serve, one_line_errors=True)


def _one_line_error(message: str) -> None:
    print(f"crema serve: error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


def run_serve(args: argparse.Namespace) -> int:
    """Resolve the settings and run the node until a signal or SHUTDOWN."""
    try:
        values = resolve(args, environment())
        config = cache_config(values)
        transport = transport_config(values)
        tls = client_ssl(values)
        runner = loop_runner(values["event_loop"])
    except SettingError as exc:
        print(f"crema serve: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(
        level=values["log_level"].upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    node = Node(values, tls)
    try:
        runner(node.run(config, transport))
    except SettingError as exc:
        print(f"crema serve: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, CremaError) as exc:
        log.error("node %d failed: %s", values["node_id"], exc)
        return EXIT_FAILED
    return node.exit_code


def loop_runner(choice: str) -> Callable[[Coroutine[Any, Any, None]], None]:
    """The function that runs the node's main coroutine on the chosen event loop.

    Raises:
        SettingError: ``uvloop`` was asked for and is not installed.
    """
    try:
        factory = loop_factory(choice)
    except ImportError:
        raise SettingError("--event-loop: uvloop is not installed") from None
    if factory is None:
        return asyncio.run

    def run(main: Coroutine[Any, Any, None]) -> None:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(main)

    return run


def checkpoint_reply(info: Any) -> dict[str, Any]:
    """What ``CREMA.CHECKPOINT`` replies for a written :class:`SnapshotInfo`."""
    return {
        "index": info.metadata.index,
        "term": info.metadata.term,
        "path": str(info.path),
        "size": info.size,
        "entries": info.entry_count,
    }


class Node:
    """One running ``crema serve`` process: node, RESP server, admin endpoint, event log."""

    def __init__(self, values: Mapping[str, Any], client_tls: ssl.SSLContext | None = None) -> None:
        self.values = values
        self.client_tls = client_tls
        self.stop = asyncio.Event()
        self.cache: DistributedCache | None = None
        self.started = time.monotonic()
        self.recovery_seconds: float | None = None
        self.logged_snapshot_index = -1
        self.exit_code = EXIT_OK
        """EXIT_FAILED once the node failed (a WAL write or fsync error): see :meth:`_watch`."""

    async def run(self, config: CacheConfig, transport: TransportConfig) -> None:
        """Start everything, wait for a stop request, stop everything."""
        values = self.values
        started = time.monotonic()
        cache = await DistributedCache.create(config, transport_config=transport)
        self.cache = cache
        tune_gc()
        opened = time.monotonic() - started
        try:
            await self._serve(cache, opened)
        finally:
            await cache.shutdown()
            if cache.failure is None:
                log.info("node %d stopped (WAL flushed)", values["node_id"])
            else:  # nothing staged after the failure was acknowledged to anyone
                log.info("node %d stopped (WAL records staged after the failure dropped)",
                         values["node_id"])  # fmt: skip

    async def _serve(self, cache: DistributedCache, opened: float) -> None:
        values = self.values
        status = cache.cluster_status()
        log.info(
            "node %d opened in %.2f s: snapshot at index %d, log %d..%d, voters %s",
            values["node_id"], opened, status["last_snapshot_index"],
            status["log_first_index"], status["log_last_index"], status["voters"],
        )  # fmt: skip
        host, port = parse_addr(values["client_addr"], "client_addr")

        async def checkpoint() -> dict[str, Any]:
            started = time.monotonic()
            info = await cache.checkpoint()
            reply = checkpoint_reply(info)
            self.logged_snapshot_index = reply["index"]
            log.info("snapshot written at index %d: %d entries, %d bytes, %.2f s (%s)",
                     reply["index"], reply["entries"], reply["size"],
                     time.monotonic() - started, reply["path"])  # fmt: skip
            return reply

        server = RespServer(
            cache,
            host,
            port,
            requirepass=values["requirepass"],
            read_mode=values["read_mode"],
            max_clients=fit_max_clients(values["max_clients"], len(values["peers"])),
            on_shutdown=self.stop.set,
            on_checkpoint=checkpoint,
            membership=MembershipOps(cache.add_node, cache.remove_node, cache.transfer_leadership),
            ssl_context=self.client_tls,
        )
        await server.start()
        admin: AdminServer | None = None
        try:
            if values["admin_addr"] is not None:
                admin_host, admin_port = parse_addr(values["admin_addr"], "admin_addr")
                admin = AdminServer(cache, server.state, admin_host, admin_port)
                await admin.start()
            self._install_signals()
            log.info(
                "node %d ready: RESP on %s:%d, peers on %s, admin on %s, data in %s, loop %s",
                values["node_id"], server.host, server.port, values["peer_addr"],
                f"http://{admin.host}:{admin.port}" if admin else "off", values["data_dir"],
                loop_name(),
            )  # fmt: skip
            watcher = asyncio.get_running_loop().create_task(self._watch(cache, status))
            try:
                await self.stop.wait()
            finally:
                watcher.cancel()
            self._ignore_more_sigterm()
            log.info("node %d shutting down", values["node_id"])
        finally:
            await server.stop()
            if admin is not None:
                await admin.stop()

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop.set)

    def _log_snapshot(self, cache: DistributedCache, index: int) -> None:
        """Log a snapshot the node wrote by itself (threshold or timer), with its size."""
        newest = cache.checkpoint_manager.list_snapshots()
        if newest and newest[-1].metadata.index == index:
            info = newest[-1]
            log.info(
                "node %d: snapshot written at index %d: %d entries, %d bytes (%s)",
                self.values["node_id"],
                index,
                info.entry_count,
                info.size,
                info.path.name,
            )
        else:
            log.info("node %d: snapshot written at index %d", self.values["node_id"], index)

    def _ignore_more_sigterm(self) -> None:
        """Shutting down: a repeated SIGTERM must not kill the process half-way."""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(signal.SIGTERM)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)

    async def _watch(self, cache: DistributedCache, first: dict[str, Any]) -> None:
        """Log role and leader changes, snapshots written and installed, and the log replay."""
        node_id = self.values["node_id"]
        target = max(first["log_last_index"], first["applied_index"])
        replayed = False
        last = first
        leader_seen: int | None = None
        while True:
            if cache.failure is not None:
                log.error("node %d failed: %s; stopping (exit status %d). Acknowledged writes "
                          "are on disk; start the node again once the cause is fixed",
                          node_id, cache.failure, EXIT_FAILED)  # fmt: skip
                self.exit_code = EXIT_FAILED
                self.stop.set()
                return
            status = cache.cluster_status()
            if not replayed and status["applied_index"] >= target:
                replayed = True
                self.recovery_seconds = time.monotonic() - self.started
                snap = first["last_snapshot_index"]
                source = f"snapshot at index {snap} plus" if snap else "no snapshot,"
                log.info("node %d recovered: %s %d log entries in %.2f s", node_id, source,
                         target - snap, self.recovery_seconds)  # fmt: skip
            leader = status["leader_id"]
            if leader is not None and leader != leader_seen:
                if leader == node_id:
                    log.info("node %d became leader (term %d)", node_id, status["term"])
                else:
                    log.info("node %d follows leader %d (term %d)", node_id, leader, status["term"])
                leader_seen = leader
            if (
                status["snapshots_written"] > last["snapshots_written"]
                and status["last_snapshot_index"] != self.logged_snapshot_index
            ):
                self._log_snapshot(cache, status["last_snapshot_index"])
            if status["snapshots_installed"] > last["snapshots_installed"]:
                log.info("node %d: installed a snapshot from the leader (index %d)",
                         node_id, status["last_snapshot_index"])  # fmt: skip
            if status["voters"] != last["voters"] or status["learners"] != last["learners"]:
                log.info("node %d: membership voters %s learners %s",
                         node_id, status["voters"], status["learners"])  # fmt: skip
            last = status
            await asyncio.sleep(0.1)

"""The admin HTTP endpoint: ``/metrics`` (Prometheus), ``/health`` and ``/status`` (layer L2).

A tiny asyncio HTTP/1.1 server, GET (and HEAD) only, one request per
connection, requests bounded to 8 KiB of head and 5 seconds. Metrics are
gathered at scrape time from the node's ``status()``, the RESP server's
counters and the owner's extra values, by a custom collector.

========================  ================================================
path                      reply
========================  ================================================
``/metrics``              Prometheus text format, names prefixed ``crema_``
``/health``               200 ``ok`` with a leader and applied index close
                          to commit; 503 and the reason otherwise
``/status``               the node's cluster status as JSON
========================  ================================================
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from crema.histogram import Histogram
from crema.server.backend import Backend
from crema.server.session import ServerState

__all__ = ["MAX_APPLY_LAG", "AdminServer", "StatusCollector", "health"]

log = logging.getLogger(__name__)

MAX_HEAD = 8192
REQUEST_TIMEOUT = 5.0
MAX_APPLY_LAG = 1000
"""``/health`` fails when the applied index trails the commit index by more than this."""

Extras = Callable[[], Mapping[str, float | None]]
"""The owner's extra values: ``leader_changes`` (counter), ``recovery_seconds`` (gauge);
used only for a backend whose ``status()`` lacks them (a node's status has both)."""

# status key -> (metric name, kind, help)
_STATUS_METRICS = (
    ("term", "raft_term", "gauge", "Current Raft term"),
    ("commit_index", "raft_commit_index", "gauge", "Highest log index known committed"),
    ("applied_index", "raft_applied_index", "gauge", "Highest log index applied to the cache"),
    ("log_first_index", "raft_log_first_index", "gauge", "First index kept in the Raft log"),
    ("log_last_index", "raft_log_last_index", "gauge", "Last index in the Raft log"),
    ("pending_proposals", "raft_pending_proposals", "gauge", "Proposals awaiting their outcome"),
    ("last_snapshot_index", "checkpoint_last_index", "gauge", "Index of the newest snapshot"),
    ("snapshots_written", "checkpoints_created", "counter", "Snapshots written by this node"),
    ("snapshots_failed", "checkpoints_failed", "counter", "Snapshot writes that failed"),
    ("snapshots_skipped_low_space", "checkpoints_skipped_low_space", "counter",
     "Snapshots skipped for lack of disk space"),
    ("snapshots_sent", "snapshot_installs_sent", "counter", "Snapshots sent to lagging followers"),
    ("snapshots_installed", "snapshot_installs_received", "counter",
     "Snapshots received from the leader and installed"),
    ("proposals", "raft_proposals", "counter", "Entries proposed by this node as leader"),
    ("forwarded_writes", "forwarded_writes", "counter",
     "Writes this node forwarded to the leader"),
    ("forwarded_writes_served", "forwarded_writes_served", "counter",
     "Writes forwarded to this node by followers and executed here"),
    ("leader_changes", "raft_leader_changes", "counter",
     "Leaders seen by this node (a new leader or a new term), counted in the driver loop"),
    ("last_snapshot_seconds", "checkpoint_last_duration_seconds", "gauge",
     "Seconds the last snapshot written by this node took"),
    ("last_snapshot_size", "checkpoint_last_size_bytes", "gauge",
     "File size of the last snapshot written by this node"),
    ("last_snapshot_entries", "checkpoint_last_entries", "gauge",
     "Entries in the last snapshot written by this node"),
    ("last_snapshot_compression_ratio", "checkpoint_last_compression_ratio", "gauge",
     "Keys plus values over file size of the last snapshot written (0: none yet)"),
    ("recovery_snapshot_index", "recovery_snapshot_index", "gauge",
     "Index of the snapshot restored at start (0: none)"),
    ("recovery_entries_replayed", "recovery_entries_replayed", "gauge",
     "Committed log entries replayed at start after the snapshot"),
    ("recovery_seconds", "recovery_duration_seconds", "gauge",
     "Seconds to open the log, restore the snapshot and replay the committed log"),
)  # fmt: skip

# histogram name (from the backend's histograms()) -> (metric name, help)
_HISTOGRAMS = {
    "wal_fsync_seconds": ("crema_wal_fsync_duration_seconds", "Seconds each WAL fsync took"),
    "checkpoint_seconds": ("crema_checkpoint_duration_seconds",
                           "Seconds each snapshot written by this node took"),
}  # fmt: skip


class StatusCollector(Collector):
    """Prometheus metrics built at scrape time from the node, the server and the owner."""

    def __init__(self, backend: Backend, state: ServerState, extras: Extras | None = None) -> None:
        self._backend = backend
        self._state = state
        self._extras = extras

    def collect(self) -> Iterator[Metric]:
        status = self._backend.status()
        stats = self._state.stats
        yield CounterMetricFamily("crema_cache_hits", "Reads that found their key",
                                  value=stats.keyspace_hits)  # fmt: skip
        yield CounterMetricFamily("crema_cache_misses", "Reads that found no key",
                                  value=stats.keyspace_misses)  # fmt: skip
        yield GaugeMetricFamily("crema_cache_entries",
                                "Entries stored (expired ones not yet purged included)",
                                value=len(self._backend.state_machine))  # fmt: skip
        yield GaugeMetricFamily("crema_cache_bytes",
                                "Bytes of keys plus values stored (no per-entry overhead)",
                                value=self._backend.state_machine.nbytes)  # fmt: skip
        commands = CounterMetricFamily("crema_commands", "Commands run, by name and result",
                                       labels=["command", "result"])  # fmt: skip
        for name, calls in sorted(stats.calls.items()):
            failed = stats.failed_calls.get(name, 0)
            commands.add_metric([name, "ok"], calls - failed)
            commands.add_metric([name, "error"], failed)
        yield commands
        yield _histogram(
            "crema_write_duration_seconds",
            "Seconds from proposing a write to its result",
            stats.write_latency,
        )
        yield _histogram("crema_read_barrier_wait_seconds",
                         "Seconds linearizable reads waited for a read index",
                         stats.read_wait)  # fmt: skip
        yield GaugeMetricFamily("crema_connected_clients", "Client connections open",
                                value=len(self._state.clients))  # fmt: skip
        yield CounterMetricFamily("crema_connections_received", "Client connections accepted",
                                  value=stats.connections_received)  # fmt: skip
        for key, name, kind, text in _STATUS_METRICS:
            value = status.get(key)
            if value is None:
                continue
            family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            yield family(f"crema_{name}", text, value=value)
        yield GaugeMetricFamily("crema_raft_is_leader", "1 when this node leads",
                                value=int(status.get("role") == "leader"))  # fmt: skip
        leader = status.get("leader_id")
        yield GaugeMetricFamily("crema_raft_leader_id", "The known leader's id (0: none)",
                                value=leader or 0)  # fmt: skip
        yield GaugeMetricFamily("crema_raft_voters", "Voting members",
                                value=len(status.get("voters", ())))  # fmt: skip
        histograms: Callable[[], Mapping[str, Histogram]] | None = getattr(
            self._backend, "histograms", None
        )
        for key, histogram in sorted((histograms() if histograms else {}).items()):
            if key in _HISTOGRAMS:
                yield _histogram(*_HISTOGRAMS[key], histogram)
        extras = self._extras() if self._extras is not None else {}
        if "leader_changes" not in status and extras.get("leader_changes") is not None:
            yield CounterMetricFamily("crema_raft_leader_changes",
                                      "Leader changes seen by this node",
                                      value=extras["leader_changes"])  # fmt: skip
        if "recovery_seconds" not in status and extras.get("recovery_seconds") is not None:
            yield GaugeMetricFamily("crema_recovery_duration_seconds",
                                    "Seconds from start until the local log was replayed",
                                    value=extras["recovery_seconds"])  # fmt: skip


def _histogram(name: str, documentation: str, hist: Histogram) -> HistogramMetricFamily:
    buckets: list[tuple[str, float]] = []
    cumulative = 0
    for bound, count in zip(hist.bounds, hist.counts, strict=False):
        cumulative += count
        buckets.append((repr(bound), cumulative))
    buckets.append(("+Inf", cumulative + hist.counts[-1]))
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=hist.total)


def health(status: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether the node is healthy (working, a leader known, applied close to commit), and why."""
    if status.get("failure"):
        return False, f"node failed: {status['failure']}"
    if status.get("leader_id") is None:
        return False, "no leader known"
    lag = int(status.get("commit_index", 0)) - int(status.get("applied_index", 0))
    if lag > MAX_APPLY_LAG:
        return False, f"applied index trails commit index by {lag} entries"
    return True, "ok"


class AdminServer:
    """The admin HTTP endpoint of one node.

    Args:
        backend: the node (its ``status()`` and state machine are read per request).
        state: the RESP server's shared state (counters, clients).
        host: address to bind.
        port: port to bind (0 picks one; see :attr:`port` once started).
        extras: the owner's extra values for ``/metrics``.
    """

    def __init__(
        self,
        backend: Backend,
        state: ServerState,
        host: str = "127.0.0.1",
        port: int = 0,
        extras: Extras | None = None,
    ) -> None:
        self._backend = backend
        self.host = host
        self.port = port
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(StatusCollector(backend, state, extras))
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Bind and serve. Raises OSError when the address cannot be bound."""
        self._server = await asyncio.start_server(
            self._client, self.host, self.port, limit=MAX_HEAD
        )
        self.host, self.port = self._server.sockets[0].getsockname()[:2]
        log.info("admin HTTP on http://%s:%d (/metrics /health /status)", self.host, self.port)

    async def stop(self) -> None:
        """Stop accepting and close."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)

    def respond(self, method: str, path: str) -> tuple[int, str, bytes]:
        """Status code, content type and body for a request."""
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"method not allowed\n"
        path = path.split("?", 1)[0]
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry)
        if path == "/health":
            ok, reason = health(self._backend.status())
            return (200 if ok else 503), "text/plain", reason.encode() + b"\n"
        if path == "/status":
            body = json.dumps(self._backend.status(), indent=2, default=str).encode() + b"\n"
            return 200, "application/json", body
        return 404, "text/plain", b"not found: try /metrics, /health or /status\n"

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
            except asyncio.LimitOverrunError:
                head = b""
                code, ctype, body = 431, "text/plain", b"request too large\n"
            else:
                parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
                if len(head) > MAX_HEAD:
                    code, ctype, body = 431, "text/plain", b"request too large\n"
                elif len(parts) != 3 or not parts[2].startswith("HTTP/"):
                    code, ctype, body = 400, "text/plain", b"bad request\n"
                else:
                    code, ctype, body = self.respond(parts[0], parts[1])
            reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
                      431: "Request Header Fields Too Large",
                      503: "Service Unavailable"}.get(code, "")  # fmt: skip
            header = (
                f"HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(header.encode())
            if not head.startswith(b"HEAD "):
                writer.write(body)
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("admin request failed")
        finally:
            writer.close()

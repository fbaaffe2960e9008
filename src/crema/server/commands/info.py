"""The ``INFO`` text: Redis's sections plus crema's ``raft`` and ``checkpoint``.

Each section is a ``# Title`` line followed by ``field:value`` lines, CRLF
separated, sections separated by an empty line, as Redis formats it. The
``replication`` section maps the Raft role onto Redis's (``role:master`` on
the leader, ``role:slave`` elsewhere) and names the leader; ``raft`` lists
the backend's status; ``checkpoint`` its ``checkpoint`` entry, if any.
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from crema import __version__
from crema.server.commands.connection import REDIS_VERSION
from crema.server.session import ServerState

__all__ = ["DEFAULT_SECTIONS", "SECTIONS", "info_text"]

DEFAULT_SECTIONS = ("server", "clients", "memory", "stats", "replication", "raft",
                    "checkpoint", "keyspace")  # fmt: skip
SECTIONS = DEFAULT_SECTIONS

Fields = list[tuple[str, object]]


def info_text(state: ServerState, sections: Iterable[bytes]) -> str:
    """The INFO reply for the requested section names (none: the default sections).

    ``all``, ``everything`` and ``default`` select every section; unknown
    names are ignored, as Redis does.
    """
    wanted = {s.decode("ascii", "replace").lower() for s in sections}
    if not wanted or wanted & {"all", "everything", "default"}:
        names = list(SECTIONS)
    else:
        names = [name for name in SECTIONS if name in wanted]
    status = state.backend.status()
    parts = []
    for name in names:
        fields = _BUILDERS[name](state, status)
        body = "".join(f"{key}:{_format(value)}\r\n" for key, value in fields)
        parts.append(f"# {name.capitalize()}\r\n{body}")
    return "\r\n".join(parts)


def _format(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(str(v) for v in value)
    if value is None:
        return ""
    return str(value).replace("\r", " ").replace("\n", " ")


def _server(state: ServerState, status: dict[str, Any]) -> Fields:
    uptime = int(time.time() - state.started_at)
    return [
        ("redis_version", REDIS_VERSION),
        ("crema_version", __version__),
        ("redis_mode", "standalone"),
        ("os", f"{platform.system()} {platform.release()} {platform.machine()}"),
        ("arch_bits", 64 if sys.maxsize > 2**32 else 32),
        ("python_version", platform.python_version()),
        ("process_id", os.getpid()),
        ("tcp_port", state.port),
        ("uptime_in_seconds", uptime),
        ("uptime_in_days", uptime // 86400),
        ("node_id", status.get("node_id", "")),
    ]


def _clients(state: ServerState, status: dict[str, Any]) -> Fields:
    return [
        ("connected_clients", len(state.clients)),
        ("maxclients", state.max_clients),
        ("blocked_clients", 0),
    ]


def _memory(state: ServerState, status: dict[str, Any]) -> Fields:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    rss = peak
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            rss = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    return [("used_memory_rss", rss), ("used_memory_peak", peak)]


def _stats(state: ServerState, status: dict[str, Any]) -> Fields:
    s = state.stats
    return [
        ("total_connections_received", s.connections_received),
        ("total_commands_processed", s.commands_processed),
        ("total_net_input_bytes", s.net_input_bytes),
        ("total_net_output_bytes", s.net_output_bytes),
        ("rejected_connections", s.rejected_connections),
        ("keyspace_hits", s.keyspace_hits),
        ("keyspace_misses", s.keyspace_misses),
        ("total_error_replies", s.error_replies),
        ("read_barrier_rounds", state.barrier.rounds),
    ]


def _replication(state: ServerState, status: dict[str, Any]) -> Fields:
    role = status.get("role", "")
    return [
        ("role", "master" if role == "leader" else "slave"),
        ("crema_role", role),
        ("leader_id", status.get("leader_id", "")),
        ("connected_slaves", max(len(status.get("voters", []) or []) - 1, 0)),
    ]


def _raft(state: ServerState, status: dict[str, Any]) -> Fields:
    return [(key if key.startswith("raft_") else f"raft_{key}", value)
            for key, value in status.items()
            if key != "checkpoint" and not isinstance(value, dict)]  # fmt: skip


def _checkpoint(state: ServerState, status: dict[str, Any]) -> Fields:
    checkpoint = status.get("checkpoint")
    if not isinstance(checkpoint, dict):
        return [("checkpoint_enabled", int(state.on_checkpoint is not None))]
    fields: Fields = [("checkpoint_enabled", 1)]
    return fields + [(f"checkpoint_{k}", v) for k, v in checkpoint.items()
                     if not isinstance(v, dict)]  # fmt: skip


def _keyspace(state: ServerState, status: dict[str, Any]) -> Fields:
    sm = state.backend.state_machine
    total = len(sm)
    if total == 0:
        return []
    return [("db0", f"keys={total},expires={sm.expires_count},avg_ttl=0")]


_BUILDERS: dict[str, Callable[[ServerState, dict[str, Any]], Fields]] = {
    "server": _server,
    "clients": _clients,
    "memory": _memory,
    "stats": _stats,
    "replication": _replication,
    "raft": _raft,
    "checkpoint": _checkpoint,
    "keyspace": _keyspace,
}

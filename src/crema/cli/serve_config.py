"""``crema serve`` settings: one table of options read from flags, a TOML file and the environment.

Every option has one name used three ways: the flag ``--checkpoint-log-threshold``,
the TOML key ``checkpoint_log_threshold`` (or ``log_threshold`` in a
``[checkpoint]`` table) and the environment variable
``CREMA_CHECKPOINT_LOG_THRESHOLD``. Precedence: flag > TOML > environment >
default. Errors raise :class:`SettingError` naming the option as a flag.
"""

from __future__ import annotations

import argparse
import os
import ssl
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crema.config import CacheConfig, CheckpointConfig, RaftConfig
from crema.errors import ConfigError
from crema.transport.config import TransportConfig, parse_addr

CLIENT_BASE, PEER_BASE, ADMIN_BASE = 7378, 7478, 9478
"""Default ports are base + node id: node 1 serves RESP on 7379, peers on 7479, HTTP on 9479."""

ENV_PREFIX = "CREMA_"


class SettingError(Exception):
    """A bad option value; the message names the option (``--flag: problem``)."""


@dataclass(frozen=True, slots=True)
class Option:
    """One setting of ``crema serve``."""

    name: str
    kind: str  # int, float, str, bool, addr, peers, choice
    default: object
    help: str
    choices: tuple[str, ...] = ()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


OPTIONS: tuple[Option, ...] = (
    Option("node_id", "int", 1, "this node's id, >= 1 (default: 1)"),
    Option("peer_addr", "addr", None,
           f"host:port to listen on for peers (default: 127.0.0.1:{PEER_BASE}+node id)"),
    Option("client_addr", "addr", None,
           f"host:port to serve Redis clients on (default: 127.0.0.1:{CLIENT_BASE}+node id)"),
    Option("admin_addr", "str", None,
           f"host:port of the HTTP admin endpoint, or 'off' "
           f"(default: 127.0.0.1:{ADMIN_BASE}+node id)"),
    Option("peers", "peers", "",
           "the initial voters as ID=HOST:PORT,... : where THIS node reaches each peer "
           "(default: none, a single-node cluster)"),
    Option("data_dir", "str", None,
           "WAL and checkpoints directory (default: ./crema-data/node-ID)"),
    Option("storage", "choice", "disk", "Raft log storage (default: disk)", ("disk", "memory")),
    Option("checkpoint_dir", "str", None, "snapshot directory (default: DATA_DIR/checkpoints)"),
    Option("checkpoint_log_threshold", "int", 10_000,
           "snapshot every N applied entries (default: 10000)"),
    Option("checkpoint_interval", "float", 0.0,
           "also snapshot every N seconds; 0 disables (default: 0)"),
    Option("checkpoint_compression", "bool", True, "LZ4-compress snapshots (default: true)"),
    Option("checkpoint_max_snapshots", "int", 5, "snapshot files kept (default: 5)"),
    Option("checkpoint_auto_recover", "bool", True,
           "restore from the newest snapshot on start (default: true)"),
    Option("max_capacity", "int", None,
           "most entries kept; a write beyond it evicts the least recently written "
           "(equal on every node; default: none, unbounded)"),
    Option("min_free_bytes", "int", 64 << 20,
           "skip a snapshot unless this much disk stays free (default: 67108864)"),
    Option("raft_tick_ms", "int", 50, "milliseconds per Raft tick (default: 50)"),
    Option("raft_election_ticks", "int", 20, "ticks before an election (default: 20)"),
    Option("raft_heartbeat_ticks", "int", 2, "ticks between heartbeats (default: 2)"),
    Option("raft_trailing_entries", "int", 1000,
           "log entries kept behind a snapshot (default: 1000)"),
    Option("raft_write_timeout", "float", 5.0,
           "seconds a write or linearizable read may wait (default: 5.0)"),
    Option("raft_fsync", "choice", "always", "WAL fsync policy (default: always)",
           ("always", "batch", "never")),
    Option("requirepass", "str", None, "password Redis clients must AUTH with (default: none)"),
    Option("cluster_secret", "str", None,
           "shared secret peers must prove they know (default: none)"),
    Option("peer_tls_cert", "str", None,
           "PEM certificate for peer TLS; with --peer-tls-key and --peer-tls-ca (default: none)"),
    Option("peer_tls_key", "str", None, "PEM private key of --peer-tls-cert (default: none)"),
    Option("peer_tls_ca", "str", None,
           "PEM CA bundle that peer certificates must chain to (default: none)"),
    Option("client_tls_cert", "str", None,
           "PEM certificate: Redis clients must then connect with TLS; with --client-tls-key "
           "(default: none, plain TCP)"),
    Option("client_tls_key", "str", None, "PEM private key of --client-tls-cert (default: none)"),
    Option("client_tls_ca", "str", None,
           "PEM CA bundle: Redis clients must present a certificate that chains to it "
           "(default: none, no client certificate asked)"),
    Option("cluster_id", "str", "crema", "cluster name, equal on every node (default: crema)"),
    Option("read_mode", "choice", "linearizable",
           "default read mode of new connections (default: linearizable)",
           ("linearizable", "local")),
    Option("max_clients", "int", 10_000, "client connections at most (default: 10000)"),
    Option("event_loop", "choice", "auto",
           "asyncio event loop: uvloop when installed (auto), or plain asyncio (default: auto)",
           ("auto", "asyncio", "uvloop")),
    Option("log_level", "choice", "info", "logging level (default: info)",
           ("debug", "info", "warning", "error")),
)  # fmt: skip

BY_NAME = {option.name: option for option in OPTIONS}

# ConfigError.field raised by the config classes -> the option to blame
_FIELD_TO_OPTION = {
    "node_id": "node_id", "addr": "peer_addr", "seed_nodes": "peers", "data_dir": "data_dir",
    "raft_storage": "storage", "directory": "checkpoint_dir",
    "log_threshold": "checkpoint_log_threshold", "time_interval": "checkpoint_interval",
    "max_snapshots": "checkpoint_max_snapshots", "tick_interval_ms": "raft_tick_ms",
    "election_ticks": "raft_election_ticks", "heartbeat_ticks": "raft_heartbeat_ticks",
    "trailing_entries": "raft_trailing_entries", "write_timeout": "raft_write_timeout",
    "fsync": "raft_fsync", "cluster_secret": "cluster_secret", "cluster_id": "cluster_id",
    "min_free_bytes": "min_free_bytes", "read_mode": "read_mode", "max_clients": "max_clients",
    "max_capacity": "max_capacity",
}  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per option, all defaulting to None (unset: TOML, environment, default)."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="TOML file with the same options (keys as the flags, '_' for '-'); "
        "default: $CREMA_CONFIG if set",
    )
    for option in OPTIONS:
        if option.kind == "bool":
            parser.add_argument(
                option.flag,
                dest=option.name,
                default=None,
                action=argparse.BooleanOptionalAction,
                help=option.help,
            )
        else:
            parser.add_argument(
                option.flag,
                dest=option.name,
                default=None,
                metavar="|".join(option.choices) or option.name.split("_")[-1].upper(),
                help=option.help,
            )


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _int(value: object) -> int:
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        raise ValueError(f"expected an integer, got {value!r}") from None


def _float(value: object) -> float:
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        raise ValueError(f"expected a number, got {value!r}") from None


def parse_peers(value: object) -> tuple[tuple[int, str], ...]:
    """``ID=HOST:PORT,...`` (or a TOML table) as ``((id, addr), ...)``; ValueError if malformed."""
    if isinstance(value, Mapping):
        items = [(str(k), str(v)) for k, v in value.items()]
    elif isinstance(value, str):
        items = []
        for part in filter(None, (p.strip() for p in value.split(","))):
            node_id, sep, addr = part.partition("=")
            if not sep:
                raise ValueError(f"expected ID=HOST:PORT, got {part!r}")
            items.append((node_id, addr))
    else:
        raise ValueError(f"expected 'ID=HOST:PORT,...', got {value!r}")
    peers = []
    for node_id, addr in items:
        if not node_id.strip().isdigit() or int(node_id) < 1:
            raise ValueError(f"bad node id {node_id!r}")
        parse_addr(addr.strip())
        peers.append((int(node_id), addr.strip()))
    if len({i for i, _ in peers}) != len(peers):
        raise ValueError("node ids must be unique")
    return tuple(peers)


def convert(option: Option, value: object) -> object:
    """``value`` (a string from a flag or the environment, or a TOML value) as the option's type.

    Raises:
        SettingError: the value does not fit.
    """
    converters: dict[str, Callable[[Any], object]] = {
        "int": _int, "float": _float, "str": str, "peers": parse_peers,
        "bool": lambda v: v if isinstance(v, bool) else _bool(str(v)),
    }  # fmt: skip
    try:
        if option.kind in ("int", "float") and isinstance(value, bool):
            raise ValueError(f"expected a number, got {value!r}")
        if option.kind in converters:
            result = converters[option.kind](value)
        elif option.kind == "addr":
            parse_addr(str(value))
            result = str(value)
        else:  # choice
            result = str(value).lower()
            if result not in option.choices:
                raise ValueError(f"expected one of {', '.join(option.choices)}, got {value!r}")
    except (ValueError, TypeError, ConfigError) as exc:
        message = str(exc).removeprefix("addr: ")
        raise SettingError(f"{option.flag}: {message}") from None
    return result


def load_toml(path: str) -> dict[str, object]:
    """The options a TOML file sets, tables flattened (``[raft] tick_ms`` is ``raft_tick_ms``)."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise SettingError(f"--config: cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingError(f"--config: {path} is not valid TOML: {exc}") from None
    flat: dict[str, object] = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if isinstance(value, dict) and name != "peers":
            for sub, subvalue in value.items():
                flat[f"{name}_{sub.replace('-', '_')}"] = subvalue
        else:
            flat[name] = value
    for name in flat:
        if name not in BY_NAME:
            raise SettingError(f"--config: unknown option {name!r} in {path}")
    return flat


def resolve(args: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, Any]:
    """Every option's value: flag > TOML (``--config`` or ``CREMA_CONFIG``) > environment > default.

    Raises:
        SettingError: a bad value, naming the option.
    """
    config_path = args.config or environ.get(ENV_PREFIX + "CONFIG")
    from_toml = load_toml(config_path) if config_path else {}
    values: dict[str, Any] = {}
    for option in OPTIONS:
        flag_value = getattr(args, option.name, None)
        if flag_value is not None:
            values[option.name] = convert(option, flag_value)
        elif option.name in from_toml:
            values[option.name] = convert(option, from_toml[option.name])
        elif option.env in environ:
            values[option.name] = convert(option, environ[option.env])
        else:
            values[option.name] = option.default
    node_id = values["node_id"]
    if node_id < 1:
        raise SettingError(f"--node-id: must be >= 1, got {node_id}")
    if values["peer_addr"] is None:
        values["peer_addr"] = dict(values["peers"]).get(node_id, f"127.0.0.1:{PEER_BASE + node_id}")
    if values["client_addr"] is None:
        values["client_addr"] = f"127.0.0.1:{CLIENT_BASE + node_id}"
    if values["admin_addr"] is None:
        values["admin_addr"] = f"127.0.0.1:{ADMIN_BASE + node_id}"
    if values["admin_addr"].lower() in ("off", "none", ""):
        values["admin_addr"] = None
    else:
        values["admin_addr"] = convert(Option("admin_addr", "addr", None, ""), values["admin_addr"])
    if values["data_dir"] is None:
        values["data_dir"] = f"./crema-data/node-{node_id}"
    return values


def cache_config(values: Mapping[str, Any]) -> CacheConfig:
    """The node configuration for resolved option ``values``.

    Raises:
        SettingError: the config classes refused a value (named as its option).
    """
    try:
        data_dir = Path(values["data_dir"])
        interval = values["checkpoint_interval"]
        checkpoints = CheckpointConfig(
            values["checkpoint_dir"] or data_dir / "checkpoints",
            log_threshold=values["checkpoint_log_threshold"],
            time_interval=interval if interval else None,
            compression=values["checkpoint_compression"],
            max_snapshots=values["checkpoint_max_snapshots"],
            auto_recover=values["checkpoint_auto_recover"],
        )
        raft = RaftConfig(
            tick_interval_ms=values["raft_tick_ms"],
            election_ticks=values["raft_election_ticks"],
            heartbeat_ticks=values["raft_heartbeat_ticks"],
            trailing_entries=values["raft_trailing_entries"],
            write_timeout=values["raft_write_timeout"],
            fsync=values["raft_fsync"],
        )
        return CacheConfig(
            values["node_id"],
            values["peer_addr"],
            seed_nodes=tuple(values["peers"]),
            data_dir=data_dir,
            raft_storage=values["storage"],
            raft_config=raft,
            checkpoint_config=checkpoints,
            cluster_secret=values["cluster_secret"],
            cluster_id=values["cluster_id"],
            min_free_bytes=values["min_free_bytes"],
            max_capacity=values["max_capacity"],
        )
    except ConfigError as exc:
        option = BY_NAME.get(_FIELD_TO_OPTION.get(exc.field, ""))
        name = option.flag if option is not None else exc.field
        message = str(exc).removeprefix(f"{exc.field}: ")
        raise SettingError(f"{name}: {message}") from None


def transport_config(values: Mapping[str, Any]) -> TransportConfig:
    """The peer transport settings: TLS when ``--peer-tls-*`` are given (all three or none).

    Raises:
        SettingError: some but not all TLS options given, or a file cannot be loaded.
    """
    names = ("peer_tls_cert", "peer_tls_key", "peer_tls_ca")
    given = [n for n in names if values.get(n)]
    if not given:
        return TransportConfig()
    if len(given) != len(names):
        missing = BY_NAME[next(n for n in names if n not in given)]
        raise SettingError(f"{missing.flag}: needed with {BY_NAME[given[0]].flag}")
    try:
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.load_cert_chain(values["peer_tls_cert"], values["peer_tls_key"])
        server.verify_mode = ssl.CERT_REQUIRED
        server.load_verify_locations(values["peer_tls_ca"])
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client.load_cert_chain(values["peer_tls_cert"], values["peer_tls_key"])
        client.load_verify_locations(values["peer_tls_ca"])
    except (OSError, ssl.SSLError) as exc:
        raise SettingError(f"--peer-tls-cert: cannot load the TLS files: {exc}") from None
    return TransportConfig(server_ssl=server, client_ssl=client)


def client_ssl(values: Mapping[str, Any]) -> ssl.SSLContext | None:
    """The TLS context of the Redis-protocol listener, or None for plain TCP.

    Raises:
        SettingError: only one of ``--client-tls-cert`` and ``--client-tls-key``
            given, ``--client-tls-ca`` without them, or a file cannot be loaded.
    """
    cert, key, ca = (values.get(n) for n in ("client_tls_cert", "client_tls_key", "client_tls_ca"))
    if not cert and not key:
        if ca:
            raise SettingError("--client-tls-ca: needs --client-tls-cert and --client-tls-key")
        return None
    if not cert or not key:
        missing, given = ("--client-tls-key", "--client-tls-cert") if cert else (
            "--client-tls-cert", "--client-tls-key")  # fmt: skip
        raise SettingError(f"{missing}: needed with {given}")
    try:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(cert, key)
        if ca:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(ca)
    except (OSError, ssl.SSLError) as exc:
        raise SettingError(f"--client-tls-cert: cannot load the TLS files: {exc}") from None
    return context


def environment() -> dict[str, str]:
    """The ``CREMA_*`` variables of this process."""
    return {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}

"""``crema cluster ...`` and ``crema snapshot create``: talk RESP to a running node.

``status`` (``CREMA.STATUS``), ``add-node`` (``CREMA.ADDNODE``),
``remove-node`` (``CREMA.REMOVENODE``), ``transfer-leader``
(``CREMA.TRANSFER``); ``crema snapshot create`` (``CREMA.CHECKPOINT``).
Exit codes: 0 done, 1 the node refused or could not be reached, 2 usage.
Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import redis

from crema.cli.local_cluster import decoded, pairs
from crema.errors import ConfigError
from crema.transport.config import parse_addr

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_ADDR = "127.0.0.1:7379"


def _connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--addr", default=DEFAULT_ADDR,
                        help="the node's client (RESP) address (default: %(default)s)")  # fmt: skip
    parser.add_argument("--password", default=None, help="the node's requirepass, if set")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds to wait for the reply (default: %(default)s)")  # fmt: skip
    parser.add_argument("--tls", action="store_true",
                        help="connect with TLS (to a node with --client-tls-cert)")  # fmt: skip
    parser.add_argument("--tls-ca", default=None, metavar="FILE",
                        help="PEM CA bundle to verify the node's certificate with "
                             "(implies --tls; default: the system's)")  # fmt: skip
    parser.add_argument("--tls-cert", default=None, metavar="FILE",
                        help="PEM client certificate, for a node with --client-tls-ca")  # fmt: skip
    parser.add_argument("--tls-key", default=None, metavar="FILE",
                        help="PEM private key of --tls-cert")  # fmt: skip


def _tls_options(args: argparse.Namespace) -> dict[str, Any]:
    """redis-py keyword arguments for the ``--tls*`` options (empty: plain TCP)."""
    if not (args.tls or args.tls_ca or args.tls_cert or args.tls_key):
        return {}
    if bool(args.tls_cert) != bool(args.tls_key):
        raise _FailedError(EXIT_USAGE, "--tls-cert and --tls-key go together")
    return {"ssl": True, "ssl_ca_certs": args.tls_ca, "ssl_certfile": args.tls_cert,
            "ssl_keyfile": args.tls_key}  # fmt: skip


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``crema cluster ...`` to the command line."""
    parser = commands.add_parser("cluster", help="inspect and change a running cluster")
    sub = parser.add_subparsers(dest="cluster_command", metavar="SUBCOMMAND", required=True)

    p = sub.add_parser("status", help="the node's view of the cluster (CREMA.STATUS)")
    _connection_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(handler=cmd_status)

    p = sub.add_parser("add-node", help="add a node (CREMA.ADDNODE)")
    p.add_argument("node_id", type=int, metavar="ID")
    p.add_argument("node_addr", metavar="PEER_ADDR", help="where the cluster reaches its peer port")
    p.add_argument("--learner", action="store_true", help="add as a non-voting learner")
    _connection_options(p)
    p.set_defaults(handler=cmd_add_node)

    p = sub.add_parser("remove-node", help="remove a node (CREMA.REMOVENODE)")
    p.add_argument("node_id", type=int, metavar="ID")
    _connection_options(p)
    p.set_defaults(handler=cmd_remove_node)

    p = sub.add_parser("transfer-leader", help="hand leadership to a node (CREMA.TRANSFER)")
    p.add_argument("node_id", type=int, metavar="ID")
    _connection_options(p)
    p.set_defaults(handler=cmd_transfer)


def register_snapshot_create(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``crema snapshot create`` to the ``snapshot`` sub-commands."""
    p = sub.add_parser("create", help="ask a running node to write a snapshot now")
    _connection_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(handler=cmd_snapshot_create)


class _FailedError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _call(args: argparse.Namespace, *command: str | int) -> Any:
    try:
        host, port = parse_addr(args.addr, "--addr")
    except ConfigError as exc:
        raise _FailedError(EXIT_USAGE, str(exc)) from None
    client = redis.Redis(host, port, password=args.password, socket_timeout=args.timeout,
                         socket_connect_timeout=5, **_tls_options(args))  # fmt: skip
    try:
        return client.execute_command(*command)  # type: ignore[no-untyped-call]
    except redis.ConnectionError as exc:
        raise _FailedError(EXIT_FAILED, f"cannot reach {args.addr}: {exc}") from None
    except redis.TimeoutError:
        raise _FailedError(EXIT_FAILED, f"no reply from {args.addr} in {args.timeout} s") from None
    except redis.RedisError as exc:
        raise _FailedError(EXIT_FAILED, f"{args.addr} refused: {exc}") from None
    finally:
        client.close()


def _run(args: argparse.Namespace, *command: str | int) -> tuple[int, Any]:
    try:
        return EXIT_OK, _call(args, *command)
    except _FailedError as exc:
        print(f"crema {args.command}: error: {exc}", file=sys.stderr)
        return exc.code, None


def _positive(args: argparse.Namespace) -> bool:
    if args.node_id < 1:
        print(f"crema cluster: error: ID must be >= 1, got {args.node_id}", file=sys.stderr)
        return False
    return True


def cmd_status(args: argparse.Namespace) -> int:
    """``crema cluster status``."""
    code, reply = _run(args, "CREMA.STATUS")
    if code:
        return code
    status = {k: decoded(v) for k, v in pairs(reply).items()}
    if args.json:
        print(json.dumps(status, indent=2))
        return EXIT_OK
    width = max(len(k) for k in status)
    for key, value in status.items():
        shown = ", ".join(map(str, value)) if isinstance(value, list) else value
        print(f"{key:<{width}}  {shown if shown is not None else '-'}")
    return EXIT_OK


def cmd_add_node(args: argparse.Namespace) -> int:
    """``crema cluster add-node ID PEER_ADDR [--learner]``."""
    if not _positive(args):
        return EXIT_USAGE
    try:
        parse_addr(args.node_addr, "PEER_ADDR")
    except ConfigError as exc:
        print(f"crema cluster: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    extra = ("LEARNER",) if args.learner else ()
    code, _ = _run(args, "CREMA.ADDNODE", args.node_id, args.node_addr, *extra)
    if code == EXIT_OK:
        kind = "learner" if args.learner else "voter"
        print(f"node {args.node_id} ({args.node_addr}) added as a {kind}")
    return code


def cmd_remove_node(args: argparse.Namespace) -> int:
    """``crema cluster remove-node ID``."""
    if not _positive(args):
        return EXIT_USAGE
    code, _ = _run(args, "CREMA.REMOVENODE", args.node_id)
    if code == EXIT_OK:
        print(f"node {args.node_id} removed")
    return code


def cmd_transfer(args: argparse.Namespace) -> int:
    """``crema cluster transfer-leader ID``."""
    if not _positive(args):
        return EXIT_USAGE
    code, _ = _run(args, "CREMA.TRANSFER", args.node_id)
    if code == EXIT_OK:
        print(f"node {args.node_id} is the leader")
    return code


def cmd_snapshot_create(args: argparse.Namespace) -> int:
    """``crema snapshot create --addr``."""
    code, reply = _run(args, "CREMA.CHECKPOINT")
    if code:
        return code
    info = {k: decoded(v) for k, v in pairs(reply).items()}
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"snapshot at index {info['index']} (term {info['term']}): {info['path']} "
              f"({info['size']} bytes, {info.get('entries', '?')} entries)")  # fmt: skip
    return EXIT_OK

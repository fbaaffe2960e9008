"""Server and crema commands: INFO, COMMAND, SHUTDOWN and the CREMA.* commands."""

from __future__ import annotations

from collections.abc import Awaitable

from crema.errors import CommandError, CremaError
from crema.server.args import cstr, syntax_error, text
from crema.server.commands.common import to_reply
from crema.server.commands.info import info_text
from crema.server.commands.table import COMMANDS, CommandSpec, command, container, subcommand
from crema.server.resp_reply import OK, Reply, SimpleString, Verbatim
from crema.server.session import READ_MODES, MembershipOps, Session

_SHUTDOWN_FLAGS = {b"NOSAVE", b"SAVE", b"NOW", b"FORCE", b"ABORT"}


@command("info", -1, "stale", group="server",
         summary="Information and statistics about the server")  # fmt: skip
async def info(session: Session, args: list[bytes]) -> Reply:
    return Verbatim(info_text(session.server, args[1:]))


@command("shutdown", -1, "admin stale", group="server",
         summary="Stop the server (calls the owner's shutdown callback)")  # fmt: skip
async def shutdown(session: Session, args: list[bytes]) -> Reply:
    if any(cstr(arg).upper() not in _SHUTDOWN_FLAGS for arg in args[1:]):
        raise syntax_error()
    callback = session.server.on_shutdown
    if callback is None:
        raise CommandError("Errors trying to SHUTDOWN. Check logs.")
    callback()
    session.closing = session.silent = True  # like Redis: no reply, the connection closes
    return None


@command("crema.status", 1, "stale fast", group="crema", since="0.1.0",
         summary="The node's cluster status (crema)")  # fmt: skip
async def crema_status(session: Session, args: list[bytes]) -> Reply:
    return to_reply(session.server.backend.status())


@command("crema.readmode", -1, "stale fast", group="crema", since="0.1.0",
         summary="Get or set this connection's read mode (linearizable, local)")  # fmt: skip
async def crema_readmode(session: Session, args: list[bytes]) -> Reply:
    if len(args) == 1:
        return session.read_mode.encode()
    if len(args) > 2:
        raise CommandError("wrong number of arguments for 'crema.readmode' command")
    mode = text(args[1]).lower()
    if mode not in READ_MODES:
        raise CommandError("read mode must be 'linearizable' or 'local'")
    session.read_mode = mode
    return OK


@command("crema.checkpoint", 1, "admin", group="crema", since="0.1.0", blocking=True,
         summary="Write a snapshot now; reply with its index, term, path, size")  # fmt: skip
async def crema_checkpoint(session: Session, args: list[bytes]) -> Reply:
    callback = session.server.on_checkpoint
    if callback is None:
        raise CommandError("checkpoints are not configured on this node")
    try:
        result = await callback()
    except CommandError:
        raise
    except Exception as exc:
        raise CommandError(f"checkpoint failed: {exc}") from exc
    return to_reply(result)


def _membership(session: Session) -> MembershipOps:
    ops = session.server.membership
    if ops is None:
        raise CommandError("membership changes are not available on this server")
    return ops


def _node_id(arg: bytes) -> int:
    word = text(arg)
    if not word.isdigit() or int(word) < 1:
        raise CommandError("node id must be a positive integer")
    return int(word)


async def _run_membership(coro: Awaitable[None]) -> Reply:
    try:
        await coro
    except CremaError:
        raise
    except Exception as exc:
        raise CommandError(f"membership change failed: {exc}") from exc
    return OK


@command("crema.addnode", -3, "admin", group="crema", since="0.1.0", blocking=True,
         summary="Add a node: CREMA.ADDNODE id host:port [LEARNER]")  # fmt: skip
async def crema_addnode(session: Session, args: list[bytes]) -> Reply:
    ops = _membership(session)
    node_id = _node_id(args[1])
    addr = text(args[2])
    options = [text(a).upper() for a in args[3:]]
    if any(o != "LEARNER" for o in options):
        raise syntax_error()
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise CommandError("address must be host:port")
    return await _run_membership(ops.add_node(node_id, addr, not options))


@command("crema.removenode", 2, "admin", group="crema", since="0.1.0", blocking=True,
         summary="Remove a node from the cluster: CREMA.REMOVENODE id")  # fmt: skip
async def crema_removenode(session: Session, args: list[bytes]) -> Reply:
    ops = _membership(session)
    return await _run_membership(ops.remove_node(_node_id(args[1])))


@command(
    "crema.transfer",
    2,
    "admin",
    group="crema",
    since="0.1.0",
    blocking=True,
    summary="Hand leadership to a node and wait until it leads: CREMA.TRANSFER id",
)
async def crema_transfer(session: Session, args: list[bytes]) -> Reply:
    ops = _membership(session)
    return await _run_membership(ops.transfer(_node_id(args[1])))


# ----------------------------------------------------------------- COMMAND


def _acl_categories(spec: CommandSpec) -> list[Reply]:
    cats = ["@write" if spec.writes else "@read" if "readonly" in spec.flags else "@connection"]
    cats.append("@fast" if "fast" in spec.flags else "@slow")
    if spec.group in ("string", "server"):
        cats.append(f"@{spec.group}")
    elif spec.group == "generic":
        cats.append("@keyspace")
    if "admin" in spec.flags:
        cats.append("@admin")
    return [SimpleString(c) for c in cats]


def _key_specs(spec: CommandSpec) -> list[Reply]:
    if spec.first_key == 0:
        return []
    flags = ["RO", "ACCESS"] if "readonly" in spec.flags else ["RW", "UPDATE"]
    last = spec.last_key - spec.first_key if spec.last_key >= 0 else spec.last_key
    return [{
        b"flags": [SimpleString(f) for f in flags],
        b"begin_search": {b"type": b"index", b"spec": {b"index": spec.first_key}},
        b"find_keys": {b"type": b"range",
                       b"spec": {b"lastkey": last, b"keystep": spec.step, b"limit": 0}},
    }]  # fmt: skip


def command_info(spec: CommandSpec) -> Reply:
    """One command's ``COMMAND INFO`` entry, in Redis 7's ten-field layout."""
    return [
        spec.name.encode(),
        spec.arity,
        [SimpleString(f) for f in spec.flags],
        spec.first_key,
        spec.last_key,
        spec.step,
        _acl_categories(spec),
        [],
        _key_specs(spec),
        [command_info(sub) for sub in spec.subcommands.values()],
    ]


def command_docs(spec: CommandSpec) -> Reply:
    """One command's ``COMMAND DOCS`` map."""
    doc: dict[Reply, Reply] = {
        b"summary": spec.summary.encode(),
        b"since": spec.since.encode(),
        b"group": spec.group.encode(),
    }
    if spec.subcommands:
        doc[b"subcommands"] = {s.name.encode(): command_docs(s) for s in spec.subcommands.values()}
    return doc


async def _all_commands(session: Session, args: list[bytes]) -> Reply:
    return [command_info(spec) for spec in COMMANDS.values()]


container("command", group="server", summary="Details about crema's commands", since="2.8.13",
          arity=-1, flags="stale", handler=_all_commands)  # fmt: skip


@subcommand("command", "count", 2, "stale", summary="Number of commands")
async def command_count(session: Session, args: list[bytes]) -> Reply:
    return len(COMMANDS)


@subcommand("command", "list", -2, "stale", summary="List command names")
async def command_list(session: Session, args: list[bytes]) -> Reply:
    return [name for name in COMMANDS]


@subcommand("command", "info", -2, "stale", summary="Details about commands")
async def command_info_cmd(session: Session, args: list[bytes]) -> Reply:
    if len(args) == 2:
        return await _all_commands(session, args)
    return [command_info(COMMANDS[n]) if (n := name.lower()) in COMMANDS else None
            for name in args[2:]]  # fmt: skip


@subcommand("command", "docs", -2, "stale", summary="Documentation of commands")
async def command_docs_cmd(session: Session, args: list[bytes]) -> Reply:
    names = [n.lower() for n in args[2:]] or list(COMMANDS)
    return {n: command_docs(COMMANDS[n]) for n in names if n in COMMANDS}

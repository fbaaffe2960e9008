"""Connection commands: PING, ECHO, HELLO, AUTH, SELECT, QUIT and CLIENT.

Wording follows Redis 7.0 (``networking.c``, ``acl.c``, ``server.c``); CLIENT
SETINFO follows Redis 7.2, since redis-py sends it on every connect.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from crema.errors import CommandError
from crema.server.args import cstr, parse_int, syntax_error, text, wrong_arity
from crema.server.commands.table import command, container, subcommand
from crema.server.hello import parse_hello, validate_client_name
from crema.server.resp_reply import OK, PONG, Reply, Verbatim
from crema.server.session import Session

__all__ = ["REDIS_VERSION", "client_info_line"]

REDIS_VERSION = "7.0.0"
"""The Redis version whose commands and replies crema follows (HELLO, INFO)."""

_NOAUTH_HELLO = (
    "HELLO must be called with the client already authenticated, otherwise the "
    "HELLO AUTH <user> <pass> option can be used to authenticate the client "
    "and select the RESP protocol version at the same time"
)
_WRONGPASS = "invalid username-password pair or user is disabled."
_NO_PASSWORD = (
    "AUTH <password> called without any password configured for the default user. "
    "Are you sure your configuration is correct?"
)
_INT32 = 2**31


@command("ping", -1, "fast stale", group="connection", summary="Ping the server")
async def ping(session: Session, args: list[bytes]) -> Reply:
    if len(args) > 2:
        raise wrong_arity("ping")
    return PONG if len(args) == 1 else args[1]


@command("echo", 2, "fast", group="connection", summary="Echo the given string")
async def echo(session: Session, args: list[bytes]) -> Reply:
    return args[1]


def _authenticator(session: Session) -> Callable[[bytes, bytes], bool]:
    server = session.server

    def authenticate(username: bytes, password: bytes) -> bool:
        if server.requirepass is None:
            ok = username == b"default"  # Redis's default user has nopass
        else:
            ok = server.check_password(username, password)
        if ok:
            session.authenticated = True
        return ok

    return authenticate


def _role(session: Session) -> str:
    role = session.server.backend.status().get("role")
    return "master" if role == "leader" else "replica"


@command("hello", -1, "fast no-auth stale", group="connection", since="6.0.0",
         summary="Handshake: switch RESP version, authenticate, name the connection")  # fmt: skip
async def hello(session: Session, args: list[bytes]) -> Reply:
    authenticate = _authenticator(session)
    options = parse_hello(args, authenticate)
    if options.client_name is not None:
        session.name = options.client_name
    if not session.authenticated:
        raise CommandError(_NOAUTH_HELLO, code="NOAUTH")
    if options.protocol is not None:
        session.protocol = options.protocol
    return {
        b"server": b"redis",
        b"version": REDIS_VERSION.encode(),
        b"proto": session.protocol,
        b"id": session.id,
        b"mode": b"standalone",
        b"role": _role(session).encode(),
        b"modules": [],
    }


@command("auth", -2, "fast no-auth stale", group="connection",
         summary="Authenticate to the server")  # fmt: skip
async def auth(session: Session, args: list[bytes]) -> Reply:
    if len(args) > 3:
        raise syntax_error()
    if len(args) == 2:
        if session.server.requirepass is None:
            raise CommandError(_NO_PASSWORD)
        username, password = b"default", args[1]
    else:
        username, password = args[1], args[2]
    authenticate = _authenticator(session)
    if not authenticate(username, password):
        raise CommandError(_WRONGPASS, code="WRONGPASS")
    return OK


@command("select", 2, "fast stale", group="connection",
         summary="Select the logical database (crema has only database 0)")  # fmt: skip
async def select(session: Session, args: list[bytes]) -> Reply:
    index = parse_int(args[1])
    if not -_INT32 <= index < _INT32:
        raise CommandError("value is out of range, value must between -2147483648 and 2147483647")
    if index != 0:
        raise CommandError("DB index is out of range")
    return OK


@command("quit", -1, "fast no-auth stale", group="connection",
         summary="Close the connection")  # fmt: skip
async def quit_(session: Session, args: list[bytes]) -> Reply:
    session.closing = True
    return OK


container("client", group="connection", summary="A container for client connection commands")


@subcommand("client", "setname", 3, "fast stale", summary="Set the current connection name")
async def client_setname(session: Session, args: list[bytes]) -> Reply:
    validate_client_name(args[2])
    session.name = args[2]
    return OK


@subcommand("client", "getname", 2, "fast stale", summary="Get the current connection name")
async def client_getname(session: Session, args: list[bytes]) -> Reply:
    return session.name or None


@subcommand("client", "id", 2, "fast stale", summary="Returns the client ID for the connection")
async def client_id(session: Session, args: list[bytes]) -> Reply:
    return session.id


@subcommand("client", "info", 2, "stale", summary="Information about the current connection")
async def client_info(session: Session, args: list[bytes]) -> Reply:
    return Verbatim(client_info_line(session, time.monotonic()) + "\n")


@subcommand("client", "list", -2, "admin stale", summary="List the open client connections")
async def client_list(session: Session, args: list[bytes]) -> Reply:
    now = time.monotonic()
    lines = [client_info_line(s, now) + "\n" for s in list(session.server.clients.values())]
    return Verbatim("".join(lines))


@subcommand("client", "setinfo", 4, "stale", since="7.2.0",
            summary="Set client library name or version (LIB-NAME, LIB-VER)")  # fmt: skip
async def client_setinfo(session: Session, args: list[bytes]) -> Reply:
    attr = cstr(args[2]).lower()
    if attr not in (b"lib-name", b"lib-ver"):
        raise CommandError(f"Unrecognized option '{text(cstr(args[2]))}'")
    value = args[3]
    if any(byte < 0x21 or byte > 0x7E for byte in value):
        raise CommandError(f"{text(attr)} cannot contain spaces, newlines or special characters.")
    if attr == b"lib-name":
        session.lib_name = value
    else:
        session.lib_ver = value
    return OK


def client_info_line(session: Session, now: float) -> str:
    """One ``CLIENT LIST`` line (the fields crema tracks, in Redis's format)."""
    fields = [
        ("id", str(session.id)),
        ("addr", session.addr),
        ("laddr", session.laddr),
        ("name", text(session.name)),
        ("age", str(int(now - session.created_at))),
        ("idle", str(int(now - session.last_active))),
        ("flags", "N"),
        ("db", "0"),
        ("cmd", session.last_command),
        ("user", "default"),
        ("resp", str(session.protocol)),
        ("lib-name", text(session.lib_name)),
        ("lib-ver", text(session.lib_ver)),
        ("read-mode", session.read_mode),
    ]
    return " ".join(f"{key}={value}" for key, value in fields)

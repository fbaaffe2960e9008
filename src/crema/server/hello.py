"""Connection command arguments: HELLO and client names, as Redis 7.0 checks them.

redis-py and redis-cli send ``HELLO 3`` (RESP3) and ``CLIENT SETNAME`` on
connect, so their error replies matter as much as the data commands'. The
server applies the result (protocol version, authentication, name); these
functions only validate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from crema.errors import CommandError
from crema.server.args import cstr, parse_int, text

__all__ = ["HelloOptions", "parse_hello", "validate_client_name"]


@dataclass(frozen=True, slots=True)
class HelloOptions:
    """The arguments of ``HELLO [protover [AUTH user pass] [SETNAME name]]``.

    Attributes:
        protocol: 2 or 3, or None to keep the connection's version.
        auth: (username, password) when AUTH was given.
        client_name: the name to set (``b""`` clears it), or None.
    """

    protocol: int | None = None
    auth: tuple[bytes, bytes] | None = None
    client_name: bytes | None = None


def validate_client_name(name: bytes) -> None:
    """Refuse a client name with bytes outside ``!`` to ``~``, as Redis does.

    Raises:
        CommandError: ``ERR Client names cannot contain spaces, newlines or
            special characters.``
    """
    if any(byte < 0x21 or byte > 0x7E for byte in name):
        raise CommandError("Client names cannot contain spaces, newlines or special characters.")


def parse_hello(
    args: Sequence[bytes], authenticate: Callable[[bytes, bytes], bool] | None = None
) -> HelloOptions:
    """Parse ``HELLO`` (``args[0]`` is the command name) as Redis 7.0's ``helloCommand``.

    Redis checks AUTH credentials as it meets them, before the options after
    them are parsed, so the check is passed in to keep the order of errors.

    Args:
        args: the whole command.
        authenticate: called with (username, password) for each AUTH option;
            False refuses them. None leaves credentials to the caller.

    Returns:
        The validated options. Refusing a client that is still not
        authenticated (``-NOAUTH``) is the server's job.

    Raises:
        CommandError: ``ERR Protocol version is not an integer or out of
            range``, ``NOPROTO unsupported protocol version``, ``WRONGPASS
            invalid username-password pair or user is disabled.``, ``ERR
            Syntax error in HELLO option '<opt>'`` or the client-name error.
    """
    protocol: int | None = None
    j = 1
    if len(args) >= 2:
        protocol = parse_int(args[1], "Protocol version is not an integer or out of range")
        if protocol not in (2, 3):
            raise CommandError("unsupported protocol version", code="NOPROTO")
        j = 2
    auth: tuple[bytes, bytes] | None = None
    name: bytes | None = None
    while j < len(args):
        more = len(args) - 1 - j
        opt = cstr(args[j]).upper()
        if opt == b"AUTH" and more >= 2:
            auth = (args[j + 1], args[j + 2])
            if authenticate is not None and not authenticate(*auth):
                raise CommandError(
                    "invalid username-password pair or user is disabled.", code="WRONGPASS"
                )
            j += 3
        elif opt == b"SETNAME" and more >= 1:
            validate_client_name(args[j + 1])
            name = args[j + 1]
            j += 2
        else:
            raise CommandError(f"Syntax error in HELLO option '{text(cstr(args[j]))}'")
    return HelloOptions(protocol, auth, name)

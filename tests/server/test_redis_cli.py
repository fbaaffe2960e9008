"""redis-cli (Debian redis-tools) against crema, compared with the same calls against Redis.

Each case runs ``redis-cli -p PORT ...`` on a freshly flushed redis-server
and crema; standard output and the exit status must be the same.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence

import pytest

from tests.server.crema_server import CremaServer, running_crema
from tests.server.redis_server import RedisServer

pytestmark = pytest.mark.skipif(shutil.which("redis-cli") is None, reason="needs redis-cli")


def cli(port: int, args: Sequence[str], stdin: str | None = None) -> tuple[int, str]:
    done = subprocess.run(["redis-cli", "-p", str(port), *args], input=stdin, capture_output=True,
                          text=True, timeout=20, check=False)  # fmt: skip
    return done.returncode, done.stdout


CASES: list[tuple[list[str], str | None]] = [
    (["SET", "a", "1"], None),
    (["GET", "a"], None),
    (["GET", "nope"], None),
    (["INCR", "counter"], None),
    (["MGET", "a", "nope"], None),
    (["FOO", "bar"], None),
    (["GET"], None),
    (["SET", "a", "1", "EX", "0"], None),
    (["--raw", "MGET", "a", "b"], None),
    (["PING"], None),
    ([], "SET x 5\nINCRBY x 10\nGET x\nEXPIRE x 100\nTTL x\nKEYS x*\nTYPE x\nDEL x\nEXISTS x\n"),
    (["-x", "SET", "fromstdin"], "value from stdin"),
]


@pytest.mark.parametrize(("args", "stdin"), CASES, ids=lambda v: str(v)[:30])
def test_same_output_as_redis(
    redis_server: RedisServer, crema_server: CremaServer, args: list[str], stdin: str | None
) -> None:
    outputs = []
    for port in (redis_server.port, crema_server.port):
        cli(port, ["FLUSHALL"])
        cli(port, ["SET", "a", "1"])
        outputs.append(cli(port, args, stdin))
    assert outputs[1] == outputs[0]


def test_auth_and_crema_commands() -> None:
    with running_crema(requirepass="pw") as crema:
        assert cli(crema.port, ["GET", "a"]) == (
            0,
            "NOAUTH Authentication required.\n\n",
        )  # as Redis
        code, out = cli(crema.port, ["-a", "pw", "--no-auth-warning", "SET", "a", "1"])
        assert (code, out) == (0, "OK\n")
        code, out = cli(crema.port, ["-a", "pw", "--no-auth-warning", "CREMA.STATUS"])
        assert code == 0 and "role" in out and "leader" in out
        code, out = cli(crema.port, ["-a", "pw", "--no-auth-warning", "INFO", "replication"])
        assert code == 0 and "role:master" in out

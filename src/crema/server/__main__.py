"""``python -m crema.server``: a single-node preview of the RESP server.

Serves one in-process :class:`~crema.server.backend.LocalBackend` (no Raft,
no replication, no persistence) so ``redis-cli -p 7379`` works today. The
clustered server is ``crema serve``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

from crema.node.runtime import loop_factory
from crema.server.backend import LocalBackend
from crema.server.server import DEFAULT_PORT, RespServer

__all__ = ["main"]


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m crema.server",
        description="Single-node preview of crema's Redis-protocol server (in memory, no Raft).",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help="port to bind (default: %(default)s)")  # fmt: skip
    parser.add_argument("--requirepass", default=None, help="password clients must AUTH with")
    parser.add_argument("--read-mode", choices=("linearizable", "local"), default="linearizable",
                        help="default read mode (default: %(default)s)")  # fmt: skip
    parser.add_argument("--max-clients", type=int, default=10000,
                        help="connections at most (default: %(default)s)")  # fmt: skip
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    server = RespServer(
        LocalBackend(),
        args.host,
        args.port,
        requirepass=args.requirepass,
        read_mode=args.read_mode,
        max_clients=args.max_clients,
        on_shutdown=stop.set,
    )
    await server.start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    print(f"crema single-node preview on {server.host}:{server.port} (no replication)", flush=True)
    await stop.wait()
    await server.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the preview server until SIGINT, SIGTERM or SHUTDOWN; returns the exit status."""
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with asyncio.Runner(loop_factory=loop_factory("auto")) as runner:
        runner.run(_serve(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

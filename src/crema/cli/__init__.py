"""The ``crema`` command line (layer L3: argv, environment, exit codes).

``main(argv)`` is called directly by tests; only this package reads the
environment or decides exit codes. Each sub-command lives in its own module
and registers itself through a ``register(subparsers)`` function.

Exit codes: 0 success, 1 a checked thing failed (for example a corrupted
snapshot), 2 usage errors and missing paths.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from crema import __version__
from crema.cli import cluster, demo, serve, snapshot, wal

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="crema",
        description="crema: a strongly consistent distributed cache built on Raft.",
    )
    parser.add_argument("--version", action="version", version=f"crema {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo.register(commands)
    serve.register(commands)
    cluster.register(commands)
    snapshot.register(commands)
    wal.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``crema`` command with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    try:
        args, unknown = parser.parse_known_args(list(argv) if argv is not None else None)
        if unknown and getattr(args, "one_line_errors", False):
            print(f"crema {args.command}: error: unrecognized arguments: {' '.join(unknown)}",
                  file=sys.stderr)  # fmt: skip
            return EXIT_USAGE
        if unknown:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    logging.basicConfig(level=logging.WARNING, format="crema: %(levelname)s: %(message)s")
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK

"""``crema snapshot``: list, verify, inspect and dump MCRS snapshot files; create, restore.

``create`` asks a running node for a snapshot (:mod:`crema.cli.cluster`);
``restore`` seeds a new node's data directory (:mod:`crema.cli.snapshot_restore`).

Exit codes: 0 all good, 1 a file is corrupted, 2 usage errors and missing paths.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crema.checkpoint import SnapshotEntry, SnapshotInfo, SnapshotReader
from crema.checkpoint.manager import SNAPSHOT_SUFFIX, list_snapshots
from crema.checkpoint.stats import SnapshotStats, inspect_snapshot
from crema.cli.cluster import register_snapshot_create
from crema.cli.progress import ProgressBar, interactive
from crema.cli.snapshot_restore import register_restore
from crema.errors import SnapshotCorruptedError, SnapshotError

EXIT_OK, EXIT_CORRUPTED, EXIT_USAGE = 0, 1, 2


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``crema snapshot ...`` to the command line."""
    parser = commands.add_parser("snapshot", help="work with MCRS snapshot files")
    sub = parser.add_subparsers(dest="snapshot_command", metavar="SUBCOMMAND", required=True)

    p = sub.add_parser("list", help="list the snapshots in a checkpoint directory")
    p.add_argument("directory", type=Path)
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(handler=cmd_list)

    p = sub.add_parser("verify", help="check CRC and structure of snapshot files")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH_OR_DIR")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(handler=cmd_verify)

    p = sub.add_parser("inspect", help="metadata and statistics of one snapshot")
    p.add_argument("path", type=Path)
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(handler=cmd_inspect)

    p = sub.add_parser("dump", help="print every entry (expired ones included) as JSON lines")
    p.add_argument("path", type=Path)
    p.add_argument("--format", choices=["jsonl"], default="jsonl")
    p.set_defaults(handler=cmd_dump)

    register_snapshot_create(sub)
    register_restore(sub)


def _err(message: str) -> None:
    print(f"crema: {message}", file=sys.stderr)


def _iso(ms: int) -> str:
    """UTC time as ``2026-11-26 13:09:14.130``."""
    stamp = datetime.fromtimestamp(ms / 1000, UTC)
    return stamp.replace(tzinfo=None).isoformat(sep=" ", timespec="milliseconds")


def _human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


# -- list ---------------------------------------------------------------------


def _ratio(info: SnapshotInfo, bar: ProgressBar) -> float | None:
    """Uncompressed over stored size; None when the body cannot be decompressed."""
    try:
        with SnapshotReader.open(info.path) as reader:
            plain = reader.plain_body_size(bar) + 34
    except SnapshotError:
        return None
    return plain / info.size


def cmd_list(args: argparse.Namespace) -> int:
    """``crema snapshot list DIR``."""
    directory: Path = args.directory
    if not directory.is_dir():
        _err(f"{directory}: no such directory")
        return EXIT_USAGE
    try:
        infos = list_snapshots(directory)  # reads only: no manager, which would clean up
    except SnapshotError as exc:
        _err(str(exc))
        return EXIT_USAGE
    bar = ProgressBar("reading", enabled=interactive(args.json))
    rows = [_list_row(info, _ratio(info, bar)) for info in infos]
    bar.close()
    if args.json:
        print(json.dumps({"directory": str(directory), "snapshots": rows}, indent=2))
        return EXIT_OK
    if not rows:
        print(f"no snapshots in {directory}")
        return EXIT_OK
    header = f"{'INDEX':>10} {'TERM':>6}  {'CREATED (UTC)':<24} {'ENTRIES':>10} {'SIZE':>10} RATIO"
    print(header)
    for row in rows:
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.2f}x"
        print(
            f"{row['index']:>10} {row['term']:>6}  {row['created']:<24} "
            f"{row['entries']:>10} {_human(row['size']):>10} {ratio}  {Path(row['path']).name}"
        )
    return EXIT_OK


def _list_row(info: SnapshotInfo, ratio: float | None) -> dict[str, Any]:
    return {
        "path": str(info.path),
        "index": info.metadata.index,
        "term": info.metadata.term,
        "created": _iso(info.metadata.timestamp_ms),
        "entries": info.entry_count,
        "size": info.size,
        "compressed": info.compressed,
        "ratio": None if ratio is None else round(ratio, 3),
    }


# -- verify -------------------------------------------------------------------


def _expand(paths: list[Path]) -> Iterator[tuple[Path, bool]]:
    """(path, exists) for each file named or each ``*.snap`` in a named directory."""
    for path in paths:
        if path.is_dir():
            yield from ((p, True) for p in sorted(path.glob(f"*{SNAPSHOT_SUFFIX}")))
        else:
            yield path, path.is_file()


def _verify_one(path: Path, show_progress: bool) -> dict[str, Any]:
    bar = ProgressBar(f"verifying {path.name}", enabled=show_progress)
    try:
        with SnapshotReader.open(path) as reader:
            reader.verify(bar)
        return {"path": str(path), "status": "OK"}
    except SnapshotCorruptedError as exc:
        return {"path": str(path), "status": "CORRUPTED", "reason": exc.reason}
    except SnapshotError as exc:
        return {"path": str(path), "status": "ERROR", "reason": str(exc)}
    finally:
        bar.close()


def cmd_verify(args: argparse.Namespace) -> int:
    """``crema snapshot verify PATH_OR_DIR...``."""
    results: list[dict[str, Any]] = []
    for path, exists in _expand(args.paths):
        if not exists:
            results.append({"path": str(path), "status": "MISSING"})
            continue
        results.append(_verify_one(path, interactive(args.json)))
    statuses = {r["status"] for r in results}
    code = EXIT_OK
    if statuses & {"CORRUPTED"}:
        code = EXIT_CORRUPTED
    if statuses & {"MISSING", "ERROR"}:
        code = EXIT_USAGE
    if args.json:
        print(json.dumps({"ok": code == EXIT_OK, "results": results}, indent=2))
        return code
    for r in results:
        if r["status"] == "OK":
            print(f"{r['path']}: OK")
        elif r["status"] == "CORRUPTED":
            print(f"{r['path']}: CORRUPTED - {r['reason']}")
        elif r["status"] == "MISSING":
            _err(f"{r['path']}: no such file or directory")
        else:
            _err(r["reason"])
    return code


# -- inspect ------------------------------------------------------------------


def _open_error(exc: SnapshotError) -> int:
    if isinstance(exc, SnapshotCorruptedError):
        _err(f"{exc.path}: CORRUPTED - {exc.reason}")
        return EXIT_CORRUPTED
    _err(str(exc))
    return EXIT_USAGE


def cmd_inspect(args: argparse.Namespace) -> int:
    """``crema snapshot inspect PATH``."""
    bar = ProgressBar(f"reading {args.path.name}", enabled=interactive(args.json))
    try:
        stats = inspect_snapshot(args.path, datetime.now(UTC), bar)
    except SnapshotError as exc:
        return _open_error(exc)
    finally:
        bar.close()
    if args.json:
        print(json.dumps(stats.to_json(), indent=2))
    else:
        _print_stats(stats)
    return EXIT_OK


def _print_stats(s: SnapshotStats) -> None:
    rows = [
        ("path", str(s.path)),
        ("raft index", str(s.index)),
        ("raft term", str(s.term)),
        ("created", _iso(s.timestamp_ms) + " UTC"),
        ("compressed", "yes (LZ4)" if s.compressed else "no"),
        ("entries", f"{s.entry_count} ({s.live} live, {s.expired} expired, {s.with_ttl} with TTL)"),
        ("key bytes", f"min {s.keys.min}, max {s.keys.max}, mean {s.keys.mean:.1f}"),
        ("value bytes", f"min {s.values.min}, max {s.values.max}, mean {s.values.mean:.1f}"),
        ("stored size", f"{_human(s.stored_size)} ({s.stored_size} bytes)"),
        ("uncompressed", f"{_human(s.plain_size + 34)} ({s.plain_size + 34} bytes)"),
        ("ratio", f"{s.ratio:.2f}x"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


# -- dump ---------------------------------------------------------------------


def _field(data: bytes) -> tuple[str, str]:
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), "base64"


def entry_to_json(entry: SnapshotEntry) -> dict[str, Any]:
    """One dumped entry: key and value as UTF-8 when valid, else base64."""
    key, key_encoding = _field(entry.key)
    value, value_encoding = _field(entry.value)
    return {
        "key": key,
        "key_encoding": key_encoding,
        "value": value,
        "value_encoding": value_encoding,
        "expiry_ms": entry.expiry_ms,
    }


def cmd_dump(args: argparse.Namespace) -> int:
    """``crema snapshot dump PATH``: one JSON object per line."""
    bar = ProgressBar(f"dumping {args.path.name}", enabled=interactive())
    out = sys.stdout
    try:
        with SnapshotReader.open(args.path) as reader:
            for entry in reader.entries(bar):
                out.write(json.dumps(entry_to_json(entry), ensure_ascii=False) + "\n")
    except SnapshotError as exc:
        out.flush()
        return _open_error(exc)
    finally:
        bar.close()
    return EXIT_OK


# -- direct calls (used by the demo) ----------------------------------------------


def main_list(directory: Path) -> int:
    """``crema snapshot list DIRECTORY``."""
    return cmd_list(argparse.Namespace(directory=directory, json=False))


def main_verify(paths: list[Path]) -> int:
    """``crema snapshot verify PATH...``."""
    return cmd_verify(argparse.Namespace(paths=paths, json=False))


def main_inspect(path: Path) -> int:
    """``crema snapshot inspect PATH``."""
    return cmd_inspect(argparse.Namespace(path=path, json=False))

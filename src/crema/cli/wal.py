"""``crema wal inspect DIR`` and ``crema wal verify DIR``: look at a Raft WAL offline.

Both only read (they neither take the directory lock nor truncate a torn
tail), so they are safe on a copy and tolerable on a live node, which may
show a record being written as a torn tail.

* ``inspect`` prints the segments, first/last index, snapshot, hard state
  and membership, and the first damage found.
* ``verify`` checks every record's CRC and decodes every entry.

Exit codes: 0 the log is sound (a torn tail, which the next open truncates,
is reported but counts as sound), 1 corruption found, 2 usage errors and
missing paths.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from crema.storage.recovery import ScanResult, scan_wal

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``wal`` command and its sub-commands to the ``crema`` parser."""
    wal = subparsers.add_parser("wal", help="inspect or verify a Raft write-ahead log")
    actions = wal.add_subparsers(dest="wal_command", metavar="ACTION", required=True)
    for name, handler, text in (
        ("inspect", _inspect, "show segments, index range, hard state and damage"),
        ("verify", _verify, "check every record's CRC and decode every entry"),
    ):
        action = actions.add_parser(name, help=text, description=text)
        action.add_argument("directory", type=Path, metavar="DIR", help="the WAL directory")
        action.add_argument("--json", action="store_true", help="print JSON")
        action.set_defaults(handler=handler)


def _summary(result: ScanResult) -> dict[str, Any]:
    state = result.state
    hs = state.hard_state
    snap = state.snapshot
    damage = result.damage
    return {
        "ok": damage is None or damage.torn,
        "first_index": state.index.compact_index + 1,
        "last_index": state.index.hi,
        "compaction": {"index": state.index.compact_index, "term": state.index.compact_term},
        "snapshot": {"index": snap.index, "term": snap.term},
        "hard_state": {"term": hs.term, "vote": hs.vote, "commit": hs.commit},
        "conf_state": {
            "voters": sorted(state.conf_state.voters),
            "learners": sorted(state.conf_state.learners),
        },
        "segments": [
            {
                "file": seg.path.name,
                "seq": seg.seq,
                "size": seg.size,
                "records": seg.records,
                "valid_end": seg.valid_end,
            }
            for seg in result.segments
        ],
        "superseded_segments": [path.name for path in result.superseded],
        "torn_tail": _damage(result) if damage is not None and damage.torn else None,
        "corruption": _damage(result) if damage is not None and not damage.torn else None,
    }


def _damage(result: ScanResult) -> dict[str, Any]:
    damage = result.damage
    assert damage is not None
    return {
        "path": str(damage.path),
        "offset": damage.offset,
        "reason": damage.reason,
        "unscanned_segments": [seg.path.name for seg in result.unscanned],
    }


def _scan(args: argparse.Namespace, *, deep: bool) -> tuple[ScanResult, dict[str, Any]] | None:
    directory: Path = args.directory
    if not directory.is_dir():
        print(f"crema wal: {directory}: no such directory", file=sys.stderr)
        return None
    result = scan_wal(directory, deep=deep)
    return result, _summary(result)


def _print_damage(summary: dict[str, Any]) -> None:
    if summary["superseded_segments"]:
        names = ", ".join(summary["superseded_segments"])
        print(f"superseded (removed on next open): {names}")
    if summary["torn_tail"]:
        t = summary["torn_tail"]
        print(f"torn tail: {t['path']} at offset {t['offset']}: {t['reason']}")
        print("  (a crash artifact; the next open truncates it)")
    if summary["corruption"]:
        c = summary["corruption"]
        print(f"CORRUPT: {c['path']} at offset {c['offset']}: {c['reason']}")
        if c["unscanned_segments"]:
            print(f"  not scanned: {', '.join(c['unscanned_segments'])}")


def _inspect(args: argparse.Namespace) -> int:
    scanned = _scan(args, deep=False)
    if scanned is None:
        return EXIT_USAGE
    _, summary = scanned
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        hs, snap, comp = summary["hard_state"], summary["snapshot"], summary["compaction"]
        conf = summary["conf_state"]
        print(f"directory:   {args.directory}")
        print(f"entries:     {summary['first_index']}..{summary['last_index']}")
        print(f"compaction:  index {comp['index']} term {comp['term']}")
        print(f"snapshot:    index {snap['index']} term {snap['term']}")
        print(f"hard state:  term {hs['term']} vote {hs['vote']} commit {hs['commit']}")
        print(f"membership:  voters {conf['voters']} learners {conf['learners']}")
        print(f"segments:    {len(summary['segments'])}")
        for seg in summary["segments"]:
            print(f"  {seg['file']}  {seg['size']:>10} bytes  {seg['records']:>8} records")
        _print_damage(summary)
    return EXIT_OK if summary["ok"] else EXIT_FAILED


def _verify(args: argparse.Namespace) -> int:
    scanned = _scan(args, deep=True)
    if scanned is None:
        return EXIT_USAGE
    _, summary = scanned
    records = sum(seg["records"] for seg in summary["segments"])
    if args.json:
        keys = ("ok", "first_index", "last_index", "torn_tail", "corruption")
        out = {key: summary[key] for key in keys}
        out["segments"] = len(summary["segments"])
        out["records"] = records
        print(json.dumps(out, indent=2))
    else:
        _print_damage(summary)
        if summary["ok"]:
            print(
                f"OK: {len(summary['segments'])} segments, {records} records, "
                f"entries {summary['first_index']}..{summary['last_index']}"
            )
    return EXIT_OK if summary["ok"] else EXIT_FAILED

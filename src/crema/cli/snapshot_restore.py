"""``crema snapshot restore``: seed a new node's data directory from a snapshot file.

Disaster recovery from a backup, like ``etcdutl snapshot restore``: run it
once per member of the new cluster, each time with the same FILE and
``--peers`` and that member's ``--node-id`` and ``--data-dir``. Each data
directory gets the (verified) snapshot file in ``checkpoints/`` and a Raft
log compacted up to the snapshot's index, whose membership is the voters of
``--peers``. Started with ``crema serve`` and the same ``--peers``, the
nodes recover from the snapshot and elect a leader. An existing, non-empty
data directory is never touched.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from crema.checkpoint import SnapshotReader
from crema.checkpoint.manager import snapshot_name
from crema.cli.serve_config import SettingError, parse_peers
from crema.errors import SnapshotCorruptedError, SnapshotError, StorageError
from crema.raft.types import ConfState, HardState, Index, NodeId, SnapshotMeta, Term
from crema.storage import DiskStorage

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def register_restore(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``crema snapshot restore`` to the ``snapshot`` sub-commands."""
    p = sub.add_parser(
        "restore",
        help="seed a new node's data directory from a snapshot file (disaster recovery)",
        description="Seed DATA_DIR for node N of a new cluster from FILE. Run once per member "
        "with the same FILE and --peers, then start each with crema serve and the same --peers.",
    )
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument("--data-dir", type=Path, required=True, help="the new node's data directory")
    p.add_argument("--node-id", type=int, required=True, help="the new node's id")
    p.add_argument("--peers", required=True,
                   help="every voter of the new cluster as ID=HOST:PORT,...")  # fmt: skip
    p.set_defaults(handler=cmd_restore)


def _fail(code: int, message: str) -> int:
    print(f"crema snapshot restore: error: {message}", file=sys.stderr)
    return code


def cmd_restore(args: argparse.Namespace) -> int:  # noqa: PLR0911
    """Verify FILE, write the compacted log and copy the snapshot into DATA_DIR."""
    try:
        peers = dict(parse_peers(args.peers))
    except ValueError as exc:
        return _fail(EXIT_USAGE, f"--peers: {exc}")
    except SettingError as exc:
        return _fail(EXIT_USAGE, str(exc))
    if args.node_id not in peers:
        return _fail(EXIT_USAGE, f"--node-id: {args.node_id} is not in --peers")
    data_dir: Path = args.data_dir
    if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        return _fail(EXIT_USAGE, f"--data-dir: {data_dir} exists and is not empty; refusing")
    if not args.file.is_file():
        return _fail(EXIT_USAGE, f"{args.file}: no such file")
    try:
        with SnapshotReader.open(args.file) as reader:
            reader.verify()
            info = reader.info()
    except SnapshotCorruptedError as exc:
        return _fail(EXIT_FAILED, f"{args.file} is corrupted: {exc.reason}")
    except SnapshotError as exc:
        return _fail(EXIT_FAILED, str(exc))
    index, term = info.metadata.index, info.metadata.term
    if index < 1:
        return _fail(EXIT_FAILED, f"{args.file} is at index 0: nothing to restore")
    voters = ConfState(frozenset(NodeId(i) for i in peers))
    try:
        checkpoints = data_dir / "checkpoints"
        checkpoints.mkdir(parents=True)
        shutil.copyfile(args.file, checkpoints / snapshot_name(index, term))
        storage = DiskStorage.open(data_dir / "wal", fsync="always")
        try:
            storage.apply_snapshot(SnapshotMeta(Index(index), Term(term), voters))
            storage.set_hard_state(HardState(Term(term), None, Index(index)))
            storage.set_conf_state(voters)
            storage.sync()
        finally:
            storage.close()
    except (OSError, StorageError) as exc:
        return _fail(EXIT_FAILED, f"cannot write {data_dir}: {exc}")
    print(f"node {args.node_id}: {data_dir} seeded from {args.file.name} (index {index}, "
          f"term {term}, {info.entry_count} entries); voters {sorted(peers)}")  # fmt: skip
    print(f"start it with: crema serve --node-id {args.node_id} --data-dir {data_dir} "
          f"--peers {args.peers}")  # fmt: skip
    return EXIT_OK

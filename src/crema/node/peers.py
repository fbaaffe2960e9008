"""Addresses of peers added after the seeds, kept across restarts (layer L2).

Membership changes carry the new node's address in the log, but the log is
compacted and a snapshot file has no room for addresses; so each node also
records the addresses it learned in ``data_dir/peers.json`` (written to a
temporary file, fsynced, renamed).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

log = logging.getLogger("crema.node")

PEERS_FILE = "peers.json"


def load_peers(data_dir: Path) -> dict[int, str]:
    """The learned addresses, id -> ``"host:port"`` (empty when none or unreadable)."""
    path = data_dir / PEERS_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable %s: %s", path, exc)
        return {}
    if not isinstance(raw, dict):
        return {}
    return {int(k): str(v) for k, v in raw.items() if str(k).isdigit()}


def save_peers(data_dir: Path, peers: dict[int, str]) -> None:
    """Replace the learned addresses atomically."""
    path = data_dir / PEERS_FILE
    tmp = path.with_name(PEERS_FILE + ".tmp")
    data = json.dumps({str(k): v for k, v in sorted(peers.items())}).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)

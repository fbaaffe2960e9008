"""The state machine with the real checkpoint manager: snapshot, restore, compare."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from crema.cache import CacheStateMachine
from crema.cache.commands import Command, Set
from crema.checkpoint.format import SnapshotMetadata
from crema.checkpoint.manager import CheckpointManager, RestoreTarget
from crema.config import CheckpointConfig

from .strategies import commands

T = 1_000_000
KEYS = st.sampled_from([b"a", b"b", b"c", b"d", b"e", b"\x00", b""])
STAMP = datetime(2026, 11, 26, tzinfo=UTC)


def _snapshot(sm: CacheStateMachine, directory: Path) -> Path:
    view = sm.entries_view()
    manager = CheckpointManager(CheckpointConfig(directory, compression=False))
    info = manager.create_snapshot(SnapshotMetadata(view.index, view.term, STAMP), view)
    return info.path


def test_state_machine_is_a_restore_target() -> None:
    target: RestoreTarget = CacheStateMachine()  # checked by mypy
    assert callable(target.restore_entries)


@settings(max_examples=25, deadline=None)
@given(st.lists(commands(KEYS, st.integers(T, T + 300)), min_size=1, max_size=40))
def test_snapshot_files_identical_and_restorable(cmds: list[Command]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _check_snapshots(cmds, Path(tmp))


def _check_snapshots(cmds: list[Command], run: Path) -> None:
    one, two = CacheStateMachine(3), CacheStateMachine(3)
    for i, command in enumerate(cmds, start=1):
        one.apply(i, 1, command)
        two.apply(i, 1, command)
    path_one = _snapshot(one, run / "one")
    path_two = _snapshot(two, run / "two")
    assert path_one.read_bytes() == path_two.read_bytes()

    # Restore at the log's clock: nothing the log still sees is skipped, so the
    # restored replica continues exactly like the original.
    restored = CacheStateMachine(3)
    manager = CheckpointManager(CheckpointConfig(run / "one"))
    info = manager.restore_from(path_one, target=restored, now=one.clock_ms)
    restored.set_applied(info.metadata.index, info.metadata.term, one.clock_ms)
    live = [e for e in one.entries_view() if e[2] is None or e[2] > one.clock_ms]
    assert list(restored.entries_view()) == live
    after = Set(b"a", b"next", one.clock_ms, expiry_ms=one.clock_ms + 5)
    assert restored.apply(len(cmds) + 1, 1, after) == one.apply(len(cmds) + 1, 1, after)
    assert restored.get(b"a", one.clock_ms) == one.get(b"a", one.clock_ms)


def test_restore_skips_expired_and_keeps_absolute_expiry(tmp_path: Path) -> None:
    sm = CacheStateMachine()
    sm.apply(1, 1, Set(b"short", b"1", T, expiry_ms=T + 10))
    sm.apply(2, 1, Set(b"long", b"2", T, expiry_ms=T + 10_000))
    sm.apply(3, 1, Set(b"forever", b"3", T))
    path = _snapshot(sm, tmp_path)
    restored = CacheStateMachine()
    CheckpointManager(CheckpointConfig(tmp_path)).restore_from(path, restored, now=T + 50)
    assert list(restored.entries_view()) == [(b"long", b"2", T + 10_000), (b"forever", b"3", None)]
    assert restored.ttl_ms(b"long", T + 1000) == 9000

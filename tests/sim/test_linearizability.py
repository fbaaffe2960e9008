"""The linearizability checker on hand-made histories."""

from __future__ import annotations

import math

from tests.sim.linearizability import Operation, check_history


def op(client: int, kind: str, value: str | None, call: float, ret: float) -> Operation:
    return Operation(client, kind, "k", value, call, ret)


def test_sequential_history_is_linearizable() -> None:
    ops = [op(1, "put", "a", 0, 1), op(1, "get", "a", 2, 3), op(1, "delete", None, 4, 5)]
    ops.append(op(1, "get", None, 6, 7))
    assert check_history(ops).ok


def test_stale_read_after_acknowledged_write_is_not() -> None:
    ops = [op(1, "put", "a", 0, 1), op(1, "put", "b", 2, 3), op(2, "get", "a", 4, 5)]
    result = check_history(ops)
    assert result.ok is False
    assert "NOT linearizable" in result.explain()


def test_concurrent_write_may_be_seen_either_way() -> None:
    ops = [op(1, "put", "a", 0, 1), op(2, "put", "b", 2, 10), op(3, "get", "a", 3, 4)]
    ops.append(op(3, "get", "b", 5, 6))
    assert check_history(ops).ok


def test_reads_must_not_go_back_in_time() -> None:
    ops = [op(1, "put", "a", 0, 1), op(2, "put", "b", 2, 10), op(3, "get", "b", 3, 4)]
    ops.append(op(3, "get", "a", 5, 6))
    assert check_history(ops).ok is False


def test_unknown_write_may_or_may_not_take_effect() -> None:
    ops = [op(1, "put", "a", 0, 1), op(2, "put", "b", 2, math.inf), op(3, "get", "a", 3, 4)]
    assert check_history(ops).ok
    ops.append(op(3, "get", "b", 5, 6))
    assert check_history(ops).ok
    ops.append(op(3, "get", "a", 7, 8))
    assert check_history(ops).ok is False


def test_keys_are_independent() -> None:
    ops = [
        Operation(1, "put", "x", "1", 0, 1),
        Operation(2, "put", "y", "2", 0, 1),
        Operation(3, "get", "x", "1", 2, 3),
        Operation(3, "get", "y", None, 2, 3),
    ]
    result = check_history(ops)
    assert result.ok is False
    assert result.bad_key == "y"

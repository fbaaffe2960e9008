"""Linearizability checker for key-value histories (Wing & Gong search, porcupine style).

Usage::

    from tests.sim.linearizability import Operation, check_history

    ops = [
        Operation(client=1, kind="put", key="a", value="v1", call=0.0, ret=2.0),
        Operation(client=2, kind="get", key="a", value="v1", call=1.0, ret=3.0),
        Operation(client=3, kind="put", key="a", value="v2", call=4.0, ret=math.inf),
    ]
    result = check_history(ops)
    assert result.ok, result.explain()

The model is a map from key to value with three operations: ``put`` (sets
``value``), ``delete`` (removes the key) and ``get`` (observes ``value``,
None when absent). Each operation has a call time and a return time from the
same clock (any real numbers; only their order matters). An operation whose
outcome is unknown (a write whose client timed out or whose node crashed)
has ``ret=math.inf``: it may take effect at any point after its call, or never.
Reads without a response should simply be left out.

Operations on different keys commute, so the history is split per key
(P-compositionality) and each key is searched separately: depth-first over
the calls that are minimal in the remaining history, memoising (set of
linearized operations, model state) pairs already explored (Lowe's
improvement of Wing & Gong, as in porcupine). Equal call and return times
are treated as concurrent.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Operation:
    """One client operation on one key.

    Attributes:
        client: who issued it (only used in reports).
        kind: ``"put"``, ``"delete"`` or ``"get"``.
        key: the key.
        value: the value written (put) or observed (get; None = absent); None for delete.
        call: when the client invoked it.
        ret: when the client saw the response; ``math.inf`` when unknown.
    """

    client: int
    kind: str
    key: str
    value: str | None
    call: float
    ret: float = math.inf

    def __post_init__(self) -> None:
        if self.kind not in ("put", "delete", "get"):
            raise ValueError(f"unknown operation kind {self.kind!r}")
        if self.ret < self.call:
            raise ValueError(f"operation returns ({self.ret}) before its call ({self.call})")


@dataclass(slots=True)
class CheckResult:
    """Outcome of :func:`check_history`.

    Attributes:
        ok: True when linearizable, False when not, None when the search
            budget ran out for some key (inconclusive).
        bad_key: the first key whose sub-history is not linearizable.
        bad_ops: that key's operations, sorted by call time, for the report.
    """

    ok: bool | None
    bad_key: str | None = None
    bad_ops: list[Operation] = field(default_factory=list)

    def explain(self) -> str:
        """A human-readable account of the failure."""
        if self.ok:
            return "linearizable"
        head = "inconclusive (search budget exhausted)" if self.ok is None else "NOT linearizable"
        lines = [f"{head}: key {self.bad_key!r}"]
        for op in self.bad_ops:
            ret = "?" if math.isinf(op.ret) else f"{op.ret:g}"
            lines.append(f"  client {op.client}: {op.kind}({op.value!r}) [{op.call:g}, {ret}]")
        return "\n".join(lines)


def _step(state: str | None, op: Operation) -> tuple[bool, str | None]:
    if op.kind == "put":
        return True, op.value
    if op.kind == "delete":
        return True, None
    return op.value == state, state


class _Event:
    __slots__ = ("match", "next", "op", "prev")

    def __init__(self, op: int) -> None:
        self.op = op
        self.match: _Event | None = None  # call -> its return; None on returns
        self.prev: _Event | None = None
        self.next: _Event | None = None


def _build_list(ops: list[Operation]) -> _Event:
    raw = []
    for i, op in enumerate(ops):
        raw.append((op.call, 0, i))
        raw.append((op.ret, 1, i))
    raw.sort(key=lambda t: (t[0], -t[1]))  # at equal times, returns first: concurrent
    head = _Event(-1)
    calls: dict[int, _Event] = {}
    prev = head
    for _, is_return, i in raw:
        event = _Event(i)
        if is_return:
            calls[i].match = event
        else:
            calls[i] = event
        event.prev, prev.next = prev, event
        prev = event
    return head


def _lift(call: _Event) -> None:
    ret = call.match
    assert ret is not None and call.prev is not None and ret.prev is not None
    call.prev.next = call.next
    if call.next is not None:
        call.next.prev = call.prev
    ret.prev.next = ret.next
    if ret.next is not None:
        ret.next.prev = ret.prev


def _unlift(call: _Event) -> None:
    ret = call.match
    assert ret is not None and call.prev is not None and ret.prev is not None
    ret.prev.next = ret
    if ret.next is not None:
        ret.next.prev = ret
    call.prev.next = call
    if call.next is not None:
        call.next.prev = call


def check_key(ops: list[Operation], budget: int = 2_000_000) -> bool | None:
    """Whether one key's operations are linearizable (None when ``budget`` steps ran out)."""
    head = _build_list(ops)
    state: str | None = None
    linearized = 0
    seen: set[tuple[int, str | None]] = set()
    stack: list[tuple[_Event, str | None]] = []
    entry = head.next
    steps = 0
    while head.next is not None:
        steps += 1
        if steps > budget:
            return None
        assert entry is not None
        if entry.match is not None:  # a call: try to linearize it here
            ok, new_state = _step(state, ops[entry.op])
            if ok:
                new_linearized = linearized | (1 << entry.op)
                if (new_linearized, new_state) not in seen:
                    seen.add((new_linearized, new_state))
                    stack.append((entry, state))
                    state, linearized = new_state, new_linearized
                    _lift(entry)
                    entry = head.next
                    continue
            entry = entry.next
        else:  # a return reached before its call was linearized: backtrack
            if not stack:
                return False
            entry, state = stack.pop()
            linearized &= ~(1 << entry.op)
            _unlift(entry)
            entry = entry.next
    return True


def check_history(ops: list[Operation], budget: int = 2_000_000) -> CheckResult:
    """Check a whole key-value history; see the module docstring."""
    by_key: dict[str, list[Operation]] = defaultdict(list)
    for op in ops:
        by_key[op.key].append(op)
    inconclusive: str | None = None
    for key in sorted(by_key):
        key_ops = sorted(by_key[key], key=lambda o: (o.call, o.ret))
        verdict = check_key(key_ops, budget)
        if verdict is False:
            return CheckResult(False, key, key_ops)
        if verdict is None and inconclusive is None:
            inconclusive = key
    if inconclusive is not None:
        return CheckResult(None, inconclusive, sorted(by_key[inconclusive], key=lambda o: o.call))
    return CheckResult(True)

"""Asynchronous storage writes: a node's Ready becomes durable some steps later.

With ``SimParams.async_writes`` the simulated runtime does not wait for its
fsync. For each Ready it sends the early messages (a leader's appends and
heartbeats), queues the Ready's new entries and hard state as a write that
becomes durable 1 to ``write_delay`` steps later (writes complete in order),
and goes on ticking, stepping messages and taking new Readys meanwhile. The
Ready's other messages (votes, append responses, ...) wait for its write. The
persistence acknowledgement to the core, ``advance`` of the written entries
(which lets a leader count its own replica), comes only when the write
completes; committed entries are applied only once they are durable locally
(as etcd raft does with asynchronous storage writes). A crash loses every
write not yet complete, and a write with entries or a new term or vote may
crash its node instead of completing.

This is the regime where a leader that counts its own entries before they
are durable (the ``count-own-before-durable`` testing bug) commits an entry
that only a minority holds durably: the leader's early appends carry the
commit index to a follower, which applies the entry, and then the leader's
crash loses its copy.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from crema.raft.messages import Message
from crema.raft.rawnode import Ready
from crema.raft.types import Entry, HardState

if TYPE_CHECKING:
    from tests.sim.node import KV, SimNode
    from tests.sim.simulator import Simulation


@dataclass
class PendingWrite:
    """One Ready's storage work, durable at step ``due``, and the messages that wait for it."""

    due: int
    entries: list[Entry]
    hard_state: HardState | None
    messages: list[tuple[Message, KV | None]]
    sync: bool


def fresh_entries(node: SimNode, entries: list[Entry]) -> list[Entry]:
    """The suffix of ``entries`` not already queued (the core hands out unstable entries again)."""
    queued = node.queued
    for pos, entry in enumerate(entries):
        if queued.get(entry.index) != entry.term:
            fresh = entries[pos:]
            for index in [i for i in queued if i >= fresh[0].index]:
                del queued[index]  # an append replaces the entries at and after its first
            for e in fresh:
                queued[e.index] = e.term
            return fresh
    return []


def _needs_sync(node: SimNode, fresh: list[Entry], hard: HardState | None) -> bool:
    prev = node.queued_hard
    if hard is not None:
        node.queued_hard = hard
    return bool(fresh) or (hard is not None and (hard.term, hard.vote) != (prev.term, prev.vote))


def handle_ready(sim: Simulation, node: SimNode, hold_commit: bool) -> None:
    """Take a Ready without waiting for its write; see the module docstring."""
    rd = node.raw.ready(hold_commit)
    if rd.snapshot is not None:
        # Installing a snapshot replaces the log: the earlier writes finish first.
        complete(sim, node, force=True)
        node.queued.clear()
        if rd.hard_state is not None:
            node.queued_hard = rd.hard_state
        sim.finish_ready(node, rd)
        return
    outgoing = node.outgoing(rd)
    early = rd.early_messages
    for m, payload in outgoing[:early]:
        sim.send(m, payload)  # a leader's appends go before its fsync (§10.2.1)
    fresh = fresh_entries(node, rd.entries)
    sync = _needs_sync(node, fresh, rd.hard_state)
    delays = sim.p.write_delays
    due = sim.now + (sim.rng.randint(1, delays[node.id % len(delays)]) if sync else 0)
    if node.writes:
        due = max(due, node.writes[-1].due)
    if fresh or rd.hard_state is not None or len(outgoing) > early:
        node.writes.append(PendingWrite(due, fresh, rd.hard_state, outgoing[early:], sync))
    if rd.soft_state is not None:
        sim.on_soft_state(node)
    stable = node.raw.raft.log.unstable_offset
    applicable = [e for e in rd.committed_entries if e.index < stable]
    sim.apply_committed(node, applicable, rd.read_states)
    # Everything but the persistence acknowledgement, which waits for the write.
    node.raw.advance(replace(rd, entries=[], committed_entries=applicable))
    sim.after_apply(node)


def complete(sim: Simulation, node: SimNode, force: bool = False) -> None:
    """Make the writes that are due (all with ``force``) durable, in order; maybe crash first."""
    odds = sim.p.crash_rate * sim.p.mid_ready_crash * 20
    while node.writes and (force or node.writes[0].due <= sim.now):
        write = node.writes.pop(0)
        if not force and sim.faults and write.sync and sim.rng.random() < odds:
            sim.crash(node.id, sim.rng.randint(20, 200))  # loses this write and later ones
            return
        storage = node.disk.storage
        if write.entries:
            storage.append(write.entries)
        if write.hard_state is not None:
            storage.set_hard_state(write.hard_state)
        storage.sync()
        for m, payload in write.messages:
            sim.send(m, payload)
        if write.entries:
            node.raw.advance(Ready(entries=write.entries))  # persisted: the core may count them

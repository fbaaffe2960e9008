"""Deterministic simulation of a Raft cluster: seeded faults, virtual time, invariant checks.

One run (:func:`run_seed`) derives everything from its seed: the cluster
size, the fault mix (drops, duplicates, delays that reorder, symmetric and
asymmetric partitions, crashes that lose unpersisted state, crashes in the
middle of handling a Ready, including a leader's crash after it sent appends
and before it persisted them), membership changes, leadership transfers,
snapshots with log compaction, and client puts/deletes/gets (gets through
ReadIndex, on leaders and followers). After every step it checks election
safety, state machine safety and leader completeness, periodically log
matching; at the end it heals everything and checks that the cluster
converges, that every acknowledged write is applied on every member, and
that the client history is linearizable. Any violation raises
:class:`SimFailure` naming the seed and the command that replays it.
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass, field

from crema.errors import ProposalDroppedError, RaftError
from crema.raft.confchange import ConfChange, ConfChangeType
from crema.raft.core import Role
from crema.raft.memory_storage import MemoryStorage
from crema.raft.messages import Message, MessageType
from crema.raft.rawnode import Ready, bootstrap
from crema.raft.read_only import ReadState
from crema.raft.types import Entry, EntryType, NodeId
from tests.sim import checks, writes
from tests.sim.linearizability import Operation, check_history
from tests.sim.node import KV, Disk, SimNode, decode_command, encode_command
from tests.sim.params import SimParams

KEYS = ("a", "b", "c")
SPARE_NODES = 3


class SimFailure(AssertionError):  # noqa: N818 - reads well in reports
    """An invariant broke; the message names the seed and how to replay it."""

    def __init__(self, params: SimParams, step: int, message: str) -> None:
        bug = f" --bug {params.testing_bug}" if params.testing_bug else ""
        if params.async_override is not None:
            bug += f" --async-writes {'on' if params.async_override else 'off'}"
        super().__init__(
            f"simulation seed {params.seed} failed at step {step}: {message}\n"
            f"replay: .venv/bin/python -m tests.sim.run --seed {params.seed}{bug} -v"
        )
        self.seed = params.seed
        self.step = step


@dataclass
class OpRecord:
    """A client operation as it unfolds."""

    client: int
    kind: str
    key: str
    value: str | None
    call: int
    ret: float = math.inf
    status: str = "pending"  # pending, ok, failed


@dataclass
class Client:
    """A client running one operation at a time."""

    id: int
    op: int | None = None
    started: int = 0
    seq: int = 0
    target: int | None = None


@dataclass
class Stats:
    """What happened in a run, for reports."""

    steps: int = 0
    messages: int = 0
    elections: int = 0
    crashes: int = 0
    conf_changes: int = 0
    transfers: int = 0
    snapshots_sent: int = 0
    ops_ok: int = 0
    ops_unknown: int = 0
    reads_ok: int = 0
    log: list[str] = field(default_factory=list)


class Simulation:
    """One seeded run; see the module docstring."""

    def __init__(self, params: SimParams, verbose: bool = False) -> None:
        self.p = params
        self.rng = random.Random(params.seed)
        self.verbose = verbose
        self.now = 0
        self.disks: dict[int, Disk] = {}
        self.nodes: dict[int, SimNode] = {}  # alive nodes
        self.down_until: dict[int, int] = {}
        self.net: list[tuple[int, int, Message, KV | None]] = []
        self.seq = 0
        self.cut: set[tuple[int, int]] = set()
        self.ops: dict[int, OpRecord] = {}
        self.clients = [Client(i) for i in range(params.clients)]
        self.state = checks.GlobalState()
        self.stats = Stats()
        self.faults = True
        self.next_id = params.nodes + 1
        voters = [NodeId(i) for i in range(1, params.nodes + 1)]
        for i in voters:
            storage = MemoryStorage()
            bootstrap(storage, voters)
            self.disks[i] = Disk(storage)
            self._start(i)

    # -- plumbing -------------------------------------------------------------

    def fail(self, message: str) -> SimFailure:
        """The exception to raise for a violated invariant."""
        return SimFailure(self.p, self.now, message)

    def trace(self, text: str) -> None:
        """Record (and with ``verbose`` print) a notable event."""
        line = f"[{self.now:6d}] {text}"
        self.stats.log.append(line)
        if self.verbose:
            print(line)

    def _start(self, node_id: int) -> None:
        rng = random.Random(self.rng.getrandbits(32))
        self.nodes[node_id] = SimNode(node_id, self.disks[node_id], self.p, rng)

    def crash(self, node_id: int, downtime: int) -> None:
        """Stop a node; everything not on its disk is lost."""
        node = self.nodes.pop(node_id)
        self.down_until[node_id] = self.now + downtime
        self.stats.crashes += 1
        self.trace(f"crash {node_id} (role {node.raw.raft.role.value}, term {node.raw.raft.term})")

    def send(self, m: Message, payload: KV | None) -> None:
        """Put a message on the simulated network (maybe dropped or duplicated)."""
        self.stats.messages += 1
        if self.faults and self.rng.random() < self.p.drop:
            if m.type is MessageType.SNAP:
                self._report_snapshot(m, success=False)
            return
        copies = 2 if self.faults and self.rng.random() < self.p.duplicate else 1
        for _ in range(copies):
            delay = self.rng.randint(1, self.p.max_delay)
            self.seq += 1
            heapq.heappush(self.net, (self.now + delay, self.seq, m, payload))

    def _report_snapshot(self, m: Message, success: bool) -> None:
        sender = self.nodes.get(m.frm)
        if sender is not None:
            sender.raw.report_snapshot(m.to, success)

    def deliver_due(self) -> None:
        """Deliver every message whose time has come (unless cut or the target is down)."""
        while self.net and self.net[0][0] <= self.now:
            _, _, m, payload = heapq.heappop(self.net)
            node = self.nodes.get(m.to)
            ok = node is not None and (m.frm, m.to) not in self.cut
            if m.type is MessageType.SNAP:
                self._report_snapshot(m, success=ok)
            if node is None or not ok:
                continue
            if payload is not None and m.snapshot is not None:
                node.incoming_snapshots[m.snapshot.index] = payload
                self.stats.snapshots_sent += 1
            node.raw.step(m)

    def handle_ready(self, node: SimNode, hold_commit: bool = False) -> None:
        """Persist, send, apply, advance; possibly crash in the middle."""
        self.finish_ready(node, node.raw.ready(hold_commit))

    def finish_ready(self, node: SimNode, rd: Ready) -> None:
        """Handle ``rd`` synchronously: its write is durable before anything else."""
        outgoing = node.outgoing(rd)
        early = rd.early_messages
        for m, payload in outgoing[:early]:
            self.send(m, payload)  # a leader's appends go before its fsync (§10.2.1)
        odds = self.p.crash_rate * self.p.mid_ready_crash * 20
        if self.faults and rd.must_sync and self.rng.random() < odds:
            # Crash after sending the early messages: before persisting anything,
            # or persisted but before sending the rest or applying.
            if self.rng.random() < 0.5:
                node.persist(rd)
            self.crash(node.id, self.rng.randint(20, 200))
            return
        node.persist(rd)
        if rd.soft_state is not None:
            self.on_soft_state(node)
        for m, payload in outgoing[early:]:
            self.send(m, payload)
        self.apply_committed(node, rd.committed_entries, rd.read_states)
        node.raw.advance(rd)
        self.after_apply(node)

    def apply_committed(
        self, node: SimNode, committed: list[Entry], read_states: list[ReadState]
    ) -> None:
        """Step 3 of a Ready: apply, check and resolve writes; queue the reads."""
        for entry in committed:
            node.apply(entry)
            checks.on_apply(self, node, entry)
            self._resolve_write(node, entry.index, entry.term, entry.type, entry.data)
        for rs in read_states:
            op_id = node.pending_reads.pop(rs.context, None)
            if op_id is not None:
                node.waiting_reads.append((rs.index, op_id))

    def after_apply(self, node: SimNode) -> None:
        """After ``advance``: serve the reads now applied, maybe take a snapshot."""
        self._serve_reads(node)
        node.maybe_snapshot()

    def on_soft_state(self, node: SimNode) -> None:
        """Count elections and check election safety and leader completeness."""
        raft = node.raw.raft
        if raft.role is Role.LEADER and node.role is not Role.LEADER:
            self.stats.elections += 1
            self.trace(f"node {node.id} leads term {raft.term}")
            checks.on_leader(self, node)
        node.role = raft.role

    def _resolve_write(
        self, node: SimNode, index: int, term: int, kind: EntryType, data: bytes
    ) -> None:
        if kind is EntryType.NORMAL and data:
            op_id = decode_command(data)[0]
            self.state.applied_ops.add(op_id)
            op = self.ops[op_id]
            if op.status == "pending":
                op.status, op.ret = "ok", self.now
            elif op.status == "failed":
                raise self.fail(f"op {op_id} applied after being reported failed")
        pending = node.pending_writes.pop(index, None)
        if pending is not None and pending[0] != term:
            op = self.ops[pending[1]]
            if op.status == "ok":
                raise self.fail(f"op {pending[1]} both applied and overwritten")
            op.status = "failed"

    def _serve_reads(self, node: SimNode) -> None:
        still = []
        for index, op_id in node.waiting_reads:
            if node.applied >= index:
                op = self.ops[op_id]
                op.value, op.status, op.ret = node.kv.get(op.key), "ok", self.now
                self.stats.reads_ok += 1
            else:
                still.append((index, op_id))
        node.waiting_reads = still

    # -- the world ---------------------------------------------------------------

    def leader(self) -> SimNode | None:
        """The alive node leading the highest term, if any."""
        best = None
        for node in self.nodes.values():
            if node.is_leader() and (best is None or node.raw.raft.term > best.raw.raft.term):
                best = node
        return best

    def step(self) -> None:
        """One unit of virtual time."""
        self.now += 1
        self.stats.steps += 1
        if self.faults:
            self._inject_faults()
        for node_id, until in list(self.down_until.items()):
            if until <= self.now:
                del self.down_until[node_id]
                self._start(node_id)
                self.trace(f"restart {node_id}")
        for node in list(self.nodes.values()):
            if (self.now + node.id) % self.p.tick_steps == 0:
                node.raw.tick()
        self.deliver_due()
        if self.p.async_writes:
            for node in list(self.nodes.values()):
                if node.id in self.nodes:
                    writes.complete(self, node)
        if self.faults:
            self._run_clients()
        for node in list(self.nodes.values()):
            # Like the runtime, sometimes hold a commit-only broadcast for later.
            hold = self.p.hold_commit and self.rng.random() < 0.5
            if node.id in self.nodes and node.raw.has_ready(hold):
                if self.p.async_writes:
                    writes.handle_ready(self, node, hold)
                else:
                    self.handle_ready(node, hold)
        checks.after_step(self)

    def _inject_faults(self) -> None:
        rng, p = self.rng, self.p
        if rng.random() < p.partition_rate:
            self._partition()
        if self.nodes and rng.random() < p.crash_rate:
            victim = rng.choice(sorted(self.nodes))
            self.crash(victim, rng.randint(20, 400))
        if p.async_writes and self.nodes and rng.random() < p.power_loss_rate:
            self.trace("power loss")  # every node loses its writes in progress
            for node_id in sorted(self.nodes):
                self.crash(node_id, rng.randint(5, 60))
        if rng.random() < p.conf_change_rate:
            self._conf_change()
        if rng.random() < p.transfer_rate:
            self._transfer()

    def _partition(self) -> None:
        rng = self.rng
        ids = sorted(self.disks)
        choice = rng.random()
        if choice < 0.4:
            self.cut = set()
            self.trace("heal partitions")
        elif choice < 0.8:
            side = {i for i in ids if rng.random() < 0.5}
            self.cut = {(a, b) for a in ids for b in ids if (a in side) != (b in side)}
            self.trace(f"partition {sorted(side)} | {sorted(set(ids) - side)}")
        else:
            pairs = [(a, b) for a in ids for b in ids if a != b]
            self.cut = set(rng.sample(pairs, rng.randint(1, len(pairs) // 2)))
            self.trace(f"asymmetric cut {sorted(self.cut)}")

    def _conf_change(self) -> None:
        leader = self.leader()
        if leader is None:
            return
        conf = leader.raw.raft.conf
        rng = self.rng
        options: list[ConfChange] = []
        if self.next_id <= self.p.nodes + SPARE_NODES:
            options.append(ConfChange(ConfChangeType.ADD_LEARNER, NodeId(self.next_id)))
        options += [ConfChange(ConfChangeType.ADD_VOTER, n) for n in sorted(conf.learners)]
        options += [ConfChange(ConfChangeType.REMOVE_NODE, n) for n in sorted(conf.learners)]
        if len(conf.voters) > 3:
            options += [ConfChange(ConfChangeType.REMOVE_NODE, n) for n in sorted(conf.voters)]
        if not options:
            return
        change = rng.choice(options)
        try:
            leader.raw.propose_conf_change(change)
        except ProposalDroppedError:
            return
        if change.type is ConfChangeType.ADD_LEARNER:
            self.disks[self.next_id] = Disk(MemoryStorage())
            self._start(self.next_id)
            self.next_id += 1
        self.stats.conf_changes += 1
        self.trace(f"propose {change.type.name} {change.node_id} on {leader.id}")

    def _transfer(self) -> None:
        leader = self.leader()
        if leader is None:
            return
        voters = sorted(leader.raw.raft.conf.voters - {NodeId(leader.id)})
        if voters:
            target = self.rng.choice(voters)
            try:
                leader.raw.transfer_leadership(target)
            except RaftError:
                return
            self.stats.transfers += 1
            self.trace(f"transfer {leader.id} -> {target}")

    # -- clients -----------------------------------------------------------------

    def _run_clients(self) -> None:
        for client in self.clients:
            if client.op is not None:
                op = self.ops[client.op]
                timed_out = self.now - client.started > self.p.client_timeout
                if op.status == "pending" and not timed_out:
                    continue
                client.op = None
            if self.rng.random() < self.p.client_rate:
                self._start_op(client)

    def _start_op(self, client: Client) -> None:
        rng = self.rng
        if not self.nodes:
            return
        target = client.target if client.target in self.nodes else None
        if target is None or rng.random() < 0.3:
            target = rng.choice(sorted(self.nodes))
        node = self.nodes[target]
        roll = rng.random()
        kind = "put" if roll < 0.45 else ("delete" if roll < 0.55 else "get")
        key = rng.choice(KEYS)
        client.seq += 1
        value = f"{client.id}.{client.seq}" if kind == "put" else None
        op_id = len(self.ops)
        op = OpRecord(client.id, kind, key, value, self.now)
        self.ops[op_id] = op
        client.op, client.started = op_id, self.now
        try:
            if kind == "get":
                context = f"{node.id}:{op_id}".encode()
                node.raw.read_index(context)
                node.pending_reads[context] = op_id
            else:
                entry = node.raw.propose(encode_command(op_id, kind, key, value))
                node.pending_writes[entry.index] = (entry.term, op_id)
        except ProposalDroppedError as exc:
            op.status = "failed"
            client.target = exc.leader_hint

    def history(self) -> list[Operation]:
        """Completed operations plus writes of unknown outcome."""
        history = []
        for op in self.ops.values():
            if op.status == "ok" or (op.status == "pending" and op.kind != "get"):
                history.append(Operation(op.client, op.kind, op.key, op.value, op.call, op.ret))
        return history

    # -- the run -------------------------------------------------------------------

    def run(self) -> Stats:
        """Run the faulty phase, heal, converge, then check everything."""
        try:
            for _ in range(self.p.steps):
                self.step()
            self.faults = False
            self.cut = set()
            for node_id in list(self.down_until):
                self.down_until[node_id] = self.now
            for _ in range(self.p.heal_steps):
                self.step()
                if checks.converged(self):
                    break
            else:
                raise self.fail(f"no convergence after healing: {checks.describe(self)}")
        except SimFailure:
            raise
        except (AssertionError, RaftError) as exc:
            raise self.fail(f"{type(exc).__name__}: {exc}") from exc
        checks.final(self)
        result = check_history(self.history())
        if result.ok is False:
            raise self.fail(result.explain())
        self.stats.ops_ok = sum(1 for op in self.ops.values() if op.status == "ok")
        self.stats.ops_unknown = sum(1 for op in self.ops.values() if op.status == "pending")
        return self.stats


def run_seed(
    seed: int,
    testing_bug: str | None = None,
    verbose: bool = False,
    async_writes: bool | None = None,
) -> Stats:
    """Run the simulation of ``seed``; raises :class:`SimFailure` on a violation.

    ``async_writes`` forces asynchronous storage writes on or off (None: the
    seed decides).
    """
    params = SimParams.from_seed(seed, testing_bug, async_writes)
    return Simulation(params, verbose).run()

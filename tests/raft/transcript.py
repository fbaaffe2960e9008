"""Transcript tests of the Raft core (in the style of etcd raft's ``testdata/*.txt``).

A script is a sequence of blocks::

    # comments start with '#'
    command arg arg key=value
    ----
    expected output (never blank lines; "ok" when there is nothing to say)
    <blank line>

The harness runs each command on a :class:`tests.raft.cluster.Cluster` and
compares the output. With ``CREMA_REWRITE=1`` it rewrites the expected output
in place instead (review the diff before committing).

Commands:

* ``add-nodes N [pre-vote=true] [check-quorum=true] [election=10] [max-inflight=256]
  [max-size=N]``: a new cluster of nodes 1..N (bootstrap entries applied).
* ``campaign ID``: node ID starts an election (messages stay queued).
* ``tick-election ID`` / ``tick-heartbeat ID``: tick enough to time out / to beat once.
* ``process-ready ID...``: handle the Ready of the nodes (persist, queue messages, apply).
* ``deliver-msgs [from=ID] [to=ID]``: deliver queued messages, printing them.
* ``drop [from=ID] [to=ID]``: discard queued messages.
* ``stabilize``: process readies and deliver messages until quiet, printing messages.
* ``partition A,B C`` / ``heal``: cut links between groups / restore them.
* ``propose ID DATA``: a client write on node ID.
* ``read-index ID CTX``: a ReadIndex request on node ID.
* ``transfer-leadership FROM TO``.
* ``add-learner|add-voter|remove-node LEADER ID``: propose a membership change.
* ``compact ID INDEX [keep=N]``: the application snapshots at INDEX and compacts.
* ``restart ID``: crash and restart node ID from its storage.
* ``raft-log ID``, ``status ID``, ``applied ID``: inspect a node.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from pathlib import Path

from crema.errors import CremaError
from crema.raft.confchange import ConfChange
from crema.raft.messages import Message
from crema.raft.types import Entry, EntryType, Index, NodeId
from tests.raft.cluster import Cluster


def format_entry(e: Entry) -> str:
    """``term/index`` plus a short view of the payload."""
    if e.type is EntryType.CONF_CHANGE:
        cc = ConfChange.decode(e.data)
        return f"{e.term}/{e.index} {cc.type.name}({cc.node_id})"
    return (
        f"{e.term}/{e.index} {e.data.decode(errors='replace')!r}"
        if e.data
        else (f"{e.term}/{e.index} noop")
    )


def format_message(m: Message) -> str:
    """A compact one-line view of a message."""
    parts = [f"{m.frm}->{m.to} {m.type.name} term={m.term}"]
    if m.log_term or m.index:
        parts.append(f"logterm={m.log_term} index={m.index}")
    if m.commit:
        parts.append(f"commit={m.commit}")
    if m.reject:
        parts.append(f"reject hint={m.reject_hint}")
    if m.context:
        parts.append(f"ctx={m.context.decode(errors='replace')}")
    if m.entries:
        parts.append("[" + ", ".join(format_entry(e) for e in m.entries) + "]")
    if m.snapshot is not None:
        s = m.snapshot
        parts.append(f"snapshot={s.term}/{s.index} voters={sorted(s.conf_state.voters)}")
    return " ".join(parts)


class Harness:
    """Runs transcript commands against a cluster."""

    def __init__(self) -> None:
        self.cluster: Cluster | None = None

    @property
    def c(self) -> Cluster:
        assert self.cluster is not None, "add-nodes first"
        return self.cluster

    def run(self, line: str) -> str:
        """Run one command line; returns its output."""
        words = shlex.split(line)
        args = [w for w in words[1:] if "=" not in w]
        kwargs = dict(w.split("=", 1) for w in words[1:] if "=" in w)
        handler: Callable[[list[str], dict[str, str]], list[str]] = getattr(
            self, "cmd_" + words[0].replace("-", "_")
        )
        try:
            out = handler(args, kwargs)
        except CremaError as exc:
            out = [f"error: {type(exc).__name__}: {exc}"]
        return "\n".join(out) if out else "ok"

    def _ready(self, node_id: int) -> list[str]:
        rd = self.c.handle_ready(node_id)
        if rd is None:
            return []
        out = [f"> {node_id} ready:"]
        if rd.soft_state is not None:
            out.append(f"  lead={rd.soft_state.lead} role={rd.soft_state.role.value}")
        if rd.hard_state is not None:
            hs = rd.hard_state
            sync = " (sync)" if rd.must_sync else ""
            out.append(f"  hard state term={hs.term} vote={hs.vote} commit={hs.commit}{sync}")
        if rd.snapshot is not None:
            out.append(f"  install snapshot {rd.snapshot.term}/{rd.snapshot.index}")
        if rd.entries:
            out.append("  persist " + ", ".join(format_entry(e) for e in rd.entries))
        if rd.committed_entries:
            out.append("  apply " + ", ".join(format_entry(e) for e in rd.committed_entries))
        for rs in rd.read_states:
            out.append(f"  read state index={rs.index} ctx={rs.context.decode()}")
        for m in rd.messages:
            out.append("  send " + format_message(m))
        return out

    # -- commands -------------------------------------------------------------------

    def cmd_add_nodes(self, args: list[str], kw: dict[str, str]) -> list[str]:
        self.cluster = Cluster(
            list(range(1, int(args[0]) + 1)),
            pre_vote=kw.get("pre-vote", "true") == "true",
            check_quorum=kw.get("check-quorum", "true") == "true",
            election_tick=int(kw.get("election", "10")),
            max_inflight=int(kw.get("max-inflight", "256")),
            max_size_per_msg=int(kw.get("max-size", str(1 << 20))),
        )
        return []

    def cmd_campaign(self, args: list[str], kw: dict[str, str]) -> list[str]:
        self.c.node(int(args[0])).campaign()
        return []

    def cmd_tick_election(self, args: list[str], kw: dict[str, str]) -> list[str]:
        node = self.c.node(int(args[0]))
        self.c.tick(node.id, 2 * node.raft.config.election_tick)
        return []

    def cmd_tick_heartbeat(self, args: list[str], kw: dict[str, str]) -> list[str]:
        node = self.c.node(int(args[0]))
        self.c.tick(node.id, node.raft.config.heartbeat_tick)
        return []

    def cmd_process_ready(self, args: list[str], kw: dict[str, str]) -> list[str]:
        ids = sorted(self.c.nodes) if args == ["all"] else [int(a) for a in args]
        out: list[str] = []
        for i in ids:
            out += self._ready(i)
        return out

    def _filter(self, kw: dict[str, str]) -> tuple[int | None, int | None]:
        frm = int(kw["from"]) if "from" in kw else None
        to = int(kw["to"]) if "to" in kw else None
        return frm, to

    def cmd_deliver_msgs(self, args: list[str], kw: dict[str, str]) -> list[str]:
        frm, to = self._filter(kw)
        return ["deliver " + format_message(m) for m in self.c.deliver(frm, to)]

    def cmd_drop(self, args: list[str], kw: dict[str, str]) -> list[str]:
        frm, to = self._filter(kw)
        kept: list[Message] = []
        dropped: list[Message] = []
        for m in self.c.queue:
            match = (frm is None or m.frm == frm) and (to is None or m.to == to)
            (dropped if match else kept).append(m)
        self.c.queue = kept
        return ["drop " + format_message(m) for m in dropped]

    def cmd_stabilize(self, args: list[str], kw: dict[str, str]) -> list[str]:
        out: list[str] = []
        for _ in range(200):
            progressed = False
            for i in sorted(self.c.nodes):
                lines = self._ready(i)
                progressed = progressed or bool(lines)
                out += lines
            if self.c.queue:
                out += ["deliver " + format_message(m) for m in self.c.deliver()]
                progressed = True
            if not progressed:
                return out
        raise AssertionError("did not stabilize")

    def cmd_partition(self, args: list[str], kw: dict[str, str]) -> list[str]:
        self.c.partition(*[[int(x) for x in group.split(",")] for group in args])
        return []

    def cmd_heal(self, args: list[str], kw: dict[str, str]) -> list[str]:
        self.c.heal()
        return []

    def cmd_propose(self, args: list[str], kw: dict[str, str]) -> list[str]:
        entry = self.c.node(int(args[0])).propose(args[1].encode())
        return [f"proposed {format_entry(entry)}"]

    def cmd_read_index(self, args: list[str], kw: dict[str, str]) -> list[str]:
        self.c.node(int(args[0])).read_index(args[1].encode())
        return []

    def cmd_transfer_leadership(self, args: list[str], kw: dict[str, str]) -> list[str]:
        self.c.node(int(args[0])).transfer_leadership(NodeId(int(args[1])))
        return []

    def _conf(self, args: list[str], action: str) -> list[str]:
        leader, target = int(args[0]), NodeId(int(args[1]))
        if target not in self.c.nodes:
            self.c.add_node(target)
        entry = getattr(self.c.node(leader), action)(target)
        return [f"proposed {format_entry(entry)}"]

    def cmd_add_learner(self, args: list[str], kw: dict[str, str]) -> list[str]:
        return self._conf(args, "add_learner")

    def cmd_add_voter(self, args: list[str], kw: dict[str, str]) -> list[str]:
        return self._conf(args, "add_voter")

    def cmd_remove_node(self, args: list[str], kw: dict[str, str]) -> list[str]:
        return self._conf(args, "remove_node")

    def cmd_compact(self, args: list[str], kw: dict[str, str]) -> list[str]:
        tn = self.c.nodes[int(args[0])]
        plan = tn.node.snapshot_created(Index(int(args[1])), int(kw.get("keep", "0")))
        tn.storage.create_snapshot(plan.meta)
        tn.storage.compact(plan.compact_index)
        return [f"snapshot {plan.meta.term}/{plan.meta.index}, compacted to {plan.compact_index}"]

    def cmd_restart(self, args: list[str], kw: dict[str, str]) -> list[str]:
        self.c.restart(int(args[0]))
        return []

    def cmd_raft_log(self, args: list[str], kw: dict[str, str]) -> list[str]:
        log = self.c.node(int(args[0])).raft.log
        first = log.first_index()
        out = [f"first={first} last={log.last_index()} committed={log.committed}"]
        out += [format_entry(e) for e in log.slice(first, log.last_index() + 1)]
        return out

    def cmd_status(self, args: list[str], kw: dict[str, str]) -> list[str]:
        st = self.c.node(int(args[0])).status()
        out = [
            f"{st.role.value} term={st.term} vote={st.vote} lead={st.lead} commit={st.commit} "
            f"applied={st.applied} last={st.last_index}",
            f"voters={sorted(st.conf_state.voters)} learners={sorted(st.conf_state.learners)}",
        ]
        for node, (state, match, nxt) in sorted(st.progress.items()):
            out.append(f"  {node}: {state} match={match} next={nxt}")
        return out

    def cmd_applied(self, args: list[str], kw: dict[str, str]) -> list[str]:
        return [format_entry(e) for e in self.c.nodes[int(args[0])].applied]


def run_file(path: Path) -> tuple[str, str]:
    """Run a transcript; returns (expected text, actual text)."""
    expected = path.read_text()
    harness = Harness()
    out_lines: list[str] = []
    lines = expected.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.startswith("#"):
            out_lines.append(line)
            i += 1
            continue
        out_lines += [line, "----"]
        i += 1
        assert i < len(lines) and lines[i] == "----", f"{path}:{i}: expected '----'"
        i += 1
        while i < len(lines) and lines[i].strip():
            i += 1
        out_lines.append(harness.run(line))
    actual = "\n".join(out_lines) + "\n"
    return expected, actual


def check_file(path: Path) -> None:
    """Compare (or with ``CREMA_REWRITE=1`` rewrite) one transcript."""
    expected, actual = run_file(path)
    if os.environ.get("CREMA_REWRITE") == "1":
        path.write_text(actual)
        return
    assert actual == expected, f"{path.name} differs; rerun with CREMA_REWRITE=1 and diff"

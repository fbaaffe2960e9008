"""Learning the addresses of members this node cannot reach yet (layer L2).

A node learns a member's address from its seeds (``--peers``), from
``peers.json`` and from the membership change that added the member (the
change carries the address). A node that joined by installing a snapshot
never sees the changes compacted into it: the snapshot gives the members, not
where they listen. Without an address it cannot send them anything, and if it
led it could not replicate to them.

So on its ticks a follower checks for members it has no address for and asks
the leader for the addresses it knows (a ``REQ_PEERS`` forward, see
:mod:`crema.node.wire`), at most once per :data:`ASK_EVERY_S`. It adopts only
addresses of members it lacks; an address from its own seeds or from a change
is never replaced. Adopted addresses go to ``peers.json``, as those learned
from changes do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from crema.errors import CremaError
from crema.node import wire
from crema.node.forward import Forwarder
from crema.node.peers import load_peers, save_peers
from crema.raft.types import NodeId

if TYPE_CHECKING:
    from crema.node.replica import Replica

log = logging.getLogger("crema.node")

ASK_EVERY_S = 1.0
"""How often a node missing addresses asks the leader at most."""


def known_addresses(replica: Replica) -> list[list[object]]:
    """Leader side: ``[[node id, address], ...]`` of the members it can dial."""
    conf = replica.node.raft.conf
    rows: list[list[object]] = []
    for node in sorted(conf.voters | conf.learners):
        addr = replica.transport.peer_address(node)
        if addr is not None:
            rows.append([int(node), addr])
    return rows[: wire.MAX_PEER_ROWS]


class PeerDiscovery:
    """A follower's requests for the addresses of members it cannot dial.

    Args:
        replica: the node.
        forwarder: sends the request to the leader.
        data_dir: where ``peers.json`` is.
    """

    def __init__(self, replica: Replica, forwarder: Forwarder, data_dir: Path) -> None:
        self._replica = replica
        self._forwarder = forwarder
        self._data_dir = data_dir
        self._task: asyncio.Task[None] | None = None
        self._next_ask = 0.0
        self.asked = 0
        """Requests sent to a leader."""
        self.learned = 0
        """Addresses adopted from a leader's answer."""
        replica.tick_hooks.append(self.on_tick)

    def missing(self) -> set[NodeId]:
        """Members (voters and learners) other than this node with no known address."""
        replica = self._replica
        conf = replica.node.raft.conf
        known = set(replica.transport.peer_ids())
        return {n for n in conf.voters | conf.learners if n != replica.id and n not in known}

    def on_tick(self, now: float) -> None:
        """Ask the leader when addresses are missing (one request at a time, rate-limited)."""
        replica = self._replica
        if self._task is not None or now < self._next_ask or replica.closed:
            return
        leader = replica.leader_id()
        if leader is None or leader == replica.id or not replica.transport.is_connected(leader):
            return
        if not self.missing():
            return
        self._next_ask = now + ASK_EVERY_S
        self._task = asyncio.get_running_loop().create_task(self._ask(NodeId(leader)))
        self._task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._task = None
        if not task.cancelled() and task.exception() is not None:
            log.warning("node %d: asking for peer addresses failed: %r",
                        self._replica.id, task.exception())  # fmt: skip

    async def _ask(self, leader: NodeId) -> None:
        self.asked += 1
        body = wire.encode_request(wire.REQ_PEERS)
        try:
            reply = await self._forwarder.forward(leader, body, self._replica.write_timeout)
        except CremaError as exc:  # no answer in time, cannot send: ask again later
            log.debug("node %d: leader %d did not give peer addresses: %s",
                      self._replica.id, leader, exc)  # fmt: skip
            return
        if reply.status != wire.STATUS_OK:
            log.debug("node %d: leader %d refused peer addresses: %s",
                      self._replica.id, leader, reply.value)  # fmt: skip
            return
        self.adopt(wire.peer_rows(reply.value))

    def adopt(self, rows: list[tuple[int, str]]) -> list[NodeId]:
        """Dial the members in ``rows`` this node has no address for; the ones adopted.

        Raises:
            ConfigError: an address cannot be parsed (nothing is adopted).
        """
        if self._replica.closed:
            return []
        missing = self.missing()
        new = {NodeId(node): addr for node, addr in rows if node in missing}
        if not new:
            return []
        transport = self._replica.transport
        for node, addr in new.items():
            transport.check_peer(node, addr)  # all checked before any is used
        learned = load_peers(self._data_dir)
        for node, addr in sorted(new.items()):
            transport.add_peer(node, addr)
            learned[node] = addr
            log.info("node %d: learned the address of node %d from the leader: %s",
                     self._replica.id, node, addr)  # fmt: skip
        save_peers(self._data_dir, learned)
        self.learned += len(new)
        return sorted(new)

    async def stop(self) -> None:
        """Cancel a request in flight."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

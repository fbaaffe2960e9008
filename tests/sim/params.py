"""Parameters of one simulation run, all derived from its seed."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class SimParams:
    """Knobs of one run; :meth:`from_seed` picks them so that seeds explore different mixes.

    Time is in steps; a node ticks every ``tick_steps`` steps. With
    ``async_writes`` a node's storage writes become durable 1 to
    ``write_delay`` steps after its Ready (see ``tests/sim/writes.py``);
    ``async_override`` records that the caller forced the mode (for replay).
    """

    seed: int
    nodes: int = 3
    steps: int = 1500
    heal_steps: int = 4000
    tick_steps: int = 5
    election_tick: int = 10
    drop: float = 0.02
    duplicate: float = 0.01
    max_delay: int = 6
    partition_rate: float = 0.003
    crash_rate: float = 0.002
    mid_ready_crash: float = 0.1
    conf_change_rate: float = 0.002
    transfer_rate: float = 0.001
    snapshot_interval: int = 30
    keep_entries: int = 2
    clients: int = 3
    client_rate: float = 0.08
    client_timeout: int = 300
    max_inflight: int = 4
    max_size_per_msg: int = 400
    pre_vote: bool = True
    check_quorum: bool = True
    testing_bug: str | None = None
    hold_commit: bool = False
    async_writes: bool = False
    write_delays: tuple[int, ...] = (1,)
    power_loss_rate: float = 0.0
    async_override: bool | None = None

    @classmethod
    def from_seed(
        cls, seed: int, testing_bug: str | None = None, async_writes: bool | None = None
    ) -> SimParams:
        """Parameters for ``seed`` (deterministic); ``async_writes`` forces that mode on or off.

        New knobs are drawn after the older ones, so that a seed keeps the
        fault mix it had before they existed.
        """
        rng = random.Random(seed ^ 0x5EED)
        params = cls(
            seed=seed,
            nodes=rng.choice((3, 3, 5)),
            drop=rng.choice((0.0, 0.02, 0.1)),
            duplicate=rng.choice((0.0, 0.02)),
            max_delay=rng.choice((1, 4, 10)),
            partition_rate=rng.choice((0.0, 0.002, 0.006)),
            crash_rate=rng.choice((0.0, 0.001, 0.004)),
            conf_change_rate=rng.choice((0.0, 0.002, 0.005)),
            transfer_rate=rng.choice((0.0, 0.001, 0.004)),
            snapshot_interval=rng.choice((10, 30, 100)),
            keep_entries=rng.choice((0, 2, 10)),
            max_inflight=rng.choice((1, 4, 64)),
            max_size_per_msg=rng.choice((1, 400, 1 << 20)),
            pre_vote=rng.random() < 0.8,
            check_quorum=rng.random() < 0.8,
            testing_bug=testing_bug,
            hold_commit=rng.random() < 0.5,
            async_writes=rng.random() < 0.3,
            write_delays=tuple(rng.choice((2, 6, 30)) for _ in range(4)),
            power_loss_rate=rng.choice((0.0, 0.001, 0.003)),
        )
        if async_writes is None:
            return params
        return replace(params, async_writes=async_writes, async_override=async_writes)

"""The node runtime (layer L2): the driver loop, forwarding, checkpoints, recovery.

:class:`DistributedCache` is the public facade; see ``docs/node.md``.
"""

from __future__ import annotations

from crema.node.cache import DistributedCache

__all__ = ["DistributedCache"]

"""Backoff schedule and the bounded frame queue."""

from __future__ import annotations

import asyncio
import random

import pytest

from crema.errors import ConfigError
from crema.transport.backoff import Backoff
from crema.transport.config import parse_addr
from crema.transport.queue import FrameQueue


def test_backoff_grows_caps_jitters_and_resets() -> None:
    b = Backoff(0.1, 1.0, random.Random(7))
    steps = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    delays = [b.next_delay() for _ in steps]
    for d, step in zip(delays, steps, strict=True):
        assert step / 2 <= d <= step
    b.reset()
    assert 0.05 <= b.next_delay() <= 0.1
    again = Backoff(0.1, 1.0, random.Random(7))
    assert [again.next_delay() for _ in steps] == delays  # injected rng: reproducible


def test_backoff_rejects_bad_bounds() -> None:
    with pytest.raises(ValueError):
        Backoff(0, 1, random.Random())
    with pytest.raises(ValueError):
        Backoff(2, 1, random.Random())


def test_queue_bounds_by_count_and_bytes() -> None:
    async def main() -> None:
        q = FrameQueue(max_items=3, max_bytes=10)
        assert q.offer(b"a" * 4)
        assert q.offer(b"b" * 4)
        assert not q.offer(b"c" * 4)  # 12 bytes > 10
        assert q.offer(b"c")
        assert not q.offer(b"d")  # 4 items > 3
        assert (len(q), q.nbytes, q.dropped) == (3, 9, 2)
        assert q.take(max_bytes=5) == [b"a" * 4]  # at least one, then up to the budget
        assert q.take(max_bytes=100) == [b"b" * 4, b"c"]
        assert q.nbytes == 0
        assert q.offer(b"x" * 50)  # an empty queue always takes one frame

    asyncio.run(main())


def test_put_waits_for_space_and_close_releases() -> None:
    async def main() -> None:
        q = FrameQueue(max_items=1, max_bytes=100)
        assert await q.put(b"first")
        waiter = asyncio.create_task(q.put(b"second"))
        await asyncio.sleep(0.01)
        assert not waiter.done()
        assert q.take(100) == [b"first"]
        assert await waiter
        blocked = asyncio.create_task(q.put(b"third"))
        await asyncio.sleep(0.01)
        q.close()
        assert not await blocked
        assert len(q) == 0

    asyncio.run(main())


def test_wait_returns_on_frames_or_wake() -> None:
    async def main() -> None:
        q = FrameQueue(10, 100)
        w = asyncio.create_task(q.wait())
        await asyncio.sleep(0.01)
        assert not w.done()
        q.wake()
        await asyncio.wait_for(w, 1)
        assert q.take(100) == []
        w = asyncio.create_task(q.wait())
        q.offer(b"x")
        await asyncio.wait_for(w, 1)

    asyncio.run(main())


def test_parse_addr() -> None:
    assert parse_addr("127.0.0.1:7000") == ("127.0.0.1", 7000)
    assert parse_addr("[::1]:7000") == ("::1", 7000)
    for bad in ("7000", "host:", ":7000", "h:70000", "h:-1"):
        with pytest.raises(ConfigError):
            parse_addr(bad)

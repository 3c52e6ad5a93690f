"""Connection-pool limits as decisions: in flight, pending, overflow, and a cancelled waiter."""

from __future__ import annotations

import asyncio

import pytest

from controlplane.resiliencespecs import PoolLimits
from proxy.poollimits import Limiter, PoolOverflow


async def test_one_in_flight_one_pending_then_overflow_and_slots_handed_over_in_order():
    limiter = Limiter(PoolLimits(max_connections=1, max_pending=1))
    await limiter.acquire()
    assert (limiter.active, limiter.pending) == (1, 0)
    second = asyncio.ensure_future(limiter.acquire())  # noqa: TID251 - a bare future is the point here
    await asyncio.sleep(0)
    assert limiter.pending == 1 and not second.done()
    with pytest.raises(PoolOverflow, match="1 requests in flight .* and 1 waiting"):
        await limiter.acquire()
    limiter.release()  # the first finishes: its slot goes to the waiter, not back to the pool
    await second
    assert (limiter.active, limiter.pending) == (1, 0)
    limiter.release()
    assert limiter.active == 0


async def test_a_waiter_cancelled_by_a_timeout_leaves_the_queue():
    limiter = Limiter(PoolLimits(max_connections=1, max_pending=2))
    await limiter.acquire()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await limiter.acquire()
    assert limiter.pending == 0 and limiter.active == 1
    limiter.release()
    assert limiter.active == 0


async def test_zero_pending_means_overflow_as_soon_as_every_connection_is_busy():
    limiter = Limiter(PoolLimits(max_connections=2, max_pending=0))
    await limiter.acquire()
    await limiter.acquire()
    with pytest.raises(PoolOverflow):
        await limiter.acquire()

"""The proxy gives freed heap pages back to the system (proxy/memory.py): malloc_trim works on
this C library, the loop trims on its interval and counts what came back, and a proxy's
/metrics says how much."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from proxy.memory import TRIM_SECONDS, malloc_trim, resident_bytes, return_freed_memory
from tests.test_faults_e2e import until


def test_malloc_trim_returns_pages_freed_in_the_middle_of_the_heap():
    trim = malloc_trim()
    assert trim is not None  # glibc (the image is Debian's too)
    blocks = [bytes(64 * 1024) for _ in range(800)]  # 50 MiB in the heap (under malloc's mmap threshold)
    kept = blocks[::10]  # every tenth stays: what is freed around them cannot come off the heap's top
    del blocks
    before = resident_bytes()
    trim()
    assert before - resident_bytes() > 20 * 1024 * 1024
    assert len(kept) == 80


async def test_the_loop_trims_on_its_interval_and_counts_what_came_back():
    resident = iter([100, 60, 60, 60, 50, 70])  # before and after each of three trims
    trims, returned, slept = [], [], []

    async def sleep(seconds: float) -> None:
        if len(slept) == 3:
            raise asyncio.CancelledError
        slept.append(seconds)

    with pytest.raises(asyncio.CancelledError):
        await return_freed_memory(lambda: trims.append(1), lambda: next(resident), returned.append, sleep, every=7.0)
    assert slept == [7.0, 7.0, 7.0] and len(trims) == 3
    assert returned == [40]  # 100 -> 60; nothing the second time; RSS that grew is not counted


async def test_a_proxy_returns_freed_memory_after_a_burst_and_says_how_much(emoji_mesh):
    _mesh, server, client = emoji_mesh
    async with aiohttp.ClientSession() as session:  # a burst of large bodies: heap grown, then freed
        for _ in range(5):
            statuses = await asyncio.gather(*(_post(session, client.outbound) for _ in range(20)))
            assert statuses == [200] * 20

    def returned() -> float:
        metrics = server.metrics()
        assert "# TYPE proxy_memory_returned_bytes_total counter" in metrics
        return float(metrics.split("\nproxy_memory_returned_bytes_total ")[1].split()[0])

    await until(lambda: asyncio.to_thread(returned), lambda got: got > 0, "the proxy's periodic trim", 3 * TRIM_SECONDS)


async def _post(session: aiohttp.ClientSession, proxy: str) -> int:
    async with session.post("http://emoji/echo", data=b"x" * 300_000, proxy=proxy) as rsp:
        await rsp.read()
        return rsp.status

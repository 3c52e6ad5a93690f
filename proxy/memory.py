"""Giving freed memory back to the system.

glibc's malloc keeps the pages of what the proxy frees in the middle of its heap: after a burst
— many connections, many mirrored copies in flight — the heap has grown and its freed pages stay
resident, so the proxy's RSS keeps the burst's high-water mark. Measured: a productpage sidecar
mirroring at full load went from 32 to 61 MB in ten minutes, and one ``malloc_trim(0)`` gave
17 MB of that back at once. So every :data:`TRIM_SECONDS` the proxy asks
malloc to return what it can; ``proxy_memory_returned_bytes_total`` counts what came back.

Where malloc has no ``malloc_trim`` (musl, macOS) there is nothing to do.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
from collections.abc import Awaitable, Callable

log = logging.getLogger("meshdojo.proxy.memory")

TRIM_SECONDS = 10.0
_PAGE = os.sysconf("SC_PAGE_SIZE")


def malloc_trim() -> Callable[[], object] | None:
    """The C library's ``malloc_trim(0)``, or None where it has none."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: trim(0)


def resident_bytes() -> int:
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * _PAGE


async def return_freed_memory(trim: Callable[[], object], resident: Callable[[], int], returned: Callable[[int], None],
                              sleep: Callable[[float], Awaitable[object]] = asyncio.sleep, every: float = TRIM_SECONDS) -> None:
    """Forever: wait ``every`` seconds, trim, and report the bytes RSS went down by."""
    while True:
        await sleep(every)
        before = resident()
        trim()
        if (gone := before - resident()) > 0:
            returned(gone)
            log.debug("returned %d kB of freed memory to the system", gone // 1024)

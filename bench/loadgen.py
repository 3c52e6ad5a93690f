"""A lean HTTP/1.1 keep-alive load generator (asyncio protocols), so the client costs little
next to what is measured. Sends absolute-form requests when going through a proxy."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import httptools


class _Client(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.done: asyncio.Future[int] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(self.parser.get_status_code())

    def connection_lost(self, exc):
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError("closed"))


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    elapsed: float = 0.0

    def quantile(self, q: float) -> float:
        data = sorted(self.latencies)
        return data[min(len(data) - 1, int(q * len(data)))] * 1000 if data else float("nan")

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0


async def run(port: int, target: str, concurrency: int, duration: float, warmup: float = 0.5) -> Result:
    loop = asyncio.get_running_loop()
    request = f"GET {target} HTTP/1.1\r\nHost: bench-app\r\nUser-Agent: meshdojo-bench\r\n\r\n".encode()
    result = Result()
    measuring = False
    stop_at = time.monotonic() + warmup + duration

    async def worker() -> None:
        nonlocal measuring
        _, client = await loop.create_connection(_Client, "127.0.0.1", port)
        while time.monotonic() < stop_at:
            client.done = loop.create_future()
            started = time.perf_counter()
            client.transport.write(request)
            try:
                status = await client.done
            except ConnectionError:
                result.errors += 1
                return
            if measuring:
                if status == 200:
                    result.latencies.append(time.perf_counter() - started)
                else:
                    result.errors += 1
        client.transport.close()

    workers = [loop.create_task(worker()) for _ in range(concurrency)]
    await asyncio.sleep(warmup)
    measuring = True
    t0 = time.monotonic()
    await asyncio.gather(*workers)
    result.elapsed = time.monotonic() - t0
    return result

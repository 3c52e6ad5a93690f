"""A lean HTTP/1.1 keep-alive load generator (asyncio protocols), so the client costs little
next to what is measured. Sends absolute-form requests when going through a proxy."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import httptools

from bench.measure import BenchError


class _Client(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.done: asyncio.Future[int] | None = None
        self.transport: asyncio.Transport | None = None
        self.sent_at: float | None = None  # when the request now in flight was sent
        self.timed_out = False

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
    errors: int = 0  # a status other than 200, or a closed connection
    timeouts: int = 0  # no response within REQUEST_TIMEOUT
    elapsed: float = 0.0
    completed: int = 0  # responses received, the warm-up's included (what a tap must have seen)

    def check(self, what: str) -> Result:
        """This result, or the error that fails the benchmark (a failure is never a number)."""
        if self.errors or self.timeouts or not self.latencies:
            raise BenchError(f"{what}: {len(self.latencies)} requests measured, {self.errors} errors, {self.timeouts} timeouts")
        return self

    def quantile(self, q: float) -> float:
        data = sorted(self.latencies)
        return data[min(len(data) - 1, int(q * len(data)))] * 1000 if data else float("nan")

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0


REQUEST_TIMEOUT = 10.0


async def run(port: int, target: str, concurrency: int, duration: float, warmup: float = 0.5) -> Result:
    """Keep ``concurrency`` connections busy for ``warmup + duration`` seconds; measure the
    last ``duration``. A request without an answer in ``REQUEST_TIMEOUT`` ends its connection
    and counts as a timeout."""
    loop = asyncio.get_running_loop()
    request = f"GET {target} HTTP/1.1\r\nHost: bench-app\r\nUser-Agent: meshdojo-bench\r\n\r\n".encode()
    result = Result()
    measuring = False
    stop_at = time.monotonic() + warmup + duration

    async def worker(client: _Client) -> None:
        while time.monotonic() < stop_at:
            client.done = loop.create_future()
            started = time.perf_counter()
            client.transport.write(request)
            client.sent_at = started
            try:
                status = await client.done
            except ConnectionError:
                if client.timed_out:
                    result.timeouts += 1
                else:
                    result.errors += 1
                return
            client.sent_at = None
            result.completed += 1
            if status != 200:
                result.errors += 1
            elif measuring:
                result.latencies.append(time.perf_counter() - started)
        client.transport.close()

    clients: list[_Client] = []

    async def watchdog() -> None:
        """One timer for all connections (a timeout per request would load the client)."""
        while True:
            await asyncio.sleep(1.0)
            now = time.perf_counter()
            for c in clients:
                if c.sent_at is not None and now - c.sent_at > REQUEST_TIMEOUT and c.transport is not None:
                    c.timed_out = True
                    c.transport.close()

    async def connect_and_work() -> None:
        _, client = await loop.create_connection(_Client, "127.0.0.1", port)
        clients.append(client)
        await worker(client)

    guard = loop.create_task(watchdog())
    workers = [loop.create_task(connect_and_work()) for _ in range(concurrency)]
    await asyncio.sleep(warmup)
    measuring = True
    t0 = time.monotonic()
    try:
        await asyncio.gather(*workers)
    finally:
        guard.cancel()
    result.elapsed = time.monotonic() - t0
    return result

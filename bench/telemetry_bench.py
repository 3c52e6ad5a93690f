"""``make bench`` (observability part): the control plane's cost of telemetry.

N simulated proxies (20, 50, 100) serve a realistic ``/metrics`` page — a real proxy's
exposition after traffic to a few services, so the parser sees what it sees in a sandbox —
and are registered as workloads; the control plane scrapes each once a second. Measured: the
control plane's CPU (from /proc) over a 10 s window, and its RSS, against an idle baseline.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import web
from prometheus_client import generate_latest

from bench.sandbox_up import cpu_seconds, rss_mb
from proxy.metrics import ProxyMetrics
from tests.meshkit import Mesh

WINDOW = 10.0


def realistic_page() -> bytes:
    metrics = ProxyMetrics()
    for direction, peer in (("inbound", "spiffe://meshdojo.local/ns/emojivoto/sa/web"), ("outbound", "")):
        for service in ("emoji", "voting", "web"):
            labels = (direction, f"{service}:8080", "true", peer if direction == "inbound" else "",
                      "" if direction == "inbound" else f"spiffe://meshdojo.local/ns/emojivoto/sa/{service}",
                      "emojivoto" if direction == "outbound" else "", service if direction == "outbound" else "",
                      service if direction == "outbound" else "")
            for status, latency in ((200, 3.0), (200, 40.0), (500, 7.0)):
                metrics.record(labels, status, latency, status >= 500)
    return generate_latest(metrics.registry)


async def measure(mesh: Mesh, count: int, page: bytes) -> tuple[float, float]:
    async def handle(_request: web.Request) -> web.Response:
        return web.Response(body=page, content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sites = []
    for i in range(count):
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        sites.append(site)
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        await asyncio.to_thread(mesh.call, "PUT", f"/v1/workloads/bench/sim-{i}",
                                {"deployment": f"sim-{i % 10}", "identity": "spiffe://meshdojo.local/ns/bench/sa/sim", "admin": port})
    await asyncio.sleep(3)  # let the scrape loop reach steady state (a measurement window, not synchronization)
    pid = mesh.cp.pid
    before, t0 = cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(WINDOW)
    cpu = (cpu_seconds(pid) - before) / (time.monotonic() - t0)
    rss = rss_mb(pid)
    for i in range(count):
        await asyncio.to_thread(mesh.call, "DELETE", f"/v1/workloads/bench/sim-{i}")
    await runner.cleanup()
    return cpu, rss


def main() -> int:
    page = realistic_page()
    results = []
    with tempfile.TemporaryDirectory(prefix="meshdojo-bench-") as tmp:
        mesh = Mesh(Path(tmp))
        try:
            mesh.start_controlplane()
            for count in (0, 20, 50, 100):
                results.append((count, *asyncio.run(measure(mesh, count, page))))
        finally:
            mesh.close()
    print(f"- control plane scraping N simulated proxies once a second ({len(page):,}-byte expositions, 15 min history):")
    for count, cpu, rss in results:
        print(f"  - N={count}: {cpu:.1%} of one core, RSS {rss:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

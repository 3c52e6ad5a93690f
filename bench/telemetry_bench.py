"""Telemetry: the control plane's cost of scraping.

N simulated proxies (0, 20, 50, 100) serve a realistic ``/metrics`` page — a real proxy's
exposition after traffic to a few services, so the parser sees what it sees in a sandbox —
and are registered as workloads; the control plane scrapes each once a second. Two cases: a
quiet mesh (the pages do not change) and live traffic (every counter moves between one scrape
and the next, as in a sandbox with its load generators). Measured: the control plane's CPU
(from /proc) over repeated windows, and its RSS.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

from aiohttp import web
from prometheus_client import generate_latest

from bench.measure import BenchError, Section, Settings, Spread, cpu_seconds, rss_mb
from proxy.metrics import ProxyMetrics
from tests.meshkit import Mesh


def _traffic(metrics: ProxyMetrics) -> None:
    """A few requests to and from each of three services, successes and failures."""
    for direction, peer in (("inbound", "spiffe://meshdojo.local/ns/emojivoto/sa/web"), ("outbound", "")):
        for service in ("emoji", "voting", "web"):
            labels = (direction, f"{service}:8080", "true", peer if direction == "inbound" else "",
                      "" if direction == "inbound" else f"spiffe://meshdojo.local/ns/emojivoto/sa/{service}",
                      "emojivoto" if direction == "outbound" else "", service if direction == "outbound" else "",
                      service if direction == "outbound" else "")
            for status, latency in ((200, 3.0), (200, 40.0), (500, 7.0)):
                metrics.record(labels, status, latency, status >= 500)


def realistic_page() -> bytes:
    metrics = ProxyMetrics()
    _traffic(metrics)
    return generate_latest(metrics.registry)


def live_pages(count: int = 30) -> list[bytes]:
    """One proxy's page, second after second, under steady traffic: the values move, the series stay."""
    metrics, pages = ProxyMetrics(), []
    for _ in range(count):
        _traffic(metrics)
        pages.append(generate_latest(metrics.registry))
    return pages


async def measure(mesh: Mesh, count: int, pages: list[bytes], settings: Settings) -> tuple[Spread, float]:
    served = itertools.count()

    async def handle(_request: web.Request) -> web.Response:  # each scrape gets the next page
        return web.Response(body=pages[next(served) % len(pages)], content_type="text/plain")

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
    scraped = await asyncio.to_thread(_scraped_within, mesh, count, 10.0)
    if not scraped:
        raise BenchError(f"telemetry: the control plane did not scrape all {count} simulated proxies within 10 s")
    await asyncio.sleep(2)  # steady state past the first scrapes (a measurement window, not synchronization)
    pid = mesh.cp.pid
    windows = []
    for _ in range(settings.repeats):
        before, t0 = cpu_seconds(pid), time.monotonic()
        await asyncio.sleep(settings.seconds)
        windows.append((cpu_seconds(pid) - before) / (time.monotonic() - t0))
    rss = rss_mb(pid)
    for i in range(count):
        await asyncio.to_thread(mesh.call, "DELETE", f"/v1/workloads/bench/sim-{i}")
    await runner.cleanup()
    return Spread.of(windows), rss


def _scraped_within(mesh: Mesh, count: int, timeout: float) -> bool:
    """Has every simulated proxy been scraped (none listed as not answering)?"""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = mesh.call("GET", "/v1/stats?namespace=bench")[1]["rows"]
        registered = sum(int(r["meshed"].split("/")[1]) for r in rows)
        if registered == count and not any(r["not_answering"] for r in rows):
            return True
        time.sleep(0.2)  # polling the condition, with a deadline
    return False


def run(settings: Settings, root: Path) -> Section:
    section = Section("Telemetry")
    quiet, live = [realistic_page()], live_pages()
    results = []
    mesh = Mesh(root)
    try:
        mesh.start_controlplane()
        for case, pages, counts in (("quiet", quiet, (0, 5) if settings.smoke else (0, 20, 50, 100)),
                                    ("live", live, (5,) if settings.smoke else (20, 50, 100))):
            for count in counts:
                results.append((case, count, *asyncio.run(measure(mesh, count, pages, settings))))
    finally:
        mesh.close()
    section.add(f"- the control plane scraping N simulated proxies once a second ({len(quiet[0]):,}-byte expositions, "
                f"15 min history; {settings.repeats} × {settings.seconds:g} s), of one core:")
    section.add()
    section.add("| N | quiet mesh (pages unchanged) | live traffic (every counter moves) | RSS |")
    section.add("|---|---|---|---|")
    by_count: dict[int, dict[str, tuple[Spread, float]]] = {}
    for case, count, cpu, rss in results:
        by_count.setdefault(count, {})[case] = (cpu, rss)
        section.figure(f"N={count} CPU share" if case == "quiet" else f"N={count} live CPU share", cpu.median)
        section.figure(f"N={count} RSS MB" if case == "quiet" else f"N={count} live RSS MB", rss)
    for count, cases in sorted(by_count.items()):
        cells = [cases[case][0].show(".1%") if case in cases else "—" for case in ("quiet", "live")]
        rss = (cases.get("live") or cases["quiet"])[1]  # after the last case measured at this N
        section.add(f"| {count} | {cells[0]} | {cells[1]} | {rss:.0f} MB |")
    return section

"""``make soak``: a sandbox under steady load for a long while (30 minutes by default), with the
faults a learner causes — kills, scaling, policy changes, a control-plane restart — every
20 seconds. Reports failed requests and the memory and open files of the proxies and the
control plane over time, and the control plane's RSS trend (a leak shows as a steady slope).

    python -m bench.soak [--minutes 30] [--rps 40]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.measure import rss_mb

CHAOS = [
    ("kill emoji", ["kill", "emoji"]),
    ("kill the voting sidecar", ["kill", "voting", "--proxy"]),
    ("scale web to 2", ["scale", "web", "2"]),
    ("apply retries on emoji", ["apply", "-f", "demo-apps/emojivoto/policies/doughnut-retries.yaml"]),
    ("scale web to 1", ["scale", "web", "1"]),
    ("kill the control plane", ["kill", "controlplane"]),
    ("delete the retries", ["delete", "-f", "demo-apps/emojivoto/policies/doughnut-retries.yaml"]),
    ("kill reviews-v2", ["kill", "reviews-v2"]),
]


@dataclass
class Sample:
    minute: float
    requests: int
    failed: int
    cp_rss: float
    cp_fds: int
    proxy_rss_max: float
    proxy_rss_sum: float
    proxy_fds_max: int


@dataclass
class Growth:
    """One proxy's RSS and metric series at its first and its latest sample (a leak shows here)."""

    first_rss: float
    first_series: int
    last_rss: float = 0.0
    last_series: int = 0
    pid: int = 0
    open_connections: int = 0
    fds: int = 0


@dataclass
class Load:
    ok: int = 0
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    growth: dict[str, Growth] = field(default_factory=dict)


def fds(pid: int | None) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, TypeError):
        return 0


async def steady_load(urls: list[str], rps: float, stop: asyncio.Event, load: Load) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        async def one(url: str) -> None:
            try:
                async with session.get(url) as rsp:
                    await rsp.read()
                    if rsp.status < 400:
                        load.ok += 1
                    else:
                        load.failed += 1
                        load.errors[str(rsp.status)] = load.errors.get(str(rsp.status), 0) + 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                load.failed += 1
                load.errors[type(exc).__name__] = load.errors.get(type(exc).__name__, 0) + 1

        tasks: set[asyncio.Task] = set()
        n = 0
        started = time.monotonic()
        while not stop.is_set():
            task = asyncio.get_running_loop().create_task(one(urls[n % len(urls)]))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
            await asyncio.sleep(max(started + n / rps - time.monotonic(), 0))
        await asyncio.gather(*tasks, return_exceptions=True)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rps", type=float, default=40.0)
    parser.add_argument("--every", type=float, default=20.0, help="seconds between faults")
    parser.add_argument("--sample", type=float, default=30.0, help="seconds between samples")
    args = parser.parse_args()
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix="meshdojo-soak-") as home:
        env = {**os.environ, "MESHDOJO_HOME": home}

        def cli(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "sandbox.cli", *argv], env=env, cwd=root, capture_output=True, text=True,
                                  timeout=120, check=check)

        cli("up", "--no-tui")
        try:
            samples, load = asyncio.run(_soak(cli, args))
        finally:
            cli("down", check=False)
    print(f"## Soak: {args.minutes:g} min at {args.rps:g} req/s, a fault every {args.every:g} s\n")
    print("| minute | requests | failed | control plane RSS MB | CP open files | proxy RSS max MB | all proxies MB | proxy open files max |")
    print("|---|---|---|---|---|---|---|---|")
    for s in samples:
        print(f"| {s.minute:.1f} | {s.requests} | {s.failed} | {s.cp_rss:.1f} | {s.cp_fds} | {s.proxy_rss_max:.1f} | {s.proxy_rss_sum:.0f} | "
              f"{s.proxy_fds_max} |")
    total = load.ok + load.failed
    print(f"\n- requests: {total}, failed {load.failed} ({load.failed / max(total, 1):.2%}): {json.dumps(load.errors)}")
    steady = [s for s in samples if s.minute >= 5 and s.cp_rss] or [s for s in samples if s.cp_rss]
    if len(steady) >= 2:  # (a sample taken while the control plane was restarting has no RSS)
        slope = _slope([(s.minute, s.cp_rss) for s in steady])
        pslope = _slope([(s.minute, s.proxy_rss_max) for s in steady])
        print(f"- control plane RSS trend after minute 5: {slope:+.2f} MB/min; largest proxy: {pslope:+.2f} MB/min")
    grown = sorted(load.growth.items(), key=lambda kv: kv[1].first_rss - kv[1].last_rss)[:3]
    print("- proxies that grew most (same process, first -> last sample): " + "; ".join(
        f"{name} {g.first_rss:.1f} -> {g.last_rss:.1f} MB, metric series {g.first_series} -> {g.last_series}, "
        f"connections open by its metrics {g.open_connections} (open files {g.fds})" for name, g in grown))
    return 0


def metric_series(admin: int | None) -> tuple[int, int]:
    """(series exposed, connections its tcp_open_connections gauges count as open)."""
    if not admin:
        return 0, 0
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5) as rsp:
            lines = [line for line in rsp.read().decode().splitlines() if line and not line.startswith("#")]
    except OSError:
        return 0, 0
    return len(lines), int(sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith("tcp_open_connections{")))


def _track(load: Load, st: dict) -> None:
    """Follow each proxy process (a restarted one starts over) by name."""
    procs = [(f"{w['name']} sidecar", w["pids"]["proxy"], w["ports"].get("admin")) for w in st["workloads"] if w["pids"]["proxy"]]
    procs += [(f"{g['demo']} gateway", g["pid"], g.get("admin")) for g in st["gateways"] if g["pid"]]
    for name, pid, admin in procs:
        g = load.growth.get(name)
        series, open_connections = metric_series(admin)
        if g is None or g.pid != pid:
            g = load.growth[name] = Growth(rss_mb(pid), series, pid=pid)
        g.last_rss, g.last_series, g.open_connections, g.fds = rss_mb(pid), series, open_connections, fds(pid)


async def _soak(cli, args) -> tuple[list[Sample], Load]:
    st = json.loads(cli("status", "-o", "json").stdout)
    urls = [g["url"] + ("api/list" if g["demo"] == "emojivoto" else "productpage") for g in st["gateways"]]
    load = Load()
    stop = asyncio.Event()
    loader = asyncio.get_running_loop().create_task(steady_load(urls, args.rps, stop, load))
    samples: list[Sample] = []
    started = time.monotonic()
    next_fault, next_sample, faults, last = started + args.every, started, 0, (0, 0)
    while time.monotonic() - started < args.minutes * 60:
        now = time.monotonic()
        if now >= next_fault:
            name, argv = CHAOS[faults % len(CHAOS)]
            result = await asyncio.to_thread(cli, *argv, check=False)
            print(f"[{(now - started) / 60:5.1f} min] {name}: {'ok' if result.returncode == 0 else result.stderr.strip()[:120]}", flush=True)
            faults += 1
            next_fault += args.every
        if now >= next_sample:
            st = json.loads((await asyncio.to_thread(cli, "status", "-o", "json")).stdout)
            proxies = [w["pids"]["proxy"] for w in st["workloads"] if w["pids"]["proxy"]] + [g["pid"] for g in st["gateways"] if g["pid"]]
            cp = st["controlplane"]["pid"]
            requests, failed = load.ok + load.failed, load.failed
            samples.append(Sample((now - started) / 60, requests - last[0], failed - last[1], rss_mb(cp) if cp else 0.0, fds(cp),
                                  max((rss_mb(p) for p in proxies), default=0.0), sum(rss_mb(p) for p in proxies),
                                  max((fds(p) for p in proxies), default=0)))
            last = (requests, failed)
            await asyncio.to_thread(_track, load, st)
            next_sample += args.sample
        await asyncio.sleep(0.5)
    stop.set()
    await loader
    return samples, load


def _slope(points: list[tuple[float, float]]) -> float:
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0


if __name__ == "__main__":
    sys.exit(main())

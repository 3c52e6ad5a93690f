"""The local sandbox: wall time of ``meshdojo up`` with both demos until every instance is
ready, then the whole sandbox's CPU (every process it started) while it idles with its
load generators (vote-bot, bookinfo's traffic), and the sum of their RSS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.measure import Section, Settings, Spread, Target, cpu_seconds, rss_mb, targets_table

UP_SECONDS, IDLE_CPU = 5.0, 0.15  # the targets


def _cli(env: dict[str, str], *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sandbox.cli", *argv], env=env, check=True, capture_output=True, text=True,
                          timeout=timeout)


def run(settings: Settings, root: Path) -> Section:
    section = Section("Local sandbox")
    env = {**os.environ, "MESHDOJO_HOME": str(root)}
    ups = []
    try:
        for i in range(min(settings.repeats, 3)):  # each `up` is a cold start of 26 processes
            if i:
                _cli(env, "down", timeout=60)
            started = time.monotonic()
            _cli(env, "up", "--no-tui", "--fresh")
            ups.append(time.monotonic() - started)
        st = json.loads(_cli(env, "status", "-o", "json").stdout)
        pids = [st["supervisor"], st["controlplane"]["pid"]] + [g["pid"] for g in st["gateways"]]
        pids += [p for w in st["workloads"] for p in w["pids"].values() if p]
        time.sleep(2)  # start-up settles before idling is measured (a measurement window, not synchronization)
        windows = []
        for _ in range(settings.repeats):
            before, t0 = {p: cpu_seconds(p) for p in pids}, time.monotonic()
            time.sleep(settings.seconds)
            windows.append(sum(cpu_seconds(p) - before[p] for p in pids) / (time.monotonic() - t0))
        rss = sum(rss_mb(p) for p in pids)
    finally:
        subprocess.run([sys.executable, "-m", "sandbox.cli", "down"], env=env, capture_output=True, timeout=60)
    up, cpu = Spread.of(ups), Spread.of(windows)
    section.figure("up seconds", up.median)
    section.figure("idle CPU share", cpu.median)
    section.figure("total RSS MB", rss)
    section.add(f"- `meshdojo up` with emojivoto and bookinfo until every instance is ready: {up.show('.1f', ' s')} over "
                f"{len(ups)} cold starts ({len(st['workloads'])} instances, {len(pids)} processes)")
    section.add(f"- the sandbox idling with its load generators: {cpu.show('.1%')} of one core "
                f"({settings.repeats} × {settings.seconds:g} s); total RSS {rss:.0f} MB")
    targets_table(section, [
        Target(f"`up` with both demos until all ready ≤ {UP_SECONDS:g} s", up.show(".1f", " s"), up.median <= UP_SECONDS),
        Target(f"sandbox CPU while idling ≤ {IDLE_CPU:.0%} of one core", cpu.show(".1%"), cpu.median <= IDLE_CPU),
    ])
    return section

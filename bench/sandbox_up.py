"""The local sandbox: wall time of ``meshdojo up`` with both demos until every instance is
ready, and the CPU its processes spent getting there — with the sidecars forked from the fork
server (the default) and, interleaved, started by exec (``MESHDOJO_FORKSERVER=off``) — then
the whole sandbox's CPU (every process it started) while it idles with its load generators
(vote-bot, bookinfo's traffic), and the sum of their RSS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.measure import BenchError, Section, Settings, Spread, Target, cpu_seconds, pss_mb, rss_mb, targets_table
from sandbox.supervisor import FORKSERVER_ENV

UP_SECONDS, IDLE_CPU = 5.0, 0.15  # the targets


def _cli(env: dict[str, str], *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sandbox.cli", *argv], env=env, check=True, capture_output=True, text=True,
                          timeout=timeout)


def _pids(st: dict) -> list[int]:
    pids = [st["supervisor"], st.get("forkserver"), st["controlplane"]["pid"]] + [g["pid"] for g in st["gateways"]]
    pids += [p for w in st["workloads"] for p in w["pids"].values()]
    return [p for p in pids if p]


def _up(env: dict[str, str]) -> tuple[tuple[float, float, float], dict]:
    """One cold ``up``: its wall time, the CPU seconds its processes had spent when it returned
    and their memory (PSS, MB), and the sandbox's status."""
    started = time.monotonic()
    _cli(env, "up", "--no-tui", "--fresh")
    wall = time.monotonic() - started
    st = json.loads(_cli(env, "status", "-o", "json").stdout)
    pids = _pids(st)
    return (wall, sum(cpu_seconds(p) for p in pids), sum(pss_mb(p) for p in pids)), st


def run(settings: Settings, root: Path) -> Section:
    section = Section("Local sandbox")
    env = {**os.environ, "MESHDOJO_HOME": str(root)}
    runs: dict[str, list[tuple[float, float, float]]] = {"exec": [], "forkserver": []}
    try:
        # each `up` is a cold start of every process; exec and fork server interleaved, the fork
        # server's last, so the sandbox measured idling below is the default one
        for _ in range(min(settings.repeats, 3)):
            for mode in ("exec", "forkserver"):
                if runs["forkserver"] or runs["exec"]:
                    _cli(env, "down", timeout=60)
                measured, st = _up({**env, FORKSERVER_ENV: "off" if mode == "exec" else "on"})
                if (st.get("forkserver") is None) != (mode == "exec"):
                    raise BenchError(f"`up` with {FORKSERVER_ENV}={'off' if mode == 'exec' else 'on'} reported fork server "
                                     f"{st.get('forkserver')}")
                runs[mode].append(measured)
        pids = _pids(st)
        time.sleep(2)  # start-up settles before idling is measured (a measurement window, not synchronization)
        windows = []
        for _ in range(settings.repeats):
            before, t0 = {p: cpu_seconds(p) for p in pids}, time.monotonic()
            time.sleep(settings.seconds)
            windows.append(sum(cpu_seconds(p) - before[p] for p in pids) / (time.monotonic() - t0))
        rss, pss = sum(rss_mb(p) for p in pids), sum(pss_mb(p) for p in pids)
    finally:
        subprocess.run([sys.executable, "-m", "sandbox.cli", "down"], env=env, capture_output=True, timeout=60)
    (up, up_cpu, up_pss), (up_exec, up_cpu_exec, up_pss_exec) = (
        [Spread.of(run[i] for run in runs[mode]) for i in range(3)] for mode in ("forkserver", "exec"))
    cpu = Spread.of(windows)
    section.figure("up seconds", up.median)
    section.figure("up seconds, exec", up_exec.median)
    section.figure("up CPU seconds", up_cpu.median)
    section.figure("up CPU seconds, exec", up_cpu_exec.median)
    section.figure("up PSS MB", up_pss.median)
    section.figure("up PSS MB, exec", up_pss_exec.median)
    section.figure("idle CPU share", cpu.median)
    section.figure("total RSS MB", rss)
    section.figure("total PSS MB", pss)
    section.add(f"- `meshdojo up` with emojivoto and bookinfo until every instance is ready: {up.show('.1f', ' s')} over "
                f"{len(runs['forkserver'])} cold starts ({len(st['workloads'])} instances, {len(pids)} processes); "
                f"its processes had used {up_cpu.show('.1f', ' s')} of CPU by then and held {up_pss.show('.0f', ' MB')} (PSS)")
    section.add(f"  - the same with every sidecar started by exec instead of forked (`{FORKSERVER_ENV}=off`, interleaved): "
                f"{up_exec.show('.1f', ' s')}, {up_cpu_exec.show('.1f', ' s')} of CPU, {up_pss_exec.show('.0f', ' MB')} (PSS)")
    section.add(f"- the sandbox idling with its load generators: {cpu.show('.1%')} of one core "
                f"({settings.repeats} × {settings.seconds:g} s); total RSS {rss:.0f} MB, {pss:.0f} MB with each shared page "
                f"counted once (PSS)")
    targets_table(section, [
        Target(f"`up` with both demos until all ready ≤ {UP_SECONDS:g} s", up.show(".1f", " s"), up.median <= UP_SECONDS),
        Target(f"sandbox CPU while idling ≤ {IDLE_CPU:.0%} of one core", cpu.show(".1%"), cpu.median <= IDLE_CPU),
    ])
    return section

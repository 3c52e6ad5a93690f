"""Where a proxy's time goes on the meshed path, while a load generator keeps it busy.

Two views, because on two shared cores they disagree:

- ``--cpu`` (the one to trust for CPU): cProfile on a CPU clock inside both proxies over the
  measured window; each function's own CPU time per request, and calls per request.
- default: py-spy samples (wall clock), by own time and by total time. Wall clock counts a
  ``transport.write`` that wakes the peer as long as the peer runs, so writes look larger
  than they cost. py-spy is a development tool: ``pip install py-spy`` first.

    make profile    (or: python -m bench.profile [--cpu] [--seconds 10] [--top 15] [--concurrency 16])
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import uvloop

from bench import loadgen
from bench.measure import BenchError, Section, Settings
from bench.meshed_path import MESHED, meshed_path


def _py_spy() -> str | None:
    """py-spy on PATH, or next to this interpreter (a virtualenv that is not activated)."""
    beside = Path(sys.executable).parent / "py-spy"
    return shutil.which("py-spy") or (str(beside) if beside.exists() else None)


def record(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([_py_spy() or "py-spy", "record", "--pid", str(pid), "--duration", str(int(seconds)),
                             "--rate", "250", "--format", "raw", "--nonblocking", "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def top_entries(collapsed: str, count: int) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    """From py-spy's collapsed stacks: (samples, top by own time, top by total time)."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in collapsed.splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames = [_short(f) for f in stack.split(";")]
        samples += int(n)
        own[frames[-1]] += int(n)
        for frame in set(frames):
            total[frame] += int(n)
    return samples, own.most_common(count), total.most_common(count)


def _short(frame: str) -> str:
    """``handle (proxy/outbound.py:42)`` -> ``handle (proxy/outbound.py)``: lines differ within a function."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path.split('/work/main/', 1)[-1]})"


@dataclass(frozen=True)
class ProxyProfile:
    """One proxy's CPU profile over ``requests`` requests: own CPU seconds and calls per function."""

    requests: int
    total_cpu: float
    rows: list[tuple[float, int, str]]  # (own CPU seconds, calls, function), largest first

    @property
    def calls(self) -> int:
        return sum(r[1] for r in self.rows)


def cpu_profiles(seconds: float, concurrency: int, root: Path) -> dict[str, ProxyProfile]:
    """cProfile on a CPU clock in both proxies of a meshed path, over ``seconds`` of load."""
    import os
    import pstats
    import signal
    import time

    outs = {name: root / f"{name}.prof" for name in ("outbound", "inbound")}
    launcher = lambda name: [sys.executable, "-m", "bench.cpuprofile", str(outs["outbound" if name == "client" else "inbound"])]  # noqa: E731
    with meshed_path(root, launcher, references=False) as (ports, client, server):
        port, target = ports[MESHED].port, ports[MESHED].target
        uvloop.run(loadgen.run(port, target, concurrency, 1.0))  # warm
        for p in (client, server):
            os.kill(p.proc.pid, signal.SIGUSR1)
        result = uvloop.run(loadgen.run(port, target, concurrency, seconds, warmup=0)).check("profiled load")
        for p in (client, server):
            os.kill(p.proc.pid, signal.SIGUSR2)
        for out in outs.values():
            deadline = time.monotonic() + 20
            while not out.exists() and time.monotonic() < deadline:
                time.sleep(0.05)  # the proxy writes its stats between two callbacks
            if not out.exists():
                raise BenchError(f"no profile written to {out} within 20 s")
    profiles = {}
    for name, out in outs.items():
        stats = pstats.Stats(str(out))
        rows = sorted(((tt, nc, _short(f"{fn} ({path}:{line})")) for (path, line, fn), (_cc, nc, tt, _ct, _callers)
                       in stats.stats.items()), reverse=True)  # type: ignore[attr-defined]
        profiles[name] = ProxyProfile(result.completed, stats.total_tt, rows)  # type: ignore[attr-defined]
    return profiles


def profile_lines(profiles: dict[str, ProxyProfile], top: int) -> list[str]:
    lines = []
    for name, p in profiles.items():
        n = p.requests
        lines += [f"{name} proxy: {p.total_cpu / n * 1e6:,.0f} µs of CPU and {p.calls / n:,.0f} calls per request, profiled "
                  f"({n:,} requests; cProfile's own cost inflates every call)", "",
                  "| own CPU per request | calls per request | function |", "|---|---|---|"]
        lines += [f"| {tt / n * 1e6:.1f} µs | {nc / n:.1f} | `{frame}` |" for tt, nc, frame in p.rows[:top]]
        lines.append("")
    return lines


def run(settings: Settings, root: Path) -> Section:
    """For ``make bench``: the top of both proxies' CPU profiles at c=16."""
    section = Section("Where the proxies' CPU goes (cProfile, CPU clock, c=16)")
    profiles = cpu_profiles(1.0 if settings.smoke else 10.0, 16, root)
    for name, p in profiles.items():
        section.figure(f"{name} profiled CPU per request (µs)", p.total_cpu / p.requests * 1e6)
        section.figure(f"{name} calls per request", p.calls / p.requests)
    for line in profile_lines(profiles, 12):
        section.add(line)
    return section


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--cpu", action="store_true", help="cProfile on a CPU clock instead of py-spy's wall-clock samples")
    args = parser.parse_args()
    if args.cpu:
        with tempfile.TemporaryDirectory(prefix="meshdojo-profile-") as tmp:
            profiles = cpu_profiles(args.seconds, args.concurrency, Path(tmp))
        print(f"# meshed path, c={args.concurrency}\n")
        print("\n".join(profile_lines(profiles, args.top)))
        return 0
    if _py_spy() is None:
        print("error: py-spy is not installed: .venv/bin/pip install py-spy", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="meshdojo-profile-") as tmp, meshed_path(Path(tmp), references=False) as (ports, client, server):
        port, target = ports[MESHED].port, ports[MESHED].target
        uvloop.run(loadgen.run(port, target, args.concurrency, 1.0))  # warm
        outs = {"outbound (client) proxy": Path(tmp) / "client.txt", "inbound (server) proxy": Path(tmp) / "server.txt"}
        spies = [record(client.proc.pid, args.seconds, outs["outbound (client) proxy"]),
                 record(server.proc.pid, args.seconds, outs["inbound (server) proxy"])]
        result: list[loadgen.Result] = []
        load = threading.Thread(target=lambda: result.append(uvloop.run(loadgen.run(port, target, args.concurrency,
                                                                                    args.seconds + 1.0))))
        load.start()
        for spy in spies:
            _, err = spy.communicate(timeout=args.seconds + 60)
            if spy.returncode != 0:
                print(f"error: py-spy failed: {err.decode(errors='replace')[-500:]}", file=sys.stderr)
                return 1
        load.join()
        r = result[0].check("profiled load")
        print(f"# meshed path, c={args.concurrency}: {r.rps:,.0f} req/s while sampled (sampling slows it)\n")
        for name, out in outs.items():
            samples, own, total = top_entries(out.read_text(), args.top)
            print(f"## {name}: {samples:,} samples\n")
            print("| own time | function |\n|---|---|")
            for frame, n in own:
                print(f"| {n / samples:.1%} | `{frame}` |")
            print("\n| total time | function |\n|---|---|")
            for frame, n in total:
                print(f"| {n / samples:.1%} | `{frame}` |")
            print()
    return 0


if __name__ == "__main__":
    sys.exit(main())

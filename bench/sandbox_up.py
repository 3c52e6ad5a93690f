"""``make bench`` (sandbox part): wall time of ``meshdojo up`` with both demos until all ready,
then the whole sandbox's CPU while idling with its load generators, and its total RSS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError):
        return 0.0


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def main() -> int:
    idle_window = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    with tempfile.TemporaryDirectory(prefix="meshdojo-bench-") as home:
        env = {**os.environ, "MESHDOJO_HOME": home}
        cli = [sys.executable, "-m", "sandbox.cli"]
        started = time.monotonic()
        subprocess.run([*cli, "up", "--no-tui"], env=env, check=True, capture_output=True, timeout=120)
        up_seconds = time.monotonic() - started
        try:
            st = json.loads(subprocess.run([*cli, "status", "-o", "json"], env=env, check=True, capture_output=True).stdout)
            pids = [st["supervisor"], st["controlplane"]["pid"]] + [g["pid"] for g in st["gateways"]]
            pids += [p for w in st["workloads"] for p in w["pids"].values() if p]
            time.sleep(2)  # let start-up settle before measuring idle (a measurement window, not synchronization)
            before = {p: cpu_seconds(p) for p in pids}
            t0 = time.monotonic()
            time.sleep(idle_window)
            elapsed = time.monotonic() - t0
            cpu = sum(cpu_seconds(p) - before[p] for p in pids) / elapsed
            rss = sum(rss_mb(p) for p in pids)
        finally:
            subprocess.run([*cli, "down"], env=env, capture_output=True, timeout=60)
    print(f"- `meshdojo up` with emojivoto and bookinfo, until all ready: {up_seconds:.1f} s "
          f"({len(st['workloads'])} instances, {len(pids)} processes)")
    print(f"- idle sandbox with its load generators: {cpu:.1%} of one core over {elapsed:.0f} s; total RSS {rss:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

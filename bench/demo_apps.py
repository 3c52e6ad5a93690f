"""Demo apps: keep-alive latency of a demo app's HTTP server, directly, with one connection
sending requests back to back (``hey -c 1``). Two writes per response without TCP_NODELAY cost
40 ms each (Nagle + the client's delayed ACK); one write costs well under a millisecond.

    python -m bench --only demo_apps [--demo-dir DIR]   (another checkout's demo-apps/, to compare)
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from bench.loadgen import run as load
from bench.measure import Section, Settings, Spread
from sandbox.ports import accepting, free_port
from sandbox.processes import spawn, stop_group, wait_until

DEMO_DIR = Path(__file__).resolve().parent.parent / "demo-apps"


def run(settings: Settings, root: Path, demo_dir: Path = DEMO_DIR) -> Section:
    section = Section("Demo apps")
    port = free_port()
    proc = spawn([sys.executable, "emojivoto/app.py", "emoji"], root / "emoji.log",
                 {"PORT": str(port), "BIND_HOST": "127.0.0.1", "PATH": "/usr/bin:/bin"}, cwd=demo_dir)
    try:
        wait_until(lambda: accepting(port), 10, "the emoji app")
        results = [asyncio.run(load(port, "/api/list", 1, settings.seconds, warmup=0.3)).check("emoji /api/list")
                   for _ in range(settings.repeats)]
    finally:
        stop_group(proc)
    p50, rps = Spread.of(r.quantile(0.5) for r in results), Spread.of(r.rps for r in results)
    section.figure("keep-alive p50 ms", p50.median)
    section.add(f"- a demo app (emoji /api/list), one keep-alive connection: p50 {p50.show('.2f', ' ms')}, {rps.show()} req/s")
    return section

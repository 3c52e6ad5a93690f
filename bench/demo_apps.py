"""``make bench`` (demo apps): keep-alive latency of a demo app's HTTP server, directly, with one
connection sending requests back to back (``hey -c 1``). Two writes per response without
TCP_NODELAY cost 40 ms each (Nagle + the client's delayed ACK); one write costs well under a
millisecond.

    python -m bench.demo_apps [--demo-dir DIR] [--requests 300]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

from bench.loadgen import run
from sandbox.ports import accepting, free_port
from sandbox.processes import spawn, stop_group, wait_until

ROOT = Path(__file__).resolve().parent.parent


def measure(demo_dir: Path, seconds: float) -> tuple[float, float]:
    """(p50 ms, requests per second) of emoji's /api/list over one keep-alive connection."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = spawn([sys.executable, "emojivoto/app.py", "emoji"], Path(tmp) / "emoji.log",
                     {"PORT": str(port), "BIND_HOST": "127.0.0.1", "PATH": "/usr/bin:/bin"}, cwd=demo_dir)
        try:
            wait_until(lambda: accepting(port), 10, "the emoji app")
            result = asyncio.run(run(port, "/api/list", 1, seconds, warmup=0.3))
        finally:
            stop_group(proc)
    if result.errors or not result.latencies:
        raise SystemExit(f"the emoji app answered {len(result.latencies)} requests with {result.errors} errors")
    return statistics.median(result.latencies) * 1000, result.rps


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.demo_apps")
    parser.add_argument("--demo-dir", type=Path, default=ROOT / "demo-apps")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    p50, rps = measure(args.demo_dir, args.seconds)
    print(f"- demo app (emoji /api/list), one keep-alive connection: p50 {p50:.2f} ms, {rps:,.0f} req/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

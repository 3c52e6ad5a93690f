"""Where a proxy's time goes on the meshed path: py-spy samples both proxies while a load
generator keeps the path busy at concurrency 16, and the top entries are printed — by own
time (the function on top of the stack) and by total time (anywhere on it).

    make profile            (or: python -m bench.profile [--seconds 10] [--top 15])

py-spy is a development tool, not a dependency: ``pip install py-spy`` first.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import uvloop

from bench import loadgen
from bench.meshed_path import PATHS, meshed_path


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


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    if _py_spy() is None:
        print("error: py-spy is not installed: .venv/bin/pip install py-spy", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="meshdojo-profile-") as tmp, meshed_path(Path(tmp)) as (ports, client, server):
        port, target = ports[PATHS[2]]
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

"""``make bench``: the meshed path against the direct path, in one run.

A tiny upstream app is called directly and through outbound proxy -> mutual TLS -> inbound
proxy -> app, at concurrency 1 and 16. Prints p50/p99 latency, requests per second, the
meshed/direct ratios and the proxies' RSS, as a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import uvloop

from bench import loadgen
from sandbox.processes import spawn, stop_group, wait_until
from tests.meshkit import Mesh, spiffe


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_tls_pipe(root: Path, app_port: int, helpers: list) -> int:
    from bench.tlspipe import make_material

    material = root / "pipe-material"
    material.write_text("\n\n\n".join(make_material()))
    back = spawn([sys.executable, "-m", "bench.tlspipe", "back", str(root / "back.port"), str(app_port), str(material)],
                 root / "back.log")
    helpers.append(back)
    back_port = int(wait_until(lambda: (root / "back.port").exists() and (root / "back.port").read_text(), 10, "pipe back"))
    front = spawn([sys.executable, "-m", "bench.tlspipe", "front", str(root / "front.port"), str(back_port), str(material)],
                  root / "front.log")
    helpers.append(front)
    return int(wait_until(lambda: (root / "front.port").exists() and (root / "front.port").read_text(), 10, "pipe front"))


def with_tap_reader(admin_port: int, run):
    """Run ``run()`` while a thread reads the proxy's tap stream; return its result and the lines read."""
    import threading
    import urllib.request

    count = [0]
    stop = threading.Event()

    def read() -> None:
        request = urllib.request.Request(f"http://127.0.0.1:{admin_port}/tap", headers={"Authorization": "Bearer bench"})
        with urllib.request.urlopen(request, timeout=60) as stream:
            for _line in stream:
                count[0] += 1
                if stop.is_set():
                    return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    wait_until(lambda: count[0] > 0, 10, "the tap to start")  # the hello line
    try:
        return run(), count[0]
    finally:
        stop.set()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per case")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="meshdojo-bench-") as tmp:
        root = Path(tmp)
        mesh = Mesh(root)
        helpers: list = []
        try:
            mesh.start_controlplane()
            app = spawn([sys.executable, "-m", "bench.upstream", str(root / "app.port")], root / "app.log")
            helpers.append(app)
            app_port = int(wait_until(lambda: (root / "app.port").exists() and (root / "app.port").read_text(), 10, "the app"))
            token = root / "tap-token"
            token.write_text("bench")
            server = mesh.start_proxy("bench", "app", app_port, name="server")
            client = mesh.start_proxy("bench", "client", app_port, "--tap-token-file", str(token), name="client")
            mesh.register("bench", "bench-app", "app-0", server.ports["inbound"], spiffe("bench", "app"))
            pipe_port = start_tls_pipe(root, app_port, helpers)
            rows = []
            for concurrency in (1, 16):
                direct = uvloop.run(loadgen.run(app_port, "/", concurrency, args.duration))
                pipe = uvloop.run(loadgen.run(pipe_port, "/", concurrency, args.duration))
                meshed = uvloop.run(loadgen.run(client.ports["outbound"], "http://bench-app/", concurrency, args.duration))
                rows.append((concurrency, direct, pipe, meshed))
            rss = {name: rss_mb(p.proc.pid) for name, p in (("outbound proxy", client), ("inbound proxy", server))}
            tap_off = uvloop.run(loadgen.run(client.ports["outbound"], "http://bench-app/", 16, args.duration))
            tapped, tapped_events = with_tap_reader(client.ports["admin"],
                                                    lambda: uvloop.run(loadgen.run(client.ports["outbound"], "http://bench-app/", 16, args.duration)))
        finally:
            for helper in helpers:
                stop_group(helper)
            mesh.close()

    print("| concurrency | path | p50 ms | p99 ms | req/s | errors |")
    print("|---|---|---|---|---|---|")
    for concurrency, direct, pipe, meshed in rows:
        for name, r in (("direct", direct), ("bare TLS byte pipe pair (reference)", pipe), ("meshed", meshed)):
            print(f"| {concurrency} | {name} | {r.quantile(0.5):.3f} | {r.quantile(0.99):.3f} | {r.rps:,.0f} | {r.errors} |")
    print()
    for concurrency, direct, pipe, meshed in rows:
        print(f"- c={concurrency}: meshed p50 overhead {meshed.quantile(0.5) - direct.quantile(0.5):+.3f} ms "
              f"(TLS pipe: {pipe.quantile(0.5) - direct.quantile(0.5):+.3f} ms); "
              f"p99 overhead {meshed.quantile(0.99) - direct.quantile(0.99):+.3f} ms; "
              f"throughput meshed/direct {meshed.rps / direct.rps:.0%} (TLS pipe/direct {pipe.rps / direct.rps:.0%}, "
              f"meshed/TLS pipe {meshed.rps / pipe.rps:.0%})")
    for name, mb in rss.items():
        print(f"- {name} RSS after the run: {mb:.1f} MB")
    print(f"- tap, c=16 meshed: {tap_off.rps:,.0f} req/s with nobody tapping, {tapped.rps:,.0f} req/s with one tap subscriber "
          f"reading every event ({tapped_events:,} lines): {tapped.rps / tap_off.rps:.0%}")
    failed = sum(d.errors + m.errors for _, d, _, m in rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

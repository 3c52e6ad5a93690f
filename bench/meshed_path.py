"""The meshed path against the direct path, in one run.

A tiny upstream app is called seven ways — directly; through a bare TLS byte-pipe pair (the
floor for any design with two extra processes and a TLS hop); through a compiled HTTP/1 proxy
pair with mutual TLS (``bench.nginxpair``: nginx, what a native data path does); through the
least HTTP/1 relay CPython can run (``bench.callbackrelay``: httptools' callbacks and nothing
else); through the same relay doing the proxy's per-request work with the proxy's own functions
(``bench.workrelay``: what a request path rewritten around callbacks could do at best); through
our HTTP/1 forwarding with none of the request stack's layers (``bench.httpfloor``: what the
proxy's machinery costs before any feature); and meshed: outbound proxy → mutual TLS → inbound
proxy → app — at concurrency 1 and 16, the cases interleaved and each repeated, with the CPU
each relay process spends per request (on the direct path, what the load generator and the app
spend). Then the proxies' RSS after the c=16 runs, and tap's cost: c=16 meshed with nobody
tapping against the same with a reader of every event, checking the reader saw every request.
"""

from __future__ import annotations

import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import uvloop

from bench import loadgen, nginxpair
from bench.measure import (
    BenchError,
    Section,
    Settings,
    Spread,
    Target,
    cores_busy,
    cpu_seconds,
    cpu_ticks,
    memory_mb,
    targets_table,
)
from sandbox.processes import spawn, stop_group, wait_until
from tests.meshkit import Mesh, ProxyProc, spiffe

DIRECT, PIPE, MESHED = "direct", "bare TLS byte pipe pair (reference)", "meshed"
CALLBACKS, FLOOR = "HTTP/1 relay, callbacks only (reference)", "HTTP/1 forwarding, no layers (reference)"
WORK = "HTTP/1 relay, callbacks + the proxy's per-request work (reference)"
NATIVE = "nginx pair, mutual TLS (compiled reference)"
PATHS = (DIRECT, PIPE, NATIVE, CALLBACKS, WORK, FLOOR, MESHED)
C1_OVERHEAD_MS, C16_SHARE, RSS_MB = 0.5, 0.5, 40.0  # the targets


class BenchPath(NamedTuple):
    port: int  # where the load generator sends
    target: str  # its request target
    relays: tuple[int, ...] = ()  # the processes between it and the app (their CPU is the path's cost)
    app: int | None = None  # the app's pid, on the direct path (it and the load generator are the path's cost)


def _material(root: Path) -> Path:
    """The reference pairs' trust anchor, certificate chain and key (made once per run)."""
    from bench.tlspipe import make_material

    material = root / "pipe-material"
    if not material.exists():
        material.write_text("\n\n\n".join(make_material()))
    return material


def start_pair(module: str, root: Path, app_port: int, helpers: list) -> tuple[int, tuple[int, ...]]:
    """A reference relay pair (``bench.tlspipe``, ``bench.callbackrelay`` or ``bench.httpfloor``):
    front → TLS 1.3 → back → the app; the front's port, and both relays' pids."""
    material = _material(root)
    name = module.rpartition(".")[2]
    port_files = {role: root / f"{name}-{role}.port" for role in ("front", "back")}
    upstream, pids = app_port, []
    for role in ("back", "front"):
        relay = spawn([sys.executable, "-m", module, role, str(port_files[role]), str(upstream), str(material)],
                      root / f"{name}-{role}.log")
        helpers.append(relay)
        pids.append(relay.pid)
        upstream = int(wait_until(lambda f=port_files[role]: f.exists() and f.read_text(), 10, f"{name} {role}"))
    return upstream, tuple(pids)


class TapReader:
    """A thread reading a proxy's tap stream, counting the requests it saw end (and any it was
    told were dropped)."""

    def __init__(self, admin_port: int) -> None:
        self.ended = 0
        self.dropped = 0
        self.lines = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(admin_port,), daemon=True)
        self._thread.start()
        wait_until(lambda: self.lines > 0, 10, "the tap to start")  # the hello line

    def _read(self, admin_port: int) -> None:
        import json

        request = urllib.request.Request(f"http://127.0.0.1:{admin_port}/tap", headers={"Authorization": "Bearer bench"})
        with urllib.request.urlopen(request, timeout=60) as stream:
            for line in stream:
                self.lines += 1
                event = json.loads(line)
                if event.get("type") == "end":
                    self.ended += 1
                elif event.get("type") == "dropped":
                    self.dropped += event["requests"]
                if self._stop.is_set():
                    return

    def stop(self) -> None:
        self._stop.set()


@contextmanager
def meshed_path(root: Path, launcher: Callable[[str], list[str]] | None = None, references: bool = True
                ) -> Iterator[tuple[dict[str, BenchPath], ProxyProc, ProxyProc]]:
    """The paths to one upstream app ({path: where to send, and what runs on the way}), and the
    client and server proxies (started by ``launcher(name)`` instead of ``python -m proxy`` when
    given); without ``references``, only the direct and meshed paths (what a profile needs).
    Every process stopped on exit."""
    mesh = Mesh(root)
    helpers: list = []
    try:
        mesh.start_controlplane()
        app = spawn([sys.executable, "-m", "bench.upstream", str(root / "app.port")], root / "app.log")
        helpers.append(app)
        app_port = int(wait_until(lambda: (root / "app.port").exists() and (root / "app.port").read_text(), 10, "the app"))
        token = root / "tap-token"
        token.write_text("bench")
        server = mesh.start_proxy("bench", "app", app_port, name="server", launcher=launcher("server") if launcher else None)
        client = mesh.start_proxy("bench", "client", app_port, "--tap-token-file", str(token), name="client",
                                  launcher=launcher("client") if launcher else None)
        mesh.register("bench", "bench-app", "app-0", server.ports["inbound"], spiffe("bench", "app"))
        paths = {DIRECT: BenchPath(app_port, "/", app=app.pid),
                 MESHED: BenchPath(client.ports["outbound"], "http://bench-app/", (client.proc.pid, server.proc.pid))}
        if references:
            pipe, pipe_relays = start_pair("bench.tlspipe", root, app_port, helpers)
            callbacks, callback_relays = start_pair("bench.callbackrelay", root, app_port, helpers)
            work, work_relays = start_pair("bench.workrelay", root, app_port, helpers)
            floor, floor_relays = start_pair("bench.httpfloor", root, app_port, helpers)
            native, native_relays = nginxpair.start_pair(root, app_port, tuple(_material(root).read_text().split("\n\n\n")), helpers)
            paths.update({PIPE: BenchPath(pipe, "/", pipe_relays), NATIVE: BenchPath(native, "http://bench-app/", native_relays),
                          CALLBACKS: BenchPath(callbacks, "http://bench-app/", callback_relays),
                          WORK: BenchPath(work, "http://bench-app/", work_relays),
                          FLOOR: BenchPath(floor, "http://bench-app/", floor_relays)})
        yield paths, client, server
    finally:
        for helper in helpers:
            stop_group(helper)
        mesh.close()


def run(settings: Settings, root: Path) -> Section:
    section = Section("Meshed path")
    with meshed_path(root) as (ports, client, server):
        at_start = {"outbound": memory_mb(client.proc.pid), "inbound": memory_mb(server.proc.pid)}
        relay_cpu: dict[tuple[int, str], list[float]] = {}  # µs of CPU per request, per relay process
        ends_cpu: dict[int, list[float]] = {}  # µs of CPU per request, load generator and app, direct path
        busy: dict[tuple[int, str], list[float]] = {}  # the machine's cores busy on average, per case

        def measure(path: str, concurrency: int) -> loadgen.Result:
            port, target, relays, app = ports[path]
            before, own_before = sum(cpu_seconds(pid) for pid in relays), time.process_time()
            app_before = cpu_seconds(app) if app is not None else 0.0
            machine_before = cpu_ticks()
            result = uvloop.run(loadgen.run(port, target, concurrency, settings.seconds)).check(f"{path}, c={concurrency}")
            busy.setdefault((concurrency, path), []).append(cores_busy(machine_before, cpu_ticks()))
            # the warm-up's requests are in both the CPU and the count
            if relays:
                used = sum(cpu_seconds(pid) for pid in relays) - before
                relay_cpu.setdefault((concurrency, path), []).append(used / result.completed / len(relays) * 1e6)
            if app is not None:
                used = time.process_time() - own_before + cpu_seconds(app) - app_before
                ends_cpu.setdefault(concurrency, []).append(used / result.completed * 1e6)
            return result

        results: dict[tuple[int, str], list[loadgen.Result]] = {}
        for _ in range(settings.repeats):  # interleaved, so drift on a shared machine hits every case alike
            for concurrency in (1, 16):
                for path in PATHS:
                    results.setdefault((concurrency, path), []).append(measure(path, concurrency))
        cpu = {case: Spread.of(values) for case, values in relay_cpu.items()}  # before the tap runs add theirs
        ends = {concurrency: Spread.of(values) for concurrency, values in ends_cpu.items()}
        cores = {case: Spread.of(values) for case, values in busy.items()}
        after = {"outbound": memory_mb(client.proc.pid), "inbound": memory_mb(server.proc.pid)}

        untapped, tapped, seen = [], [], []
        for _ in range(settings.repeats):
            untapped.append(measure(MESHED, 16))
            reader = TapReader(client.ports["admin"])
            result = measure(MESHED, 16)
            wait_until(lambda r=reader, n=result.completed: r.ended + r.dropped >= n, 30, "the tap reader to see every request")
            reader.stop()
            if reader.ended + reader.dropped != result.completed:
                raise BenchError(f"tap: {result.completed} requests, the reader saw {reader.ended} end and {reader.dropped} dropped")
            tapped.append(result)
            seen.append((reader.ended, reader.dropped, result.completed))

    section.add(f"Each case: {settings.repeats} × {settings.seconds:g} s after a 0.5 s warm-up, interleaved; median (min–max).")
    section.add()
    section.add("| concurrency | path | p50 ms | p99 ms | req/s | CPU per request, each relay (direct: load generator + app) "
                "| cores busy |")
    section.add("|---|---|---|---|---|---|---|")
    rps: dict[tuple[int, str], Spread] = {}
    p50: dict[tuple[int, str], Spread] = {}
    for (concurrency, path), rs in results.items():
        rps[concurrency, path] = Spread.of(r.rps for r in rs)
        p50[concurrency, path] = Spread.of(r.quantile(0.5) for r in rs)
        p99 = Spread.of(r.quantile(0.99) for r in rs)
        section.figure(f"c={concurrency} {path} req/s", rps[concurrency, path].median)
        section.figure(f"c={concurrency} {path} p50 ms", p50[concurrency, path].median)
        relay = cpu[concurrency, path] if path != DIRECT else ends[concurrency]
        section.figure(f"c={concurrency} {path} {'relay' if path != DIRECT else 'load generator + app'} CPU us", relay.median)
        section.figure(f"c={concurrency} {path} cores busy", cores[concurrency, path].median)
        section.add(f"| {concurrency} | {path} | {p50[concurrency, path].show('.3f')} | {p99.show('.3f')} | "
                    f"{rps[concurrency, path].show()} | {relay.show('.0f', ' µs')} | {cores[concurrency, path].show('.2f')} |")
    section.add()
    for concurrency in (1, 16):
        # ratios per repeat (cases of one repeat ran back to back), then their spread
        def share(path: str, c: int = concurrency) -> Spread:
            return Spread.of(r.rps / d.rps for r, d in zip(results[c, path], results[c, DIRECT], strict=True))

        def overhead(path: str, c: int = concurrency) -> Spread:
            return Spread.of(r.quantile(0.5) - d.quantile(0.5) for r, d in zip(results[c, path], results[c, DIRECT], strict=True))

        section.figure(f"c={concurrency} meshed/direct", share(MESHED).median)
        section.figure(f"c={concurrency} meshed p50 overhead ms", overhead(MESHED).median)
        section.figure(f"c={concurrency} no-layers/direct", share(FLOOR).median)
        section.figure(f"c={concurrency} no-layers p50 overhead ms", overhead(FLOOR).median)
        section.figure(f"c={concurrency} callbacks-only/direct", share(CALLBACKS).median)
        section.figure(f"c={concurrency} callbacks-only p50 overhead ms", overhead(CALLBACKS).median)
        section.figure(f"c={concurrency} callbacks+work/direct", share(WORK).median)
        section.figure(f"c={concurrency} callbacks+work p50 overhead ms", overhead(WORK).median)
        section.figure(f"c={concurrency} nginx/direct", share(NATIVE).median)
        section.figure(f"c={concurrency} nginx p50 overhead ms", overhead(NATIVE).median)
        section.add(f"- c={concurrency}: throughput against direct: meshed {share(MESHED).show('.0%')}, HTTP/1 forwarding with "
                    f"no layers {share(FLOOR).show('.0%')}, HTTP/1 relay with callbacks and the proxy's per-request work "
                    f"{share(WORK).show('.0%')}, HTTP/1 relay with callbacks only {share(CALLBACKS).show('.0%')}, "
                    f"nginx pair {share(NATIVE).show('.0%')}, TLS pipe {share(PIPE).show('.0%')}; "
                    f"p50 overhead: meshed {overhead(MESHED).show('+.3f', ' ms')}, "
                    f"no layers {overhead(FLOOR).show('+.3f', ' ms')}, callbacks and per-request work "
                    f"{overhead(WORK).show('+.3f', ' ms')}, callbacks only {overhead(CALLBACKS).show('+.3f', ' ms')}, "
                    f"nginx pair {overhead(NATIVE).show('+.3f', ' ms')}, TLS pipe {overhead(PIPE).show('+.3f', ' ms')}")
        pipe_cpu = cpu[concurrency, PIPE].median
        section.figure(f"c={concurrency} no-layers/pipe relay CPU", cpu[concurrency, FLOOR].median / pipe_cpu)
        section.add(f"  - CPU per request in each relay, against the TLS pipe's: nginx ×{cpu[concurrency, NATIVE].median / pipe_cpu:.1f}, "
                    f"HTTP/1 relay with callbacks only "
                    f"×{cpu[concurrency, CALLBACKS].median / pipe_cpu:.1f}, HTTP/1 relay with callbacks and the proxy's "
                    f"per-request work ×{cpu[concurrency, WORK].median / pipe_cpu:.1f}, HTTP/1 forwarding with no layers "
                    f"×{cpu[concurrency, FLOOR].median / pipe_cpu:.1f}, meshed proxies ×{cpu[concurrency, MESHED].median / pipe_cpu:.1f}")
    for direction, memory in after.items():
        section.figure(f"{direction} proxy RSS MB", memory.resident)
        section.figure(f"{direction} proxy private MB", memory.private)
    section.add(f"- proxies' resident memory: outbound {at_start['outbound'].show()} when started, "
                f"{after['outbound'].show()} after the c=16 runs; inbound {at_start['inbound'].show()} when started, "
                f"{after['inbound'].show()} after the c=16 runs")
    off, on = Spread.of(r.rps for r in untapped), Spread.of(r.rps for r in tapped)
    section.figure("tap on/off", on.median / off.median)
    section.add(f"- tap, c=16 meshed: {off.show()} req/s with nobody tapping, {on.show()} req/s with one subscriber reading "
                f"every event ({on.median / off.median:.0%}); the reader saw {sum(s[0] for s in seen):,} of "
                f"{sum(s[2] for s in seen):,} requests end, {sum(s[1] for s in seen):,} reported dropped")

    c1 = section.figures["c=1 meshed p50 overhead ms"]
    c16 = section.figures["c=16 meshed/direct"]
    worst_rss = max(memory.resident for memory in after.values())
    targets_table(section, [
        Target(f"meshed p50 overhead ≤ +{C1_OVERHEAD_MS} ms at c=1", f"{c1:+.3f} ms", c1 <= C1_OVERHEAD_MS),
        Target(f"meshed throughput ≥ {C16_SHARE:.0%} of direct at c=16", f"{c16:.0%}", c16 >= C16_SHARE),
        Target(f"proxy RSS ≤ {RSS_MB:.0f} MB after the c=16 runs", f"{worst_rss:.1f} MB", worst_rss <= RSS_MB),
    ])
    return section

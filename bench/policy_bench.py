"""Traffic policy: how fast an apply reaches the proxies, and what idle policy layers cost.

1. Propagation: simulated proxies (100) watch the control plane's policy stream over mutual
   TLS; each apply is timed from the moment ``POST /v1/policies`` returns until the last of
   them has received the snapshot that contains it. A watcher that never gets it fails the
   benchmark (it is not recorded as a number).
2. Cost of the policy layers: the meshed path at concurrency 1 with an HTTPRoute (retry +
   timeouts), a RetryBudget and a CircuitBreaker that never trigger, against the same path
   with no policy, interleaved and repeated.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import aiohttp
import uvloop

from bench import loadgen
from bench.measure import BenchError, Section, Settings, Spread
from controlplane import ca
from controlplane.spiffe import SpiffeId
from controlplane.sslcontext import client_context
from sandbox.processes import spawn, stop_group, wait_until
from tests.meshkit import Mesh, spiffe

WATCHERS, APPLIES = 100, 40
PROPAGATION_TIMEOUT = 5.0


def fault_doc(i: int) -> dict:
    return {"apiVersion": "policy.meshdojo.dev/v1alpha1", "kind": "FaultInjection",
            "metadata": {"name": "bench", "namespace": "bench"},
            "spec": {"targetRef": {"name": "bench-app"}, "abort": {"httpStatus": 503, "percentage": {"value": i % 50}}}}


async def propagation(mesh: Mesh, watchers: int, applies: int) -> list[float]:
    anchor = mesh.anchor.read_text()
    me = SpiffeId("bench", "watcher")
    key = ca.new_key()
    token = mesh.token("bench", "watcher")
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{mesh.mesh_url}/v1/certify", json={"csr": ca.csr_pem(ca.make_csr(me, key)), "token": token},
                                ssl=client_context(anchor)) as rsp:
            chain = (await rsp.json())["certificateChainPEM"]
    ctx = client_context(anchor, chain, ca.key_pem(key))
    seen: list[dict[int, float]] = [{} for _ in range(watchers)]
    ready = asyncio.Event()
    complete = asyncio.Event()  # every watcher has the snapshot with the marker we wait for
    waiting_for: list[int] = [-1]
    connected = 0

    async def watch(i: int, session: aiohttp.ClientSession) -> None:
        nonlocal connected
        async with session.get(f"{mesh.mesh_url}/v1/policies/watch", ssl=ctx, timeout=aiohttp.ClientTimeout(total=None)) as rsp:
            connected += 1
            if connected == watchers:
                ready.set()
            async for line in rsp.content:
                event = json.loads(line)
                if event.get("type") == "snapshot":
                    for resource in event["resources"]:
                        seen[i].setdefault(resource["document"]["spec"]["abort"]["percentage"]["value"], time.monotonic())
                    if all(waiting_for[0] in s for s in seen):
                        complete.set()

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        tasks = [asyncio.ensure_future(watch(i, session)) for i in range(watchers)]  # noqa: TID251 - benchmark clients
        await asyncio.wait_for(ready.wait(), 30)
        delays = []
        for i in range(1, applies + 1):
            marker = i % 50
            for s in seen:
                s.pop(marker, None)
            waiting_for[0] = marker
            complete.clear()
            await asyncio.to_thread(mesh.call, "POST", "/v1/policies",
                                    {"documents": [{"source": "bench", "index": 0, "document": fault_doc(i)}]})
            returned = time.monotonic()
            try:
                await asyncio.wait_for(complete.wait(), PROPAGATION_TIMEOUT)
            except TimeoutError:
                missing = sum(1 for s in seen if marker not in s)
                raise BenchError(f"policy propagation: {missing} of {watchers} watchers did not get apply {i} "
                                 f"within {PROPAGATION_TIMEOUT:g} s") from None
            delays.append(max(s[marker] for s in seen) - returned)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return delays


POLICIES = [
    {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "r", "namespace": "bench"},
     "spec": {"parentRefs": [{"kind": "Service", "name": "bench-app"}],
              "rules": [{"retry": {"codes": [503], "attempts": 2}, "timeouts": {"request": "5s", "backendRequest": "2s"}}]}},
    {"apiVersion": "policy.meshdojo.dev/v1alpha1", "kind": "RetryBudget", "metadata": {"name": "b", "namespace": "bench"},
     "spec": {"targetRef": {"name": "bench-app"}}},
    {"apiVersion": "policy.meshdojo.dev/v1alpha1", "kind": "CircuitBreaker", "metadata": {"name": "c", "namespace": "bench"},
     "spec": {"targetRef": {"name": "bench-app"}}},
]


def run(settings: Settings, root: Path) -> Section:
    section = Section("Traffic policy")
    watchers, applies = (10, 3) if settings.smoke else (WATCHERS, APPLIES)
    mesh = Mesh(root)
    helpers = []
    try:
        mesh.start_controlplane()
        delays = uvloop.run(propagation(mesh, watchers, applies))
        app = spawn([sys.executable, "-m", "bench.upstream", str(root / "app.port")], root / "app.log")
        helpers.append(app)
        app_port = int(wait_until(lambda: (root / "app.port").exists() and (root / "app.port").read_text(), 10, "the app"))
        mesh.call("DELETE", "/v1/policies/FaultInjection/bench/bench")
        server = mesh.start_proxy("bench", "app", app_port, name="server")
        client = mesh.start_proxy("bench", "client", app_port, name="client")
        mesh.register("bench", "bench-app", "app-0", server.ports["inbound"], spiffe("bench", "app"))
        plain, layered = [], []
        for _ in range(settings.repeats):  # interleaved: without, then with the policies
            wait_until(lambda: not client.config()["policies"]["resources"], 5, "the policies to be gone")
            plain.append(uvloop.run(loadgen.run(client.ports["outbound"], "http://bench-app/", 1, settings.seconds)).check("no policy"))
            mesh.call("POST", "/v1/policies", {"documents": [{"source": "bench", "index": i, "document": d} for i, d in enumerate(POLICIES)]})
            wait_until(lambda: len(client.config()["policies"]["resources"]) == 3, 5, "the policies to arrive")
            layered.append(uvloop.run(loadgen.run(client.ports["outbound"], "http://bench-app/", 1, settings.seconds)).check("policies"))
            for d in POLICIES:
                mesh.call("DELETE", f"/v1/policies/{d['kind']}/bench/{d['metadata']['name']}")
    finally:
        for helper in helpers:
            stop_group(helper)
        mesh.close()
    ordered = sorted(delays)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    section.figure("propagation p50 ms", statistics.median(delays) * 1000)
    section.figure("propagation p99 ms", p99 * 1000)
    section.add(f"- policy propagation to {watchers} watching clients over mTLS, {applies} applies: "
                f"p50 {statistics.median(delays) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max {max(delays) * 1000:.1f} ms "
                f"(target: p99 ≤ 1 s — {'met' if p99 <= 1.0 else '**missed**'})")
    base, with_layers = Spread.of(r.quantile(0.5) for r in plain), Spread.of(r.quantile(0.5) for r in layered)
    added = Spread.of(w.quantile(0.5) - p.quantile(0.5) for p, w in zip(plain, layered, strict=True))
    section.figure("idle layers added p50 ms", added.median)
    section.add(f"- meshed path at c=1, no policy: p50 {base.show('.3f', ' ms')}, "
                f"{Spread.of(r.rps for r in plain).show()} req/s")
    section.add(f"- same with a route (retry + timeouts), a RetryBudget and a CircuitBreaker, none triggering: "
                f"p50 {with_layers.show('.3f', ' ms')}, {Spread.of(r.rps for r in layered).show()} req/s; "
                f"added p50 {added.show('+.3f', ' ms')}")
    return section

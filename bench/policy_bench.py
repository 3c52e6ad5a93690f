"""``make bench`` (traffic policy part).

1. Propagation: 100 simulated proxies watch the control plane's policy stream over mutual TLS;
   each apply is timed from the moment ``POST /v1/policies`` returns until the last of the 100
   has received the snapshot that contains it. p50/p99 over repeated applies.
2. Cost of the policy layers: the meshed path with an HTTPRoute (retry + timeouts), a
   RetryBudget and a CircuitBreaker that never trigger, against the same path with no policy,
   at concurrency 1, in the same run.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import uvloop

from bench import loadgen
from controlplane import ca
from controlplane.spiffe import SpiffeId
from controlplane.sslcontext import client_context
from sandbox.processes import spawn, stop_group, wait_until
from tests.meshkit import Mesh, spiffe

WATCHERS, APPLIES = 100, 40


def fault_doc(i: int) -> dict:
    return {"apiVersion": "policy.meshdojo.dev/v1alpha1", "kind": "FaultInjection",
            "metadata": {"name": "bench", "namespace": "bench"},
            "spec": {"targetRef": {"name": "bench-app"}, "abort": {"httpStatus": 503, "percentage": {"value": i % 50}}}}


async def propagation(mesh: Mesh) -> list[float]:
    anchor = mesh.anchor.read_text()
    me = SpiffeId("bench", "watcher")
    key = ca.new_key()
    token = mesh.token("bench", "watcher")
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{mesh.mesh_url}/v1/certify", json={"csr": ca.csr_pem(ca.make_csr(me, key)), "token": token},
                                ssl=client_context(anchor)) as rsp:
            chain = (await rsp.json())["certificateChainPEM"]
    ctx = client_context(anchor, chain, ca.key_pem(key))
    seen: list[dict[int, float]] = [{} for _ in range(WATCHERS)]
    ready = asyncio.Event()
    complete = asyncio.Event()  # every watcher has the snapshot with the marker we wait for
    waiting_for: list[int] = [-1]
    connected = 0

    async def watch(i: int, session: aiohttp.ClientSession) -> None:
        nonlocal connected
        async with session.get(f"{mesh.mesh_url}/v1/policies/watch", ssl=ctx, timeout=aiohttp.ClientTimeout(total=None)) as rsp:
            connected += 1
            if connected == WATCHERS:
                ready.set()
            async for line in rsp.content:
                event = json.loads(line)
                if event.get("type") == "snapshot":
                    for resource in event["resources"]:
                        seen[i].setdefault(resource["document"]["spec"]["abort"]["percentage"]["value"], time.monotonic())
                    if all(waiting_for[0] in s for s in seen):
                        complete.set()

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        tasks = [asyncio.ensure_future(watch(i, session)) for i in range(WATCHERS)]  # noqa: TID251 - benchmark clients
        await asyncio.wait_for(ready.wait(), 30)
        delays = []
        for i in range(1, APPLIES + 1):
            marker = i % 50
            for s in seen:
                s.pop(marker, None)
            waiting_for[0] = marker
            complete.clear()
            await asyncio.to_thread(mesh.call, "POST", "/v1/policies",
                                    {"documents": [{"source": "bench", "index": 0, "document": fault_doc(i)}]})
            returned = time.monotonic()
            try:
                await asyncio.wait_for(complete.wait(), 5)
            except TimeoutError:
                pass
            delays.append(max(s.get(marker, returned + 5) for s in seen) - returned)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return delays


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="meshdojo-bench-") as tmp:
        root = Path(tmp)
        mesh = Mesh(root)
        helpers = []
        try:
            mesh.start_controlplane()
            delays = uvloop.run(propagation(mesh))
            app = spawn([sys.executable, "-m", "bench.upstream", str(root / "app.port")], root / "app.log")
            helpers.append(app)
            app_port = int(wait_until(lambda: (root / "app.port").exists() and (root / "app.port").read_text(), 10, "the app"))
            mesh.call("DELETE", "/v1/policies/FaultInjection/bench/bench")
            server = mesh.start_proxy("bench", "app", app_port, name="server")
            client = mesh.start_proxy("bench", "client", app_port, name="client")
            mesh.register("bench", "bench-app", "app-0", server.ports["inbound"], spiffe("bench", "app"))
            plain = uvloop.run(loadgen.run(client.ports["outbound"], "http://bench-app/", 1, 5))
            policies = [
                {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "r", "namespace": "bench"},
                 "spec": {"parentRefs": [{"kind": "Service", "name": "bench-app"}],
                          "rules": [{"retry": {"codes": [503], "attempts": 2}, "timeouts": {"request": "5s", "backendRequest": "2s"}}]}},
                {"apiVersion": "policy.meshdojo.dev/v1alpha1", "kind": "RetryBudget", "metadata": {"name": "b", "namespace": "bench"},
                 "spec": {"targetRef": {"name": "bench-app"}}},
                {"apiVersion": "policy.meshdojo.dev/v1alpha1", "kind": "CircuitBreaker", "metadata": {"name": "c", "namespace": "bench"},
                 "spec": {"targetRef": {"name": "bench-app"}}},
            ]
            mesh.call("POST", "/v1/policies", {"documents": [{"source": "bench", "index": i, "document": d} for i, d in enumerate(policies)]})
            wait_until(lambda: len(client.config()["policies"]["resources"]) == 3, 5, "the policies to arrive")
            layered = uvloop.run(loadgen.run(client.ports["outbound"], "http://bench-app/", 1, 5))
        finally:
            for helper in helpers:
                stop_group(helper)
            mesh.close()
    ordered = sorted(delays)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    print(f"- policy propagation to {WATCHERS} watching clients over mTLS, {APPLIES} applies: "
          f"p50 {statistics.median(delays) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max {max(delays) * 1000:.1f} ms")
    print(f"- meshed path at concurrency 1, no policy: p50 {plain.quantile(0.5):.3f} ms, p99 {plain.quantile(0.99):.3f} ms, "
          f"{plain.rps:,.0f} req/s")
    print(f"- same with route (retry + timeouts) + RetryBudget + CircuitBreaker, none triggering: p50 {layered.quantile(0.5):.3f} ms, "
          f"p99 {layered.quantile(0.99):.3f} ms, {layered.rps:,.0f} req/s; added p50 {layered.quantile(0.5) - plain.quantile(0.5):+.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())

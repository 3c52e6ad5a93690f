"""Istio's egress tasks through real proxies, then with the learner's commands in the local
sandbox: a host outside the mesh is passed through by default (ALLOW_ANY), refused under a
Sidecar's REGISTRY_ONLY, and reached again through a ServiceEntry — each request's fate says
which, and the metrics name it with bounded labels."""

from __future__ import annotations

import asyncio
import json
import socket

import aiohttp
import pytest
from aiohttp import web

from sandbox.processes import wait_until
from tests.apps import plain_http_server, serve_app
from tests.test_faults_e2e import until
from tests.test_traffic_e2e import apply, doc, fetch, many

DEBUG = {"x-meshdojo-debug": "1"}


@pytest.fixture
async def outside_port():
    """A server outside the mesh (no proxy, not registered): it says which headers reached it."""

    async def handle(request: web.Request) -> web.Response:
        if request.path.startswith("/delay/"):  # httpbin's /delay/N, in milliseconds here
            await asyncio.sleep(int(request.path.rsplit("/", 1)[1]) / 1000)
        return web.json_response({"served_by": "outside", "path": request.path_qs, "host": request.host,
                                  "headers": sorted(h.lower() for h in request.headers)})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner, port = await serve_app(app)
    try:
        yield port
    finally:
        await runner.cleanup()


def sidecar(mode: str, ns: str = "emojivoto", **spec) -> dict:
    return doc("Sidecar", "egress", {"outboundTrafficPolicy": {"mode": mode}, **spec}, ns)


async def test_passthrough_then_registry_only_then_a_service_entry(emoji_mesh, outside_port):
    mesh, _server, client = emoji_mesh
    outside = f"http://127.0.0.1:{outside_port}/get?x=1"
    async with aiohttp.ClientSession() as session:
        # ALLOW_ANY, the default: straight through, in plain HTTP, with none of the mesh's headers
        status, headers, body = await fetch(session, client.outbound, outside, headers=DEBUG)
        assert status == 200, body
        seen = json.loads(body)
        assert seen["served_by"] == "outside" and seen["path"] == "/get?x=1"
        assert not [h for h in seen["headers"] if h.startswith(("l5d-", "x-meshdojo-client"))], seen["headers"]
        assert "egress=passthrough: 127.0.0.1 is not a Service of the mesh (outbound traffic policy ALLOW_ANY, the default)" \
            in headers["x-meshdojo-fate"]
        metrics = client.metrics()
        assert 'dst_service="PassthroughCluster"' in metrics and f"127.0.0.1:{outside_port}" not in metrics.split("# HELP proxy_")[0]

        # a loop back into this proxy is refused, never forwarded
        status, headers, body = await fetch(session, client.outbound, f"http://127.0.0.1:{client.ports['outbound']}/")
        assert status == 400 and "own listener" in body

        # nothing there: the error says the request left the mesh (a mistyped Service name ends the same way)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            closed = probe.getsockname()[1]
        status, headers, body = await fetch(session, client.outbound, f"http://127.0.0.1:{closed}/")
        assert status == 502 and headers["x-meshdojo-error"] == "connect_failed"
        assert f"cannot connect to 127.0.0.1:{closed}" in body and "'127.0.0.1' is not a Service of the mesh, so the request " \
            "went outside it (passthrough); check the name with 'meshdojo stat svc'" in body

        # Istio's REGISTRY_ONLY (a Sidecar for the namespace): only the mesh's Services
        apply(mesh, sidecar("REGISTRY_ONLY"))
        status, headers, body = await until(lambda: fetch(session, client.outbound, outside, headers=DEBUG),
                                            lambda r: r[0] == 502, "the outside host to be refused")
        assert headers["x-meshdojo-error"] == "egress_blocked"
        assert (f"127.0.0.1:{outside_port} is not in the mesh's registry and the outbound traffic policy is REGISTRY_ONLY "
                f"(Sidecar emojivoto/egress): add a ServiceEntry for 127.0.0.1 (port {outside_port})") in body
        assert (await fetch(session, client.outbound, "http://emoji/"))[0] == 200  # the mesh's own Services still answer
        assert 'dst_service="BlackHoleCluster"' in client.metrics()

        # a ServiceEntry names the outside host: reachable again, by that name, and labelled with it
        apply(mesh, sidecar("REGISTRY_ONLY"), doc("ServiceEntry", "outside", {
            "hosts": ["outside.example"], "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
            "resolution": "STATIC", "endpoints": [{"address": "127.0.0.1", "ports": {"http": outside_port}}]}, "default"))
        status, headers, body = await until(lambda: fetch(session, client.outbound, "http://outside.example/entry", headers=DEBUG),
                                            lambda r: r[0] == 200, "the ServiceEntry's host to answer")
        seen = json.loads(body)
        assert seen["path"] == "/entry" and seen["host"] == "outside.example"
        assert "egress=ServiceEntry default/outside" in headers["x-meshdojo-fate"]
        assert 'dst_namespace="default",dst_service="outside.example"' in client.metrics()
        status, _headers, body = await fetch(session, client.outbound, "http://outside.example:8080/")
        assert status == 502 and "ServiceEntry default/outside names outside.example but not port 8080" in body

        # Sidecar gone: ALLOW_ANY again
        status, _body = mesh.call("DELETE", "/v1/policies/Sidecar/emojivoto/egress")
        assert status == 200, _body
        await until(lambda: fetch(session, client.outbound, outside), lambda r: r[0] == 200, "passthrough again")


async def test_a_sidecar_for_other_workloads_leaves_this_one_alone(emoji_mesh, outside_port):
    """A Sidecar with a workloadSelector applies only to the pods it selects; a namespace-wide
    one in meshdojo-system is the mesh's default, and a more specific one wins over it."""
    mesh, _server, client = emoji_mesh
    outside = f"http://127.0.0.1:{outside_port}/"
    apply(mesh, sidecar("REGISTRY_ONLY", workloadSelector={"labels": {"app": "somebody-else"}}))
    async with aiohttp.ClientSession() as session:
        await until(lambda: fetch(session, client.outbound, "http://emoji/", headers=DEBUG), lambda r: r[0] == 200, "the mesh")
        assert (await fetch(session, client.outbound, outside))[0] == 200
        apply(mesh, sidecar("REGISTRY_ONLY", ns="meshdojo-system"))  # the mesh-wide default
        _status, headers, body = await until(lambda: fetch(session, client.outbound, outside), lambda r: r[0] == 502,
                                             "the mesh-wide Sidecar to refuse it")
        assert "(Sidecar meshdojo-system/egress)" in body
        apply(mesh, sidecar("REGISTRY_ONLY", ns="meshdojo-system"), sidecar("ALLOW_ANY"))  # the namespace's is more specific
        await until(lambda: fetch(session, client.outbound, outside), lambda r: r[0] == 200, "the namespace's Sidecar to win")


ISTIO_ROUTE = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "slowbin-timeout", "namespace": "emojivoto"},
               "spec": {"hosts": ["slowbin.example"], "http": [{"timeout": "300ms", "route": [{"destination": {"host": "slowbin.example"},
                                                                                              "weight": 100}]}]}}


@pytest.mark.parametrize("kind", ["HTTPRoute", "VirtualService"])
async def test_a_route_on_a_service_entry_times_out_calls_outside_the_mesh(emoji_mesh, outside_port, kind):
    """Istio's "manage traffic to external services": a VirtualService for the entry's host, as
    the task writes it, or an HTTPRoute whose parent is the ServiceEntry, sets a timeout on
    requests to its host."""
    mesh, _server, client = emoji_mesh
    entry = doc("ServiceEntry", "slowbin", {"hosts": ["slowbin.example"], "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
                                            "resolution": "STATIC",
                                            "endpoints": [{"address": "127.0.0.1", "ports": {"http": outside_port}}]})
    route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "slowbin-timeout", "namespace": "emojivoto"},
             "spec": {"parentRefs": [{"kind": "ServiceEntry", "group": "networking.istio.io", "name": "slowbin"}],
                      "rules": [{"timeouts": {"request": "300ms"}}]}} if kind == "HTTPRoute" else ISTIO_ROUTE
    apply(mesh, entry, route)
    async with aiohttp.ClientSession() as session:
        status, headers, body = await until(lambda: fetch(session, client.outbound, "http://slowbin.example/delay/2000", headers=DEBUG),
                                            lambda r: r[0] == 504, "the route's timeout")
        assert "egress=ServiceEntry emojivoto/slowbin" in headers["x-meshdojo-fate"]
        assert "route=emojivoto/slowbin-timeout#0" in headers["x-meshdojo-fate"] and "timeout of 0.3s" in body
        assert (await fetch(session, client.outbound, "http://slowbin.example/delay/10"))[0] == 200  # under the timeout
    metrics = client.metrics()
    routed = [line for line in metrics.splitlines() if line.startswith("route_response_total{") and "slowbin-timeout" in line]
    assert routed and all('dst="slowbin.example"' in line for line in routed), routed  # the host, not a made-up Service name
    assert "slowbin.example.emojivoto.svc" not in metrics


ISTIO_RULE = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "twice", "namespace": "emojivoto"},
              "spec": {"host": "twice.example", "trafficPolicy": {"outlierDetection": {"consecutive5xxErrors": 2, "baseEjectionTime": "30s"}}}}


@pytest.mark.parametrize("kind", ["CircuitBreaker", "DestinationRule"])
async def test_a_circuit_breaker_on_a_service_entry_ejects_the_hosts_dead_endpoint(emoji_mesh, outside_port, kind):
    """A DestinationRule's outlierDetection for a host outside the mesh — Istio's own, or a
    CircuitBreaker whose target is the ServiceEntry: of the entry's two endpoints, the dead one
    is ejected."""
    mesh, _server, client = emoji_mesh
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    entry = doc("ServiceEntry", "twice", {"hosts": ["twice.example"], "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
                                          "resolution": "STATIC", "endpoints": [{"address": "127.0.0.1", "ports": {"http": outside_port}},
                                                                                {"address": "127.0.0.1", "ports": {"http": dead}}]})
    breaker = doc("CircuitBreaker", "twice-cb", {"targetRef": {"group": "networking.istio.io", "kind": "ServiceEntry", "name": "twice"},
                                                 "consecutiveFailures": 2, "penalty": "30s"}) if kind == "CircuitBreaker" else ISTIO_RULE
    apply(mesh, entry, breaker)
    await until(lambda: asyncio.to_thread(client.config), lambda c: any(r["kind"] == kind for r in c["policies"]["resources"]),
                "the breaker at web's sidecar")

    def ejected(_batch) -> bool:
        return any(f'endpoint="127.0.0.1:{dead}"' in line and 'state="open"' in line
                   for line in client.metrics().splitlines() if line.startswith("outbound_http_breaker_state{"))

    async with aiohttp.ClientSession() as session:
        await until(lambda: many(session, client.outbound, "http://twice.example/", 10), ejected, "the dead endpoint to be ejected", 10)
        batch = await many(session, client.outbound, "http://twice.example/", 10, headers=DEBUG)
    assert all(s == 200 for s, _, _ in batch), [s for s, _, _ in batch]
    assert 'service="twice.example"' in next(ln for ln in client.metrics().splitlines() if ln.startswith("outbound_http_breaker_state{"))


@pytest.mark.timeout(180)
def test_egress_from_the_cli_passthrough_registry_only_and_a_service_entry(cli, tmp_path):
    """Istio's egress task with the learner's commands, in the local sandbox: `meshdojo load URL
    --from deploy/web` leaves the mesh through web's sidecar; a Sidecar makes the namespace
    REGISTRY_ONLY; a ServiceEntry lets one host through again, by its name."""
    with plain_http_server() as port:
        outside = f"http://127.0.0.1:{port}/headers"
        cli.run("up", "--no-tui", "--demo", "emojivoto")

        def codes(url: str) -> dict:
            return json.loads(cli.run("load", url, "--from", "deploy/web", "-n", "4", "-c", "1", "-o", "json").stdout)["codes"]

        assert codes(outside)["200"]["count"] == 4  # passed through (ALLOW_ANY, the default)
        refused = cli.run("load", outside, check=False)
        assert refused.returncode == 1 and "add --from deploy/NAME" in refused.stderr
        policy = tmp_path / "egress.yaml"
        policy.write_text(f"""
apiVersion: policy.meshdojo.dev/v1alpha1
kind: Sidecar
metadata: {{name: default, namespace: emojivoto}}
spec:
  outboundTrafficPolicy: {{mode: REGISTRY_ONLY}}
---
apiVersion: policy.meshdojo.dev/v1alpha1
kind: ServiceEntry
metadata: {{name: outside, namespace: emojivoto}}
spec:
  hosts: [outside.example]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {port}}}}}]
""")
        cli.run("apply", "-f", str(policy))
        wait_until(lambda: set(codes(outside)) == {"502"}, 20, "the outside host to be refused")
        assert set(codes("http://outside.example/headers")) == {"200"}
        listed = cli.run("get", "se").stdout
        assert "outside.example" in listed and "STATIC, port 80" in listed
        assert "outbound REGISTRY_ONLY" in cli.run("get", "sidecar", "-n", "emojivoto").stdout

"""Gateway API's Gateway at a real ingress gateway: Istio's ingress tasks as they write them.

A gateway proxy (``--gateway``) fronts one service until HTTPRoutes are attached to a Gateway
of its namespace; then the host and path a client sends decide, unmatched requests get 404, and
deleting the route gives the front service back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.apps import recording_app
from tests.meshkit import Mesh, spiffe
from tests.test_faults_e2e import until
from tests.test_traffic_e2e import apply

GW = "gateway.networking.k8s.io/v1"


def gateway(listeners: list[dict]) -> dict:
    return {"apiVersion": GW, "kind": "Gateway", "metadata": {"name": "httpbin-gateway", "namespace": "foo"},
            "spec": {"gatewayClassName": "istio", "listeners": listeners}}


def route(name: str, spec: dict) -> dict:
    return {"apiVersion": GW, "kind": "HTTPRoute", "metadata": {"name": name, "namespace": "foo"},
            "spec": {"parentRefs": [{"name": "httpbin-gateway"}], **spec}}


@pytest.fixture
async def two_apps() -> AsyncIterator[tuple[tuple[int, list], tuple[int, list]]]:
    def record(request) -> dict[str, str]:
        return {"(path)": request.path_qs, "host": request.headers.get("host", "")}

    async with recording_app(record) as httpbin, recording_app(record) as other:
        yield httpbin, other


async def test_istios_ingress_task_routes_by_host_and_path_at_the_gateway(mesh: Mesh, two_apps):
    (httpbin_port, httpbin_seen), (other_port, other_seen) = two_apps
    httpbin = mesh.start_proxy("foo", "httpbin", httpbin_port, name="httpbin")
    other = mesh.start_proxy("foo", "other", other_port, name="other")
    edge = mesh.start_gateway("foo", "httpbin.foo:8000")
    mesh.register("foo", "httpbin", "httpbin-0", httpbin.ports["inbound"], spiffe("foo", "httpbin"))
    mesh.register("foo", "other", "other-0", other.ports["inbound"], spiffe("foo", "other"))
    url = f"http://127.0.0.1:{edge.ports['outbound']}"
    async with aiohttp.ClientSession() as session:

        async def call(path: str, host: str = "httpbin.example.com") -> tuple[int, str, str]:
            async with session.get(url + path, headers={"host": host, "x-meshdojo-debug": "1"}, allow_redirects=False) as rsp:
                return rsp.status, rsp.headers.get("x-meshdojo-fate", "") + " " + await rsp.text(), rsp.headers.get("location", "")

        await until(lambda: call("/headers"), lambda r: r[0] == 200, "the gateway to reach its front service")
        assert httpbin_seen[-1]["host"] == "httpbin.foo:8000"  # no route yet: the front service, Host replaced

        # Istio's "Ingress Gateways" task, Gateway API version: a listener for *.example.com, a route for one host
        apply(mesh, gateway([{"name": "http", "port": 80, "protocol": "HTTP", "hostname": "*.example.com",
                              "allowedRoutes": {"namespaces": {"from": "Same"}}}]),
              route("httpbin", {"hostnames": ["httpbin.example.com"], "rules": [
                  {"matches": [{"path": {"type": "PathPrefix", "value": "/status"}}, {"path": {"type": "PathPrefix", "value": "/delay"}}],
                   "backendRefs": [{"name": "httpbin", "port": 8000}]}]}))
        status, why, _ = await until(lambda: call("/headers"), lambda r: r[0] == 404, "the route to reach the gateway")
        assert "no rule of the routes attached to this gateway (HTTPRoute foo/httpbin) matches GET /headers" in why, why
        status, fate, _ = await call("/status/200")
        assert status == 200 and "route=foo/httpbin#0, backend=httpbin" in fate, fate
        assert httpbin_seen[-1] == {"(path)": "/status/200", "host": "httpbin.example.com"}  # the client's Host, as Envoy keeps it
        assert (await call("/status/200", host="other.example.com"))[0] == 404  # not the route's host
        assert (await call("/status/200", host="httpbin.example.org"))[0] == 404  # nor the listener's

        # a second route: a more specific host wins over a route for any host; a redirect-only rule answers itself
        apply(mesh, route("catch-all", {"rules": [{"backendRefs": [{"name": "other", "port": 8000}]}]}),
              route("moved", {"hostnames": ["old.example.com"], "rules": [
                  {"filters": [{"type": "RequestRedirect", "requestRedirect": {"hostname": "httpbin.example.com", "statusCode": 301}}]}]}))
        status, fate, _ = await until(lambda: call("/anything", host="www.example.com"), lambda r: r[0] == 200, "the catch-all route")
        assert "route=foo/catch-all#0, backend=other" in fate and other_seen[-1]["(path)"] == "/anything"
        assert "route=foo/httpbin#0" in (await call("/status/418"))[1]  # httpbin.example.com: its own route first
        assert "route=foo/catch-all#0" in (await call("/headers"))[1]  # ...whose rules do not match: the next route's
        status, _, location = await call("/status/200", host="old.example.com")
        assert status == 301 and location == "http://httpbin.example.com/status/200", location

        # a Gateway's listener that takes only another listener's routes: sectionName
        apply(mesh, route("httpbin", {"parentRefs": [{"name": "httpbin-gateway", "sectionName": "https"}],
                                      "rules": [{"backendRefs": [{"name": "httpbin"}]}]}))
        await until(lambda: call("/status/200"), lambda r: "route=foo/catch-all#0" in r[1], "a route no listener takes to drop out")

        for name in ("httpbin", "catch-all", "moved"):
            assert mesh.call("DELETE", f"/v1/policies/HTTPRoute/foo/{name}")[0] == 200
        status, fate, _ = await until(lambda: call("/headers"), lambda r: r[0] == 200 and "route=" not in r[1],
                                      "the front service back once no route is attached")
        assert httpbin_seen[-1]["host"] == "httpbin.foo:8000"
    assert 'route="foo/httpbin#0"' in edge.metrics()  # counted per route, as any route's traffic

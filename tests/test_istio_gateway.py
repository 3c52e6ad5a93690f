"""Istio's own Gateway (networking.istio.io) and the VirtualServices bound to it: Istio's classic
ingress (demo-apps/bookinfo/policies/istio/bookinfo-gateway.yaml, its bookinfo-gateway.yaml),
read as a Gateway's listeners and their routes, refused by field where the gateways cannot do
what it says, and served by a real ingress gateway: the task's paths get in, nothing else, a
host-bound VirtualService by the Host sent. (On a bookinfo sandbox: tests/test_istio_networking.py;
kubectl's side: tests/test_kube_istio.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from controlplane.crds import subset_crd
from controlplane.gatewayapi import Listener, attached, refusal, secret_keys, tls_listeners
from controlplane.istioschema import ISTIO_GATEWAY
from controlplane.policy import PolicyError, canonical_kind, parse
from controlplane.routespec import ParentGateway
from sandbox.resources import twins
from sandbox.resourcetable import table
from tests.meshkit import Mesh, spiffe
from tests.test_faults_e2e import until
from tests.test_gateway_e2e import two_apps  # noqa: F401 (a fixture)
from tests.test_traffic_e2e import apply

SHIPPED = Path(__file__).parent.parent / "demo-apps/bookinfo/policies/istio/bookinfo-gateway.yaml"
NETWORKING = "networking.istio.io/v1"


def istio_gateway(servers: list[dict], name: str = "httpbin-gateway", namespace: str = "foo", version: str = NETWORKING) -> dict:
    return {"apiVersion": version, "kind": "Gateway", "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": {"istio": "ingressgateway"}, "servers": servers}}


def bound(name: str, host: str, http: list[dict], gateways: list[str] | None = None, namespace: str = "foo") -> dict:
    return {"apiVersion": NETWORKING, "kind": "VirtualService", "metadata": {"name": name, "namespace": namespace},
            "spec": {"hosts": [host], "gateways": gateways or ["httpbin-gateway"], "http": http}}


def http_server(*hosts: str, **more: Any) -> dict:
    return {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": list(hosts), **more}


def read(*docs: dict) -> list[Any]:
    return [parse(d, "t.yaml", i) for i, d in enumerate(docs)]


def test_the_shipped_bookinfo_gateway_is_a_listener_and_its_route():
    gateway, service = [parse(d, SHIPPED.name, i) for i, d in enumerate(yaml.safe_load_all(SHIPPED.read_text()))]
    assert gateway.kind == ISTIO_GATEWAY == "Gateway.networking.istio.io" and service.kind == "VirtualService"
    assert gateway.spec.listeners == (Listener("http", 8080, None, "All"),)
    assert (service.spec.service, service.spec.gateway, service.spec.hostnames) == (
        None, ParentGateway("bookinfo", "bookinfo-gateway", None, None), ())
    assert [m.path.value for m in service.spec.rules[0].matches] == ["/productpage", "/static", "/login", "/logout", "/api/v1/products"]
    [route] = attached([gateway, service], "bookinfo")
    assert (route.route.name, route.gateway, route.hostnames, route.parent_kind) == ("bookinfo", "bookinfo/bookinfo-gateway", (), ISTIO_GATEWAY)
    assert attached([gateway, service], "default") == ()  # served by the ingress gateway of its own namespace
    rows = table([{"document": d, "expiresAt": None} for d in yaml.safe_load_all(SHIPPED.read_text())])
    assert rows[1][1:5] == (ISTIO_GATEWAY, "bookinfo-gateway", "8080 *", "HTTP, served by the namespace's ingress gateway")
    assert rows[2][1:4] == ("VirtualService", "bookinfo", "gateway/bookinfo-gateway *")


def test_servers_hosts_and_tls_as_listeners():
    gateway, = read(istio_gateway([
        http_server("./httpbin.example.com", "*/*.example.org"),
        {"port": {"number": 443, "name": "https", "protocol": "HTTPS"}, "hosts": ["httpbin.example.com"], "name": "secure",
         "tls": {"mode": "MUTUAL", "credentialName": "httpbin-credential"}}]))
    assert gateway.spec.listeners == (
        Listener("http-0", 80, "httpbin.example.com", "Same"), Listener("http-1", 80, "*.example.org", "All"),
        Listener("secure", 443, "httpbin.example.com", "All", "HTTPS", ("httpbin-credential",), "MUTUAL"))
    assert secret_keys([gateway]) == {("foo", "httpbin-credential")}  # the only Secret its gateway is given
    [tls] = tls_listeners([gateway], "foo")
    assert (tls.hostname, tls.secret, tls.mode, tls.gateway) == ("httpbin.example.com", "httpbin-credential", "MUTUAL", "foo/httpbin-gateway")


@pytest.mark.parametrize(("doc", "field", "words"), [
    (istio_gateway([{**http_server("*"), "port": {"number": 31400, "protocol": "TCP"}}]), "spec.servers[0].port.protocol",
     "'TCP': the gateways forward HTTP/1.1 requests only"),
    (istio_gateway([{**http_server("*"), "port": {"number": 443, "protocol": "HTTPS"}}]), "spec.servers[0].tls.credentialName",
     "required for HTTPS"),
    (istio_gateway([{**http_server("*"), "port": {"number": 443, "protocol": "HTTPS"}, "tls": {"mode": "ISTIO_MUTUAL"}}]),
     "spec.servers[0].tls.mode", "'ISTIO_MUTUAL': the gateways end TLS themselves here"),
    (istio_gateway([{**http_server("*"), "port": {"number": 443, "protocol": "HTTPS"},
                     "tls": {"httpsRedirect": True, "credentialName": "c"}}]), "spec.servers[0].tls.httpsRedirect",
     "is an HTTP server's (port 80)"),
    (bound("x", "*", [{"route": [{"destination": {"host": "httpbin"}}]}]) | {"spec": {
        "hosts": ["a.example.com", "B"], "gateways": ["g"], "http": [{"route": [{"destination": {"host": "httpbin"}}]}]}},
     "spec.hosts[1]", "on a gateway, a host clients ask for"),
    (istio_gateway([http_server("bar/httpbin.example.com")]), "spec.servers[0].hosts[0]", "only VirtualServices of this namespace"),
    (istio_gateway([http_server("*"), http_server("*.example.com")]), "spec.servers[1].name", "'http' names another server too"),
    (istio_gateway([http_server("HTTPBIN")]), "spec.servers[0].hosts[0]", "expected a host"),
    (bound("x", "*", [{"route": [{"destination": {"host": "httpbin"}}]}], ["mesh", "httpbin-gateway"]), "spec.gateways",
     "expected one entry"),
    (bound("x", "not a host", [{"route": [{"destination": {"host": "httpbin"}}]}]), "spec.hosts[0]", "on a gateway, a host clients ask for"),
    (bound("x", "*", [{"route": [{"destination": {"host": "httpbin"}}]}], ["Bad_Name"]), "spec.gateways[0]", "expected mesh, or an Istio Gateway"),
])
def test_refusals_name_the_field(doc, field, words):
    with pytest.raises(PolicyError) as err:
        parse(doc, "task.yaml", 0)
    assert err.value.field == field and words in err.value.message, err.value


def test_a_route_attaches_to_a_gateway_of_its_own_kind_and_says_why_not():
    theirs = istio_gateway([http_server("httpbin.example.com")])
    api_gateway = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": "httpbin-gateway", "namespace": "foo"},
                   "spec": {"gatewayClassName": "istio", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}}
    elsewhere = bound("elsewhere", "other.example.com", [{"route": [{"destination": {"host": "httpbin"}}]}])
    missing = bound("missing", "*", [{"route": [{"destination": {"host": "httpbin"}}]}], ["nobody"])
    resources = read(theirs, api_gateway, elsewhere, missing)
    assert attached(resources, "foo") == ()  # no server takes other.example.com; no HTTPRoute names Gateway API's Gateway
    assert refusal(resources, resources[2]) == ("NoMatchingListenerHostname", "no server of Istio Gateway foo/httpbin-gateway takes it "
                                                "(check its servers' hosts against the VirtualService's host, and a NAMESPACE/ "
                                                "before them for a VirtualService of another namespace)")
    assert refusal(resources, resources[3]) == ("NoMatchingParent", "Istio Gateway foo/nobody does not exist (yet): the route serves "
                                                "nothing until it does")
    assert twins("gw", "Gateway") == ["Gateway", ISTIO_GATEWAY] and canonical_kind("gateways.networking.istio.io") == ISTIO_GATEWAY
    crd = subset_crd(ISTIO_GATEWAY)
    assert (crd["metadata"]["name"], crd["spec"]["names"]["shortNames"], [v["name"] for v in crd["spec"]["versions"]]) == (
        "gateways.networking.istio.io", [], ["v1alpha3", "v1beta1", "v1"])


async def test_istios_ingress_task_with_its_own_apis_at_a_real_gateway(mesh: Mesh, two_apps):  # noqa: F811
    """The task's Gateway for httpbin.example.com and its VirtualService (/status, /delay): those
    paths for that host get in, to httpbin with the client's Host; anything else is a 404 that
    names the VirtualService; deleted, the front service is back."""
    (httpbin_port, httpbin_seen), _other = two_apps
    httpbin = mesh.start_proxy("foo", "httpbin", httpbin_port, name="httpbin")
    edge = mesh.start_gateway("foo", "httpbin.foo:8000")
    mesh.register("foo", "httpbin", "httpbin-0", httpbin.ports["inbound"], spiffe("foo", "httpbin"), labels={"app": "httpbin"})
    url = f"http://127.0.0.1:{edge.ports['outbound']}"
    async with aiohttp.ClientSession() as session:

        async def call(path: str, host: str = "httpbin.example.com") -> tuple[int, str]:
            async with session.get(url + path, headers={"host": host, "x-meshdojo-debug": "1"}) as rsp:
                return rsp.status, rsp.headers.get("x-meshdojo-fate", "") + " " + await rsp.text()

        await until(lambda: call("/headers"), lambda r: r[0] == 200, "the gateway to reach its front service")
        apply(mesh, istio_gateway([http_server("httpbin.example.com")], version="networking.istio.io/v1alpha3"),
              bound("httpbin", "httpbin.example.com", [{"match": [{"uri": {"prefix": "/status"}}, {"uri": {"prefix": "/delay"}}],
                                                        "route": [{"destination": {"host": "httpbin", "port": {"number": 8000}}}]}]))
        status, why = await until(lambda: call("/headers"), lambda r: r[0] == 404, "the VirtualService to reach the gateway")
        assert "no rule of the routes attached to this gateway (VirtualService foo/httpbin) matches GET /headers" in why, why
        status, fate = await call("/status/200")
        assert status == 200 and "route=foo/httpbin#0, backend=httpbin" in fate, fate
        assert httpbin_seen[-1] == {"(path)": "/status/200", "host": "httpbin.example.com"}
        assert (await call("/status/200", host="other.example.com"))[0] == 404  # not the host the server and the route share
        status, body = mesh.call("DELETE", "/v1/policies/VirtualService/foo/httpbin")
        assert status == 200, body
        await until(lambda: call("/headers", host="anything"), lambda r: r[0] == 200, "the front service back")

        # a destination's subset and its own headers, at the gateway: the DestinationRule's subset, the edits on the way
        apply(mesh, {"apiVersion": NETWORKING, "kind": "DestinationRule", "metadata": {"name": "httpbin", "namespace": "foo"},
                     "spec": {"host": "httpbin", "subsets": [{"name": "v1", "labels": {"app": "httpbin"}}]}},
              bound("httpbin", "httpbin.example.com", [{"route": [{"destination": {"host": "httpbin", "subset": "v1"},
                                                                   "headers": {"request": {"set": {"x-from-gateway": "yes"}},
                                                                               "response": {"set": {"x-answered-by": "httpbin-v1"}}}}]}]))
        await until(lambda: call("/anything"), lambda r: "subset=v1" in r[1], "the subset at the gateway")
        async with session.get(url + "/anything", headers={"host": "httpbin.example.com", "x-meshdojo-debug": "1"}) as rsp:
            assert rsp.status == 200 and rsp.headers["x-answered-by"] == "httpbin-v1", dict(rsp.headers)
            assert "request headers for httpbin/v1: set x-from-gateway: yes" in rsp.headers["x-meshdojo-fate"], dict(rsp.headers)

        # a rule's fault at the gateway: injected there, before the destination (Istio's gateway is a caller's proxy too)
        apply(mesh, bound("httpbin", "httpbin.example.com", [{"fault": {"abort": {"httpStatus": 418, "percentage": {"value": 100}}},
                                                              "route": [{"destination": {"host": "httpbin", "subset": "v1"}}]}]))
        status, fate = await until(lambda: call("/anything"), lambda r: r[0] == 418, "the fault at the gateway")
        assert "fault=abort 418 by VirtualService foo/httpbin#0" in fate, fate


def test_https_redirect_and_several_hosts_as_listeners_and_routes():
    """Istio's Gateway reference's example: an HTTP server with tls.httpsRedirect for two hosts,
    and a VirtualService for both: its route on the HTTP port is marked to send them to https://;
    on the HTTPS port it is served."""
    gateway, service = read(
        istio_gateway([http_server("uk.bookinfo.com", "eu.bookinfo.com", tls={"httpsRedirect": True}),
                       {"port": {"number": 443, "name": "https-443", "protocol": "HTTPS"}, "hosts": ["uk.bookinfo.com", "eu.bookinfo.com"],
                        "tls": {"mode": "SIMPLE", "credentialName": "bookinfo-secret"}}]),
        {**bound("bookinfo", "uk.bookinfo.com", [{"route": [{"destination": {"host": "productpage"}}]}]),
         "spec": {"hosts": ["uk.bookinfo.com", "eu.bookinfo.com"], "gateways": ["httpbin-gateway"],
                  "http": [{"route": [{"destination": {"host": "productpage"}}]}]}})
    assert [(ls.name, ls.hostname, ls.protocol, ls.https_redirect) for ls in gateway.spec.listeners] == [
        ("http-0", "uk.bookinfo.com", "HTTP", True), ("http-1", "eu.bookinfo.com", "HTTP", True),
        ("https-443-0", "uk.bookinfo.com", "HTTPS", False), ("https-443-1", "eu.bookinfo.com", "HTTPS", False)]
    assert service.spec.hostnames == ("uk.bookinfo.com", "eu.bookinfo.com")
    assert [(g.protocol, g.hostnames, g.https_redirect) for g in attached([gateway, service], "foo")] == [
        ("HTTP", ("uk.bookinfo.com", "eu.bookinfo.com"), True), ("HTTPS", ("uk.bookinfo.com", "eu.bookinfo.com"), False)]
    rows = table([{"document": d, "expiresAt": None} for d in (istio_gateway([http_server("*", tls={"httpsRedirect": True})]),)])
    assert rows[1][4] == "HTTP (HTTP sent to HTTPS), served by the namespace's ingress gateway"


async def test_https_redirect_at_a_real_gateway(mesh: Mesh, two_apps):  # noqa: F811
    """The reference's example at a real gateway: a plain request for either host is answered
    301 to https:// with its host and path, before any rule (a path no rule has is redirected
    too, as Envoy's require_tls does), and the fate says why; over TLS both hosts are served by
    the one VirtualService; a host neither server takes is a 404."""
    from tests.examplecerts import ca_pem, example_ca, https_get, server_cert
    from tests.test_gateway_tls_e2e import secret, served

    (httpbin_port, httpbin_seen), _other = two_apps
    httpbin = mesh.start_proxy("foo", "httpbin", httpbin_port, name="httpbin")
    edge = mesh.start_gateway("foo", "httpbin.foo:8000", "--https-port", "0")
    mesh.register("foo", "httpbin", "httpbin-0", httpbin.ports["inbound"], spiffe("foo", "httpbin"), labels={"app": "httpbin"})
    example = example_ca()
    assert mesh.call("POST", "/v1/secrets", {"document": secret("bookinfo-secret", server_cert(example, "*.bookinfo.com"))})[0] == 200
    apply(mesh, istio_gateway([
        http_server("uk.bookinfo.com", "eu.bookinfo.com", tls={"httpsRedirect": True}),
        {"port": {"number": 443, "name": "https-443", "protocol": "HTTPS"}, "hosts": ["uk.bookinfo.com", "eu.bookinfo.com"],
         "tls": {"mode": "SIMPLE", "credentialName": "bookinfo-secret"}}]),
        {**bound("bookinfo", "uk.bookinfo.com", []),
         "spec": {"hosts": ["uk.bookinfo.com", "eu.bookinfo.com"], "gateways": ["httpbin-gateway"],
                  "http": [{"match": [{"uri": {"prefix": "/status"}}], "route": [{"destination": {"host": "httpbin"}}]}]}})
    url = f"http://127.0.0.1:{edge.ports['outbound']}"
    async with aiohttp.ClientSession() as session:

        async def call(path: str, host: str) -> tuple[int, str, str]:
            async with session.get(url + path, headers={"host": host, "x-meshdojo-debug": "1"}, allow_redirects=False) as rsp:
                return rsp.status, rsp.headers.get("location", ""), rsp.headers.get("x-meshdojo-fate", "")

        status, location, fate = await until(lambda: call("/status/200", "uk.bookinfo.com"), lambda r: r[0] == 301,
                                             "the Gateway's httpsRedirect at the gateway")
        assert location == "https://uk.bookinfo.com/status/200", location
        reached = len(httpbin_seen)  # (the front service's, until the Gateway and its VirtualService reached the gateway)
        assert "redirect 301 to https://uk.bookinfo.com/status/200 (httpsRedirect of a server of foo/httpbin-gateway)" in fate, fate
        assert (await call("/nothing/routes/this?x=1", "eu.bookinfo.com"))[:2] == (301, "https://eu.bookinfo.com/nothing/routes/this?x=1")
        assert (await call("/status/200", "other.example.com"))[0] == 404
    assert len(httpbin_seen) == reached  # nothing plain got through since
    cadata = ca_pem(example)
    for host in ("uk.bookinfo.com", "eu.bookinfo.com"):
        status, headers, _, _ = await until(lambda host=host: served(edge.ports["https"], host, "/status/200", cadata),
                                            lambda r: r is not None and r[0] == 200, f"{host} over TLS")
        assert "route=foo/bookinfo#0, backend=httpbin" in headers["x-meshdojo-fate"], headers
    assert (await https_get(edge.ports["https"], "uk.bookinfo.com", "/headers", cadata))[0] == 404  # over TLS, the rules decide
    described = edge.config()["policies"]["gatewayRoutes"]
    assert [(r["protocol"], r["httpsRedirect"]) for r in described] == [("HTTP", True), ("HTTPS", False)]

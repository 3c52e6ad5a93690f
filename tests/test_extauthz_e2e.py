"""Istio's External Authorization task through real proxies: the sample authorizer
(demo-apps/extauthz/app.py) behind its own sidecar, an ExtensionProvider naming it, a CUSTOM
AuthorizationPolicy on httpbin — then an authorizer that cannot be reached, or does not answer.
Pure decisions: tests/test_extauthz.py."""

from __future__ import annotations

import importlib.util
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.apps import recording_app
from tests.meshkit import Mesh, spiffe
from tests.test_faults_e2e import until
from tests.test_traffic_e2e import apply

POL = "policy.meshdojo.dev/v1alpha1"
DEMO_APP = Path(__file__).resolve().parent.parent / "demo-apps" / "extauthz" / "app.py"


def _sample_authorizer_module():
    spec = importlib.util.spec_from_file_location("extauthz_sample", DEMO_APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def authorizer() -> Iterator[tuple[int, list]]:
    """The demo's authorizer, served by its own code on a port the OS picks; (port, checks it saw)."""
    sample = _sample_authorizer_module()
    seen: list = []

    def check(request):
        seen.append(request)
        return sample.check(request)

    import common  # demo-apps/common.py, on the path the sample put it on

    server = common.make_server({"/": check}, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A listener that accepts connections and never answers: an authorizer that hangs."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def provider(service: str, **http) -> dict:
    return {"apiVersion": POL, "kind": "ExtensionProvider", "metadata": {"name": "sample-ext-authz-http", "namespace": "meshdojo-system"},
            "spec": {"envoyExtAuthzHttp": {"service": f"{service}.foo.svc.cluster.local", "port": "8080",
                                           "includeRequestHeadersInCheck": ["x-ext-authz"], **http}}}


def policy(name: str, action: str, rule: dict, **extra) -> dict:
    return {"apiVersion": POL, "kind": "AuthorizationPolicy", "metadata": {"name": name, "namespace": "foo"},
            "spec": {"selector": {"matchLabels": {"app": "httpbin"}}, "action": action, "rules": [rule], **extra}}


CUSTOM = policy("ext-authz", "CUSTOM", {"to": [{"operation": {"paths": ["/headers"]}}]}, provider={"name": "sample-ext-authz-http"})


async def call(session: aiohttp.ClientSession, proxy: str, path: str, verdict: str, **headers: str) -> tuple[int, dict, str]:
    async with session.get(f"http://httpbin{path}", proxy=proxy, headers={"x-ext-authz": verdict, **headers}) as rsp:
        return rsp.status, dict(rsp.headers), await rsp.text()


async def test_istios_external_authorization_task(mesh: Mesh, authorizer):
    authorizer_port, checks = authorizer
    async with recording_app(lambda r: {"path": r.path, "result": r.headers.get("x-ext-authz-check-result", "")}) as (app_port, seen):
        httpbin = mesh.start_proxy("foo", "httpbin", app_port, name="httpbin")
        sleep = mesh.start_proxy("foo", "sleep", app_port, name="sleep")
        ext = mesh.start_proxy("foo", "ext-authz", authorizer_port, name="ext-authz")
        mesh.register("foo", "httpbin", "httpbin-0", httpbin.ports["inbound"], spiffe("foo", "httpbin"))
        mesh.register("foo", "ext-authz", "ext-authz-0", ext.ports["inbound"], spiffe("foo", "ext-authz"))
        apply(mesh, provider("ext-authz", headersToUpstreamOnAllow=["x-ext-authz-check-*"], headersToDownstreamOnAllow=["*-result"]),
              CUSTOM)
        async with aiohttp.ClientSession() as session:
            status, headers, body = await until(lambda: call(session, sleep.outbound, "/headers", "deny", **{"x-other": "1"}),
                                                lambda r: r[0] == 403, "the authorizer to deny")
            assert body == "denied by ext_authz for not found header `x-ext-authz: allow` in the request\n"
            assert headers["x-ext-authz-check-result"] == "denied"  # headersToDownstreamOnDeny left out: all of the answer's
            assert headers["x-meshdojo-error"] == "ext_authz_denied"
            check = checks[-1]  # the check: the method, the path, Host the provider, only the headers it includes
            assert (check.method, check.path, check.body) == ("GET", "/headers", b"")
            assert check.headers["x-ext-authz"] == "deny" and "x-other" not in check.headers
            assert check.headers["host"] == "ext-authz.foo.svc.cluster.local:8080"
            assert check.headers["x-meshdojo-client-id"] == spiffe("foo", "httpbin")  # asked over mutual TLS, by httpbin's sidecar

            status, headers, _ = await call(session, sleep.outbound, "/headers", "allow")
            assert status == 200 and headers["x-ext-authz-check-result"] == "allowed"  # headersToDownstreamOnAllow
            assert seen[-1] == {"path": "/headers", "result": "allowed"}  # headersToUpstreamOnAllow: the app sees the verdict
            asked = len(checks)
            assert (await call(session, sleep.outbound, "/ip", "deny"))[0] == 200  # the rules match /headers only: not asked
            assert len(checks) == asked

            apply(mesh, policy("deny-x-deny", "DENY", {"when": [{"key": "request.headers[x-deny]", "values": ["yes"]}]}))
            await until(lambda: call(session, sleep.outbound, "/headers", "allow", **{"x-deny": "yes"}), lambda r: r[0] == 403,
                        "a DENY after the authorizer allowed (CUSTOM, then DENY, then ALLOW)")
    metrics = httpbin.metrics()
    assert 'inbound_http_ext_authz_total{provider="sample-ext-authz-http",result="denied"} 1.0' in metrics
    assert 'inbound_http_ext_authz_total{provider="sample-ext-authz-http",result="allowed"}' in metrics
    assert 'direction="outbound"' in metrics and 'dst_service="ext-authz"' in metrics  # the check is httpbin's own outbound request


async def test_an_authorizer_that_cannot_be_asked_denies_unless_failopen(mesh: Mesh, echo_port: int, silent_port: int):
    httpbin = mesh.start_proxy("foo", "httpbin", echo_port, name="httpbin")
    sleep = mesh.start_proxy("foo", "sleep", echo_port, name="sleep")
    mesh.register("foo", "httpbin", "httpbin-0", httpbin.ports["inbound"], spiffe("foo", "httpbin"))
    mesh.register("foo", "silent", "silent-0", silent_port, None)  # accepts, never answers
    async with aiohttp.ClientSession() as session:
        apply(mesh, CUSTOM)  # no ExtensionProvider yet: denied, as Istio fails closed
        status, _, body = await until(lambda: call(session, sleep.outbound, "/headers", "allow"), lambda r: r[0] == 403,
                                      "the CUSTOM policy without its provider")
        assert "which no ExtensionProvider in meshdojo-system defines" in body
        apply(mesh, provider("silent", timeout="300ms", statusOnError=503))
        status, _, body = await until(lambda: call(session, sleep.outbound, "/headers", "allow"), lambda r: r[0] == 503,
                                      "statusOnError after the timeout")
        assert "could not be asked (no answer within 0.3s)" in body
        apply(mesh, provider("nowhere"))  # a Service nobody registered
        status, _, body = await until(lambda: call(session, sleep.outbound, "/headers", "allow"), lambda r: "nowhere" in r[2],
                                      "the provider that names no Service")
        assert status == 403 and "could not be asked" in body
        apply(mesh, provider("nowhere", failOpen=True))
        await until(lambda: call(session, sleep.outbound, "/headers", "allow"), lambda r: r[0] == 200, "failOpen to let it through")
    metrics = httpbin.metrics()
    for result in ("error", "failure_mode_allowed"):
        assert f'inbound_http_ext_authz_total{{provider="sample-ext-authz-http",result="{result}"}}' in metrics


async def test_an_ingress_gateway_asks_the_authorizer_before_the_mesh(mesh: Mesh, echo_port: int, authorizer):
    """A CUSTOM policy selecting the gateway (``istio: ingressgateway``, from the mesh's root
    namespace): the check leaves through the gateway's own discovery, and a denied request never
    reaches the mesh."""
    authorizer_port, checks = authorizer
    httpbin = mesh.start_proxy("foo", "httpbin", echo_port, name="httpbin")
    ext = mesh.start_proxy("foo", "ext-authz", authorizer_port, name="ext-authz")
    gateway = mesh.start_gateway("foo", "httpbin.foo:8080")
    mesh.register("foo", "httpbin", "httpbin-0", httpbin.ports["inbound"], spiffe("foo", "httpbin"))
    mesh.register("foo", "ext-authz", "ext-authz-0", ext.ports["inbound"], spiffe("foo", "ext-authz"))
    edge = {**CUSTOM, "metadata": {"name": "front-door", "namespace": "meshdojo-system"},
            "spec": {**CUSTOM["spec"], "selector": {"matchLabels": {"istio": "ingressgateway"}}}}
    apply(mesh, provider("ext-authz"), edge)
    url = f"http://127.0.0.1:{gateway.ports['outbound']}/headers"

    async def call(verdict: str) -> tuple[int, str]:
        async with aiohttp.ClientSession() as session, session.get(url, headers={"x-ext-authz": verdict}) as rsp:
            return rsp.status, await rsp.text()

    def reached() -> float:  # requests httpbin served (before the policy reached the gateway, the polls below did too)
        lines = [line for line in httpbin.metrics().splitlines() if line.startswith("request_total{") and 'direction="inbound"' in line]
        return sum(float(line.rpartition(" ")[2]) for line in lines)

    status, body = await until(lambda: call("deny"), lambda r: r[0] == 403, "the gateway to ask the authorizer")
    assert body.startswith("denied by ext_authz") and checks[-1].path == "/headers"
    before = reached()
    assert (await call("deny"))[0] == 403 and (await call("allow"))[0] == 200
    assert 'inbound_http_ext_authz_total{provider="sample-ext-authz-http",result="denied"}' in gateway.metrics()
    async def counted() -> float:
        return reached()

    assert await until(counted, lambda n: n >= before + 1, "httpbin to count the allowed request") == before + 1  # and only it

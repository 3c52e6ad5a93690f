"""Istio's AuthorizationPolicy fields through real proxies: the Explicit Deny task as its docs
run it, and the facts a rule reads from the connection (the caller's verified principal in
Istio's form, its address, the port the request arrived on). Pure decisions:
tests/test_authzrules.py."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.meshkit import Mesh, spiffe
from tests.test_faults_e2e import until
from tests.test_inboundpolicy_e2e import _plaintext_status
from tests.test_traffic_e2e import apply

POL = "policy.meshdojo.dev/v1alpha1"


def authz(name: str, spec: dict) -> dict:
    return {"apiVersion": POL, "kind": "AuthorizationPolicy", "metadata": {"name": name, "namespace": "foo"},
            "spec": {"selector": {"matchLabels": {"app": "httpbin"}}, **spec}}


async def status(session: aiohttp.ClientSession, proxy: str, method: str, path: str, token: str | None = None) -> int:
    headers = {"x-token": token} if token else {}
    async with session.request(method, f"http://httpbin{path}", proxy=proxy, headers=headers) as rsp:
        await rsp.read()
        return rsp.status


def _httpbin_and_sleep(mesh: Mesh, app_port: int, *args: str):
    httpbin = mesh.start_proxy("foo", "httpbin", app_port, *args, name="httpbin")
    sleep = mesh.start_proxy("foo", "sleep", app_port, name="sleep")
    mesh.register("foo", "httpbin", "httpbin-0", httpbin.ports["inbound"], spiffe("foo", "httpbin"))
    return httpbin, sleep


async def test_istios_explicit_deny_task(mesh: Mesh, echo_port: int):
    httpbin, sleep = _httpbin_and_sleep(mesh, echo_port)
    async with aiohttp.ClientSession() as session:
        call = lambda method, path, token=None: status(session, sleep.outbound, method, path, token)  # noqa: E731
        assert await call("GET", "/ip") == 200
        apply(mesh, authz("deny-method-get", {"action": "DENY", "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]}))
        await until(lambda: call("GET", "/get"), lambda s: s == 403, "the DENY of GET")
        assert await call("POST", "/post") == 200
        apply(mesh, authz("deny-method-get", {"action": "DENY", "rules": [{
            "to": [{"operation": {"methods": ["GET"]}}],
            "when": [{"key": "request.headers[x-token]", "notValues": ["admin"]}]}]}))
        await until(lambda: call("GET", "/get", "admin"), lambda s: s == 200, "the DENY to spare x-token: admin")
        assert await call("GET", "/get", "guest") == 403
        apply(mesh, authz("allow-path-ip", {"action": "ALLOW", "rules": [{"to": [{"operation": {"paths": ["/ip"]}}]}]}))
        await until(lambda: call("GET", "/get", "admin"), lambda s: s == 403, "the ALLOW of /ip alone")
        assert (await call("GET", "/ip", "guest"), await call("GET", "/ip", "admin")) == (403, 200)
    metrics = httpbin.metrics()
    assert 'inbound_http_authz_deny_total{policy="foo/deny-method-get"}' in metrics
    assert 'inbound_http_authz_allow_total{policy="foo/allow-path-ip"}' in metrics


async def test_rules_read_the_verified_caller_its_address_and_the_port_it_came_to(mesh: Mesh, echo_port: int):
    httpbin, sleep = _httpbin_and_sleep(mesh, echo_port, "--mode", "permissive")
    port = httpbin.ports["inbound"]

    def only(ports: list[str], blocks: list[str]) -> dict:
        return authz("only-sleep", {"rules": [{"from": [{"source": {"principals": ["cluster.local/ns/foo/sa/sleep"],
                                                                    "ipBlocks": blocks}}],
                                               "to": [{"operation": {"ports": ports}}]}]})

    async with aiohttp.ClientSession() as session:
        apply(mesh, only([str(port)], ["127.0.0.0/8"]))
        await until(lambda: asyncio.to_thread(_plaintext_status, port), lambda r: r[0] == 403, "the ALLOW of sleep only")
        assert await status(session, sleep.outbound, "GET", "/") == 200  # Istio's principal form names sleep's SPIFFE ID
        apply(mesh, only([str(port)], ["10.0.0.0/8"]))  # sleep, but from another network
        await until(lambda: status(session, sleep.outbound, "GET", "/"), lambda s: s == 403, "the ipBlocks to exclude loopback")
        apply(mesh, only([str(port + 1 if port < 65535 else port - 1)], ["127.0.0.0/8"]))  # another port
        await until(lambda: status(session, sleep.outbound, "GET", "/"), lambda s: s == 403, "the ports to exclude this one")
        apply(mesh, authz("only-sleep", {"action": "DENY", "rules": [{"from": [{"source": {"notPrincipals": ["*"]}}]}]}))
        await until(lambda: status(session, sleep.outbound, "GET", "/"), lambda s: s == 200, "the DENY of callers with no principal")
        refused = await asyncio.to_thread(_plaintext_status, port)  # plaintext: no principal, so not any of "*"
        assert refused[0] == 403 and b"denied by AuthorizationPolicy foo/only-sleep" in refused[1]


async def test_ports_are_the_port_the_pod_declares_not_where_its_sidecar_listens(mesh: Mesh, echo_port: int):
    httpbin, sleep = _httpbin_and_sleep(mesh, echo_port, "--pod-port", "9080")  # as the local sandbox starts a sidecar
    async with aiohttp.ClientSession() as session:
        apply(mesh, authz("only-9080", {"rules": [{"to": [{"operation": {"ports": ["9080"]}}]}]}))
        await until(lambda: status(session, sleep.outbound, "GET", "/"), lambda s: s == 200, "the ALLOW of the declared port")
        apply(mesh, authz("only-9080", {"rules": [{"to": [{"operation": {"ports": [str(httpbin.ports["inbound"])]}}]}]}))
        await until(lambda: status(session, sleep.outbound, "GET", "/"), lambda s: s == 403, "the sidecar's own port not to count")
        apply(mesh, authz("only-9080", {"rules": [{"when": [{"key": "destination.port", "values": ["9080"]}]}]}))
        await until(lambda: status(session, sleep.outbound, "GET", "/"), lambda s: s == 200, "destination.port: the declared port")


async def test_istios_dry_run_task(mesh: Mesh, echo_port: int):
    httpbin, sleep = _httpbin_and_sleep(mesh, echo_port)
    deny_headers = authz("deny-path-headers", {"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/headers"]}}]}]})
    deny_headers["metadata"]["annotations"] = {"istio.io/dry-run": "true"}
    apply(mesh, deny_headers)
    async with aiohttp.ClientSession() as session:

        async def fate(path: str) -> tuple[int, str]:
            async with session.get(f"http://httpbin{path}", proxy=sleep.outbound, headers={"x-meshdojo-debug": "1"}) as rsp:
                return rsp.status, rsp.headers.get("x-meshdojo-fate", "")

        status, said = await until(lambda: fate("/headers"), lambda r: "dry-run" in r[1], "the dry-run policy")
        assert status == 200 and "dry-run deny: denied by foo/deny-path-headers" in said  # reported, not enforced
        assert "dry-run deny: allowed" in (await fate("/ip"))[1]
        assert 'inbound_http_authz_dry_run_total{action="deny",policy="foo/deny-path-headers",result="denied"} 1.0' in httpbin.metrics()
        deny_headers["metadata"]["annotations"]["istio.io/dry-run"] = "false"
        apply(mesh, deny_headers)
        await until(lambda: fate("/headers"), lambda r: r[0] == 403, "the policy to be enforced")

"""Linkerd's Server and ServerAuthorization through real proxies: a Server on the port the pod
declares (by its name, as the sidecar learns it from --pod-port-name) lets nobody in and says
so in Linkerd's words; a ServerAuthorization lets its ServiceAccount in over mutual TLS and
nobody else; a Server on another port changes nothing; audit mode lets everyone in and counts
whom deny would refuse. Pure decisions: tests/test_linkerdserver.py."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.meshkit import Mesh
from tests.test_authz_e2e import _httpbin_and_sleep, status
from tests.test_faults_e2e import until
from tests.test_inboundpolicy_e2e import _plaintext_status
from tests.test_traffic_e2e import apply

LINKERD = "policy.linkerd.io/v1beta1"


def server(port: str | int, access: str | None = None) -> dict:
    spec = {"podSelector": {"matchLabels": {"app": "httpbin"}}, "port": port, "proxyProtocol": "HTTP/1",
            **({"accessPolicy": access} if access else {})}
    return {"apiVersion": "policy.linkerd.io/v1beta3", "kind": "Server", "metadata": {"name": "httpbin-http", "namespace": "foo"},
            "spec": spec}


def authorization(service_account: str) -> dict:
    return {"apiVersion": LINKERD, "kind": "ServerAuthorization", "metadata": {"name": "httpbin-from-sleep", "namespace": "foo"},
            "spec": {"server": {"name": "httpbin-http"}, "client": {"meshTLS": {"serviceAccounts": [{"name": service_account}]}}}}


async def test_linkerds_restricting_access_task_through_real_sidecars(mesh: Mesh, echo_port: int):
    httpbin, sleep = _httpbin_and_sleep(mesh, echo_port, "--pod-port", "9080", "--pod-port-name", "http", "--mode", "permissive")
    plaintext = lambda: asyncio.to_thread(_plaintext_status, httpbin.ports["inbound"])  # noqa: E731
    async with aiohttp.ClientSession() as session:
        call = lambda: status(session, sleep.outbound, "GET", "/get")  # noqa: E731
        assert await call() == 200 and (await plaintext())[0] == 200  # no Server: Linkerd's default lets anyone in
        apply(mesh, server("http"))
        code, said = await until(plaintext, lambda r: r[0] == 403, "the Server to let nobody in")
        assert b"denied by Server foo/httpbin-http (Linkerd's): no ServerAuthorization or AuthorizationPolicy lets this caller in" in said
        assert await call() == 403
        apply(mesh, server("http"), authorization("sleep"))
        await until(call, lambda s: s == 200, "the ServerAuthorization to let sleep in")
        assert (await plaintext())[0] == 403  # and nobody else
        apply(mesh, server("http"), authorization("web"))
        await until(call, lambda s: s == 403, "an authorization of another ServiceAccount not to let sleep in")
        apply(mesh, server(9080), authorization("sleep"))  # the same port by number
        await until(call, lambda s: s == 200, "the Server by port number")
        apply(mesh, server("admin"), authorization("web"))  # a port the pod does not serve: nothing changes
        await until(plaintext, lambda r: r[0] == 200, "a Server of another port to leave this one alone")
        assert await call() == 200
        apply(mesh, server("http", "audit"))  # Linkerd's audit mode: let in, counted as deny would refuse

        async def audited() -> tuple[int, str]:
            return await call(), await asyncio.to_thread(httpbin.metrics)

        await until(audited, lambda r: r[0] == 200 and 'action="allow",policy="",result="denied"' in r[1], "audit mode to count sleep")
        assert await call() == 200 and (await plaintext())[0] == 200
    metrics = httpbin.metrics()
    assert 'inbound_http_authz_allow_total{policy="foo/httpbin-from-sleep.serverauthorization"}' in metrics
    assert 'inbound_http_authz_deny_total{policy="foo/httpbin-http.server' in metrics


async def test_per_route_policy_through_real_sidecars(mesh: Mesh, echo_port: int):
    """Linkerd's HTTPRoute on the Server: a request no route matches gets 404 in Linkerd's words,
    whoever sends it; a route's AuthorizationPolicy lets its caller send only what it matches."""
    httpbin, sleep = _httpbin_and_sleep(mesh, echo_port, "--pod-port", "9080", "--pod-port-name", "http", "--mode", "permissive")
    get_route = {"apiVersion": "policy.linkerd.io/v1beta3", "kind": "HTTPRoute", "metadata": {"name": "get", "namespace": "foo"},
                 "spec": {"parentRefs": [{"group": "policy.linkerd.io", "kind": "Server", "name": "httpbin-http"}],
                          "rules": [{"matches": [{"path": {"value": "/get"}, "method": "GET"}]}]}}
    sleep_may_get = {"apiVersion": "policy.linkerd.io/v1alpha1", "kind": "AuthorizationPolicy",
                     "metadata": {"name": "sleep-get", "namespace": "foo"},
                     "spec": {"targetRef": {"group": "policy.linkerd.io", "kind": "HTTPRoute", "name": "get"},
                              "requiredAuthenticationRefs": [{"kind": "ServiceAccount", "name": "sleep"}]}}
    plaintext = lambda path: asyncio.to_thread(_plaintext_status, httpbin.ports["inbound"], path)  # noqa: E731
    async with aiohttp.ClientSession() as session:
        call = lambda path: status(session, sleep.outbound, "GET", path)  # noqa: E731
        apply(mesh, server("http"), get_route)
        code, said = await until(lambda: plaintext("/headers"), lambda r: r[0] == 404, "the route to leave /headers unrouted")
        assert (b"meshdojo: no HTTPRoute of Server foo/httpbin-http (Linkerd's) matches GET /headers: once routes name a "
                b"Server, it serves only what they match (get)") in said, said
        assert await call("/get") == 403  # routed, and no policy authorizes the route
        apply(mesh, server("http"), get_route, sleep_may_get)
        await until(lambda: call("/get"), lambda s: s == 200, "the route's policy to let sleep in")
        assert await call("/headers") == 404 and (await plaintext("/get"))[0] == 403
    assert 'inbound_http_authz_allow_total{policy="foo/sleep-get.authorizationpolicy"}' in httpbin.metrics()


def rate_limit(identity: int, overrides: list | None = None) -> dict:
    return {"apiVersion": "policy.linkerd.io/v1alpha1", "kind": "HTTPLocalRateLimitPolicy", "metadata": {"name": "rl", "namespace": "foo"},
            "spec": {"targetRef": {"group": "policy.linkerd.io", "kind": "Server", "name": "httpbin-http"},
                     "identity": {"requestsPerSecond": identity}, **({"overrides": overrides} if overrides else {})}}


async def test_linkerds_rate_limit_through_real_sidecars(mesh: Mesh, echo_port: int):
    """HTTPLocalRateLimitPolicy on the Server: each identity its own bucket (the unmeshed one
    shared), 429 in Linkerd's words; an override for sleep's ServiceAccount; counted."""
    httpbin, sleep = _httpbin_and_sleep(mesh, echo_port, "--pod-port", "9080", "--pod-port-name", "http", "--mode", "permissive")

    async def plaintext_burst() -> list[tuple[int, bytes]]:  # the unmeshed callers' one bucket: 1 a second
        return [await asyncio.to_thread(_plaintext_status, httpbin.ports["inbound"], "/get") for _ in range(4)]

    async with aiohttp.ClientSession() as session:
        async def sleeps_burst(n: int) -> list[tuple[int, bytes]]:  # sleep's identity, n at once
            async def one() -> tuple[int, bytes]:
                async with session.get("http://httpbin/get", proxy=sleep.outbound) as rsp:
                    return rsp.status, await rsp.read()
            return list(await asyncio.gather(*(one() for _ in range(n))))

        apply(mesh, server("http", "all-unauthenticated"), rate_limit(1))
        said = await until(plaintext_burst, lambda r: any(code == 429 for code, _ in r), "the limit to count the unmeshed")
        assert [code for code, _ in said][0] == 200  # the first of the burst passes: a bucket of 1
        limited = next(body for code, body in said if code == 429)
        assert b"meshdojo: rate limited by HTTPLocalRateLimitPolicy foo/rl (Linkerd's): per-identity rate limit exceeded: 1rps" in limited
        assert b"x-meshdojo-error: rate_limited" in limited and b"retry-after: 1" in limited
        assert (await sleeps_burst(1))[0][0] == 200  # sleep's identity has a bucket of its own
        apply(mesh, server("http", "all-unauthenticated"), rate_limit(1, [{"requestsPerSecond": 3, "clientRefs": [
            {"kind": "ServiceAccount", "name": "sleep"}]}]))
        said = await until(lambda: sleeps_burst(6), lambda r: any(b"override rate limit exceeded: 3rps" in body for _, body in r),
                           "the override to be sleep's limit")
        assert [code for code, _ in said].count(200) >= 3  # three at once, where its identity alone had one
    metrics = httpbin.metrics()
    assert 'ratelimit="foo/rl"' in metrics and 'outcome="rate_limited"' in metrics

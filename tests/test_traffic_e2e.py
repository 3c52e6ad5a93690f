"""Traffic policy end to end through real proxies: retries bring a faulty service back, splits
split, DENY denies while others pass, MeshTLS flips, timeouts, rate limits and breakers act."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest

from tests.apps import start_echo_app
from tests.meshkit import Mesh, ProxyProc, spiffe
from tests.test_faults_e2e import until
from tests.test_mesh import _free_port, _plaintext_get

GW, POL = "gateway.networking.k8s.io/v1", "policy.meshdojo.dev/v1alpha1"


def doc(kind: str, name: str, spec: dict, ns: str = "emojivoto") -> dict:
    return {"apiVersion": GW if kind == "HTTPRoute" else POL, "kind": kind, "metadata": {"name": name, "namespace": ns}, "spec": spec}


def apply(mesh: Mesh, *docs: dict) -> None:
    status, body = mesh.call("POST", "/v1/policies", {"documents": [{"source": "t", "index": i, "document": d} for i, d in enumerate(docs)]})
    assert status == 200, body


async def fetch(session: aiohttp.ClientSession, proxy: str, url: str, **kw) -> tuple[int, dict, str]:
    async with session.get(url, proxy=proxy, **kw) as rsp:
        return rsp.status, dict(rsp.headers), await rsp.text()


async def many(session, proxy, url, n, **kw) -> list[tuple[int, dict, str]]:
    out = []
    for _ in range(n // 10):
        out += await asyncio.gather(*(fetch(session, proxy, url, **kw) for _ in range(10)))
    return out


async def test_a_retry_route_brings_a_30_percent_abort_back_above_97_percent(emoji_mesh):
    mesh, server, client = emoji_mesh
    apply(mesh, doc("FaultInjection", "flaky", {"targetRef": {"name": "emoji"}, "abort": {"httpStatus": 503, "percentage": {"value": 30}}}))
    async with aiohttp.ClientSession() as session:
        await until(lambda: many(session, client.outbound, "http://emoji/", 10), lambda r: any(s == 503 for s, _, _ in r), "the fault")
        before = [s for s, _, _ in await many(session, client.outbound, "http://emoji/", 300)]
        assert 0.6 < before.count(200) / 300 < 0.8
        apply(mesh, doc("HTTPRoute", "emoji-retries", {"parentRefs": [{"kind": "Service", "name": "emoji"}],
                                                       "rules": [{"retry": {"codes": [503], "attempts": 4, "backoff": "10ms"}}]}))  # four retries: 1 - 0.3**5 = 99.8 %
        await until(lambda: fetch(session, client.outbound, "http://emoji/", headers={"x-meshdojo-debug": "1"}),
                    lambda r: "route=emojivoto/emoji-retries#0" in r[1].get("x-meshdojo-fate", ""), "the route")
        after = await many(session, client.outbound, "http://emoji/", 300, headers={"x-meshdojo-debug": "1"})
        success = sum(s == 200 for s, _, _ in after) / 300
        assert success > 0.97, success
        fates = [h.get("x-meshdojo-fate", "") for _, h, _ in after]
        assert any("retry=retried after 503" in f for f in fates)
        assert any("attempts=2[emoji-0 -> 503; emoji-0 -> 200]" in f.replace("127.0.0.1", "emoji-0") or "attempts=2" in f for f in fates)
    metrics = client.metrics()
    assert 'outbound_http_route_retry_total{outcome="retried",route="emojivoto/emoji-retries#0"}' in metrics


# the request timeout covers all four tries: 1 s leaves room for them on two busy cores, and the slow request (2 s) still ends as 504
LINKERD_RETRIES = {"retry.linkerd.io/http": "5xx", "retry.linkerd.io/limit": "3", "timeout.linkerd.io/request": "1s"}


async def linkerds_retries_and_timeout_act(mesh: Mesh, client, place: Callable[[dict], None], route: str) -> None:
    """Linkerd's retries task: under a 30 % abort, ``place`` puts :data:`LINKERD_RETRIES` where
    Linkerd's docs put them (an HTTPRoute, or the Service); then success is above 97 %, a slow
    request gets 504, and the retries are counted on ``route``."""
    apply(mesh, doc("FaultInjection", "flaky", {"targetRef": {"name": "emoji"}, "abort": {"httpStatus": 503, "percentage": {"value": 30}}}))
    async with aiohttp.ClientSession() as session:
        await until(lambda: many(session, client.outbound, "http://emoji/", 10), lambda r: any(s == 503 for s, _, _ in r), "the fault")
        place(LINKERD_RETRIES)
        await until(lambda: fetch(session, client.outbound, "http://emoji/", headers={"x-meshdojo-debug": "1"}),
                    lambda r: f"route={route}" in r[1].get("x-meshdojo-fate", ""), "the route")
        after = [s for s, _, _ in await many(session, client.outbound, "http://emoji/", 300)]
        assert after.count(200) / 300 > 0.97, after.count(200)  # three retries: 1 - 0.3**4 = 99.2 %
        for _ in range(3):  # all four tries aborted (0.3**4 = 0.8 %) is a 503 before the delay: ask again
            status, headers, _ = await fetch(session, client.outbound, "http://emoji/?delay_ms=2000")
            if status != 503:
                break
        assert status == 504 and headers["x-meshdojo-error"] == "request_timeout"
    assert f'outbound_http_route_retry_total{{outcome="retried",route="{route}"}}' in client.metrics()


async def test_linkerds_retry_and_timeout_annotations_act_as_in_linkerd(emoji_mesh):
    mesh, _server, client = emoji_mesh

    def on_a_route(annotations: dict) -> None:
        route = doc("HTTPRoute", "emoji", {"parentRefs": [{"kind": "Service", "name": "emoji"}], "rules": [{}]})
        route["metadata"]["annotations"] = annotations
        apply(mesh, route)

    await linkerds_retries_and_timeout_act(mesh, client, on_a_route, "emojivoto/emoji#0")


async def test_deny_gives_403_while_other_callers_keep_working(emoji_mesh, echo_port):
    mesh, server, client = emoji_mesh
    voting = mesh.start_proxy("emojivoto", "voting", echo_port, name="voting")
    apply(mesh, doc("AuthorizationPolicy", "deny-web", {"targetRef": {"kind": "Service", "name": "emoji"}, "action": "DENY",
                                                        "rules": [{"from": [{"source": {"principals": [spiffe("emojivoto", "web")]}}]}]}))
    async with aiohttp.ClientSession() as session:
        status, headers, body = await until(lambda: fetch(session, client.outbound, "http://emoji/"), lambda r: r[0] == 403, "the DENY")
        assert "denied by AuthorizationPolicy emojivoto/deny-web" in body and headers["x-meshdojo-error"] == "authz_denied"
        assert (await fetch(session, voting.outbound, "http://emoji/"))[0] == 200
    assert 'inbound_http_authz_deny_total{policy="emojivoto/deny-web"}' in server.metrics()
    mesh.call("DELETE", "/v1/policies/AuthorizationPolicy/emojivoto/deny-web")
    async with aiohttp.ClientSession() as session:
        await until(lambda: fetch(session, client.outbound, "http://emoji/"), lambda r: r[0] == 200, "the DENY to go")


@contextlib.asynccontextmanager
async def reviews_versions(mesh: Mesh, *versions: str) -> AsyncIterator[ProxyProc]:
    """A reviews pod per version, each an echo app behind its sidecar, each a Service of its own
    (reviews-v1 ...) and all of them behind reviews; yields productpage's sidecar, the caller."""
    runners = []
    try:
        for version in versions:
            runner, port = await start_echo_app(version)
            runners.append(runner)
            proxy = mesh.start_proxy("bookinfo", "reviews", port, name=f"reviews-{version}")
            mesh.register("bookinfo", f"reviews-{version}", version, proxy.ports["inbound"], spiffe("bookinfo", "reviews"))
            mesh.register("bookinfo", "reviews", version, proxy.ports["inbound"], spiffe("bookinfo", "reviews"))
        yield mesh.start_proxy("bookinfo", "productpage", port, name="productpage")
    finally:
        for runner in runners:
            await runner.cleanup()


async def test_a_50_50_split_within_tolerance(mesh: Mesh):
    async with reviews_versions(mesh, "v1", "v3") as client:
        apply(mesh, doc("HTTPRoute", "reviews-split", {"parentRefs": [{"kind": "Service", "name": "reviews"}], "rules": [
            {"matches": [{"headers": [{"name": "end-user", "value": "jason"}]}], "backendRefs": [{"name": "reviews-v3"}]},
            {"backendRefs": [{"name": "reviews-v1", "weight": 50}, {"name": "reviews-v3", "weight": 50}]}]}, ns="bookinfo"))
        async with aiohttp.ClientSession() as session:
            await until(lambda: fetch(session, client.outbound, "http://reviews:9080/", headers={"x-meshdojo-debug": "1"}),
                        lambda r: "reviews-split" in r[1].get("x-meshdojo-fate", ""), "the route")
            served = [json.loads(b)["served_by"] for _, _, b in await many(session, client.outbound, "http://reviews:9080/", 400)]
            assert 0.4 < served.count("v1") / 400 < 0.6, served.count("v1")
            jason = [json.loads(b)["served_by"] for _, _, b in
                     await many(session, client.outbound, "http://reviews:9080/", 20, headers={"end-user": "jason"})]
            assert set(jason) == {"v3"}
            apply(mesh, doc("HTTPRoute", "reviews-split", {"parentRefs": [{"kind": "Service", "name": "reviews"}], "rules": [
                {"matches": [{"path": {"type": "PathPrefix", "value": "/reviews"}}]}]}, ns="bookinfo"))
            status, headers, body = await until(lambda: fetch(session, client.outbound, "http://reviews:9080/other"),
                                                lambda r: r[0] == 404, "unmatched requests to get 404")
            assert headers["x-meshdojo-error"] == "no_route" and "no rule of HTTPRoute bookinfo/reviews-split" in body


async def test_meshtls_permissive_and_back_to_strict(emoji_mesh):
    mesh, server, _client = emoji_mesh
    assert await asyncio.to_thread(_plaintext_get, server.ports["inbound"]) == b""
    apply(mesh, doc("MeshTLS", "open-emoji", {"targetRef": {"kind": "ServiceAccount", "name": "emoji"}, "mode": "PERMISSIVE"}))
    await until(lambda: asyncio.to_thread(_plaintext_get, server.ports["inbound"]), lambda r: r.startswith(b"HTTP/1.1 200"), "PERMISSIVE")
    mesh.call("DELETE", "/v1/policies/MeshTLS/emojivoto/open-emoji")
    await until(lambda: asyncio.to_thread(_plaintext_get, server.ports["inbound"]), lambda r: r == b"", "STRICT again")


async def test_timeouts_rate_limits_and_breakers(emoji_mesh):
    mesh, server, client = emoji_mesh
    apply(mesh,
          doc("FaultInjection", "slow", {"targetRef": {"name": "emoji"}, "match": {"path": {"type": "PathPrefix", "value": "/slow"}},
                                         "delay": {"fixedDelay": "2s"}}),
          doc("HTTPRoute", "emoji", {"parentRefs": [{"kind": "Service", "name": "emoji"}], "rules": [{"timeouts": {"request": "300ms"}}]}),
          doc("RateLimit", "emoji-rl", {"targetRef": {"name": "emoji"}, "requestsPerSecond": 1, "burst": 3}))
    async with aiohttp.ClientSession() as session:
        await until(lambda: fetch(session, client.outbound, "http://emoji/slow"), lambda r: r[0] == 504, "the timeout", 5)
        started = time.monotonic()
        status, headers, _ = await fetch(session, client.outbound, "http://emoji/slow", headers={"x-meshdojo-debug": "1"})
        assert status == 504 and headers["x-meshdojo-error"] == "request_timeout" and time.monotonic() - started < 1.5
        assert "timeout=request timeout 0.3s" in headers["x-meshdojo-fate"]
        statuses = [s for s, _, _ in await many(session, client.outbound, "http://emoji/", 10)]
        assert statuses.count(429) >= 6 and 200 in statuses
    assert 'inbound_http_local_ratelimit_requests_total{outcome="rate_limited",ratelimit="emojivoto/emoji-rl"}' in server.metrics()

    # a breaker over one dead endpoint: it is skipped; with every endpoint dead, 503 at once
    for kind, name in (("RateLimit", "emoji-rl"), ("HTTPRoute", "emoji"), ("FaultInjection", "slow")):
        mesh.call("DELETE", f"/v1/policies/{kind}/emojivoto/{name}")
    mesh.register("emojivoto", "emoji", "dead", _free_port(), spiffe("emojivoto", "emoji"))
    apply(mesh, doc("CircuitBreaker", "emoji-cb", {"targetRef": {"name": "emoji"}, "consecutiveFailures": 2, "penalty": "30s"}))
    async with aiohttp.ClientSession() as session:
        await until(lambda: many(session, client.outbound, "http://emoji/", 10), lambda r: all(s == 200 for s, _, _ in r),
                    "the dead endpoint to be ejected", 10)
        mesh.deregister("emojivoto", "emoji", "emoji-0")
        status, headers, body = await until(lambda: fetch(session, client.outbound, "http://emoji/"),
                                            lambda r: r[0] == 503, "every endpoint to be ejected", 10)
        assert headers["x-meshdojo-error"] == "breaker_open" and "circuit breaker open" in body
    assert 'outbound_http_breaker_state{endpoint="127.0.0.1:' in client.metrics() and 'state="open"' in client.metrics()


async def test_routes_show_effective_and_actual_success_so_retries_are_visible(emoji_mesh):
    """EFFECTIVE (what the caller saw) near 100 % on the retried route, ACTUAL (every attempt)
    near the fault's 70 %, with more attempts than requests; the other rule shows no difference."""
    mesh, server, client = emoji_mesh
    status, _ = mesh.call("PUT", "/v1/workloads/emojivoto/web-0", {"deployment": "web", "identity": spiffe("emojivoto", "web"),
                                                                  "meshed": True, "admin": client.ports["admin"]})
    assert status == 200
    apply(mesh, doc("FaultInjection", "flaky", {"targetRef": {"name": "emoji"}, "abort": {"httpStatus": 503, "percentage": {"value": 30}}}),
          doc("HTTPRoute", "emoji-routes", {"parentRefs": [{"kind": "Service", "name": "emoji"}], "rules": [
              {"matches": [{"path": {"type": "PathPrefix", "value": "/api/vote"}}],
               "retry": {"codes": [503], "attempts": 5, "backoff": "5ms"}},
              {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}]}]}))
    # the control plane has scraped the client once: the baseline is before the traffic below
    await until(lambda: asyncio.to_thread(mesh.call, "GET", "/v1/stats?resource=deploy&name=web"),
                lambda r: r[1]["rows"] and not r[1]["rows"][0]["not_answering"], "the first scrape", 5)
    async with aiohttp.ClientSession() as session:
        await until(lambda: fetch(session, client.outbound, "http://emoji/api/vote", headers={"x-meshdojo-debug": "1"}),
                    lambda r: "route=emojivoto/emoji-routes#0" in r[1].get("x-meshdojo-fate", ""), "the route")
        await many(session, client.outbound, "http://emoji/api/vote", 300)
        await many(session, client.outbound, "http://emoji/api/list", 200)

    def settled(r):
        rows = {row["route"]: row for row in r[1].get("rows", [])}
        vote, other = rows.get("emojivoto/emoji-routes#0"), rows.get("emojivoto/emoji-routes#1")
        return vote and other and vote["effective_rps"] > 0 and vote["actual_rps"] > 1.3 * vote["effective_rps"] \
            and other["effective_rps"] > 0 and abs(other["actual_rps"] - other["effective_rps"]) < 1e-6

    def read():
        return asyncio.to_thread(mesh.call, "GET", "/v1/routes?service=emoji&namespace=emojivoto&from=web&window=1m")

    def rates(body):
        return [(row["route"], row["effective_rps"], row["actual_rps"]) for row in body["rows"]]

    # the scrape behind the first settled reading may have come mid-traffic; a reading whose
    # rates moved comes from a scrape after it, so after all of the traffic
    _, first = await until(read, settled, "route metrics after the traffic", 6)
    _, body = await until(read, lambda r: settled(r) and rates(r[1]) != rates(first), "a scrape after the traffic", 6)
    rows = {row["route"]: row for row in body["rows"]}
    vote, other = rows["emojivoto/emoji-routes#0"], rows["emojivoto/emoji-routes#1"]
    assert vote["match"] == "prefix /api/vote [retries on 503, up to 5]" and other["match"] == "prefix /"
    assert vote["effective_success"] > 0.97, vote  # five retries: 1 - 0.3**6
    # every attempt: the fault's 70 %; bounds of ~4.5 standard deviations for the ~400 attempts and 200 requests
    assert 0.6 < vote["actual_success"] < 0.8, vote
    assert 0.55 < other["effective_success"] < 0.85 and other["effective_success"] == other["actual_success"], other
    assert vote["latency_ms"]["p50"] is not None
    # another source has seen nothing
    _, none = mesh.call("GET", "/v1/routes?service=emoji&namespace=emojivoto&from=vote-bot")
    assert all(r["effective_rps"] == 0 and r["effective_success"] is None for r in none["rows"])
    assert {r["route"] for r in none["rows"]} == {"emojivoto/emoji-routes#0", "emojivoto/emoji-routes#1"}  # configured, no traffic


def _raw_exchange(port: int, request: bytes) -> bytes:
    """Send ``request`` as is on a fresh plaintext connection; return the response's status line."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n", 1)[0]


ESCAPES = [  # every header or target a client writes, trying to make the proxy pick another service's policy
    b"GET / HTTP/1.1\r\nHost: emoji\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: voting\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: voting.emojivoto.svc.cluster.local:8080\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x.y.z\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: emoji\r\nl5d-dst-canonical: voting.emojivoto.svc.cluster.local\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: voting\r\nl5d-dst-canonical: nosuch.other.svc.cluster.local\r\n\r\n",
    b"GET http://voting/ HTTP/1.1\r\nHost: voting\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: emoji\r\nx-meshdojo-client-id: spiffe://meshdojo.local/ns/emojivoto/sa/web\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
]


async def test_no_header_a_client_writes_escapes_a_deny(mesh: Mesh, echo_port: int):
    """The inbound proxy chooses policies by the workload it serves, never by Host or
    l5d-dst-canonical: with a DENY on emoji and emoji PERMISSIVE, nothing gets through."""
    server = mesh.start_proxy("emojivoto", "emoji", echo_port, "--mode", "permissive", name="emoji")
    mesh.register("emojivoto", "emoji", "emoji-0", server.ports["inbound"], spiffe("emojivoto", "emoji"))
    mesh.register("emojivoto", "voting", "voting-0", 1, None)  # another service the client may name
    port = server.ports["inbound"]
    assert (await asyncio.to_thread(_raw_exchange, port, ESCAPES[0])).startswith(b"HTTP/1.1 200")
    apply(mesh, doc("AuthorizationPolicy", "deny-all-to-emoji", {"targetRef": {"kind": "Service", "name": "emoji"}, "action": "DENY",
                                                         "rules": [{}]}))  # one empty rule matches every request
    await until(lambda: asyncio.to_thread(_raw_exchange, port, ESCAPES[0]), lambda line: b" 403 " in line, "the DENY")
    for request in ESCAPES:
        line = await asyncio.to_thread(_raw_exchange, port, request)
        assert b" 403 " in line, (request, line)


async def test_connection_pool_limits_overflow_grows_with_concurrency_as_in_istios_task(emoji_mesh):
    """Istio's circuit-breaking task: 1 connection, 1 pending request, 1 request per connection;
    fortio -c 1, -c 2, -c 3. Requests beyond the limits get 503 at once, their fate says
    overflow and a metric counts them; the endpoint's outlier breaker is not involved."""
    from controlplane.loadgen import Target, run

    mesh, _server, client = emoji_mesh
    apply(mesh, doc("CircuitBreaker", "emoji-pool", {"targetRef": {"name": "emoji"}, "connectionPool": {
        "tcp": {"maxConnections": 1}, "http": {"http1MaxPendingRequests": 1, "maxRequestsPerConnection": 1}}}))
    target = Target("http://emoji/?delay_ms=5", client.outbound, "web's sidecar")
    async with aiohttp.ClientSession() as session:
        await until(lambda: asyncio.to_thread(lambda: "emoji-pool" in str(client.config()["policies"])), bool, "the policy")
        _, headers, _ = await fetch(session, client.outbound, "http://emoji/", headers={"x-meshdojo-debug": "1"})
    shares = {}
    for concurrency in (1, 2, 3, 6):
        result = await run(target, concurrency, requests=60)
        shares[concurrency] = result.statuses[503] / result.count
        assert result.statuses[200] + result.statuses[503] == 60, result.statuses
        assert result.errors.get("pool_overflow", 0) == result.statuses[503]
    # it grows with concurrency, up to a ceiling: an overflow returns at once and is sent again, so
    # from -c 3 on nearly every request overflows and -c 3 and -c 6 can both reach 57 of 60
    assert shares[1] == 0 and shares[2] <= 0.1 < shares[3] <= shares[6], shares
    metrics = client.metrics()
    assert 'outbound_http_pool_overflow_total{service="emoji.emojivoto.svc.cluster.local"}' in metrics
    assert "breaker_state" not in "".join(line for line in metrics.splitlines() if 'state="open"' in line)
    async with aiohttp.ClientSession() as session:  # a request's fate names the overflow
        results = await asyncio.gather(*(fetch(session, client.outbound, "http://emoji/?delay_ms=50", headers={"x-meshdojo-debug": "1"})
                                         for _ in range(4)))
    fates = [h.get("x-meshdojo-fate", "") for s, h, _ in results if s == 503]
    assert fates and all("pool=overflow: 1 in flight, 1 pending" in f for f in fates), fates


async def test_the_control_plane_sends_load_for_a_learner_on_a_cluster(mesh: Mesh, echo_port: int):
    """`meshdojo load` on a cluster: POST /v1/load runs the generator in the control plane, to a
    service's endpoint as discovery knows it; bad requests name the field."""
    from controlplane.loadspec import parse

    mesh.register("emojivoto", "emojivoto-ingress", "emojivoto-ingress-0", echo_port, None)
    status, body = await asyncio.to_thread(mesh.call, "POST", "/v1/load", {
        "namespace": "emojivoto", "service": "emojivoto-ingress", "path": "/api/list", "connections": 2, "requests": 20,
        "headers": {"end-user": "jason"}})
    assert status == 200, body
    assert body["summary"]["codes"] == {"200": {"count": 20, "share": 1.0}}, body
    assert body["url"] == f"http://127.0.0.1:{echo_port}/api/list" and body["summary"]["latency_ms"]["p50"] > 0
    status, body = await asyncio.to_thread(mesh.call, "POST", "/v1/load", {"namespace": "emojivoto", "service": "nothing"})
    assert status == 404 and "no endpoints" in body["error"]
    status, body = await asyncio.to_thread(mesh.call, "POST", "/v1/load", {"namespace": "emojivoto", "service": "emoji",
                                                                         "connections": 0})
    assert status == 400 and body["error"].startswith("connections:")
    status, _ = await asyncio.to_thread(mesh.call, "POST", "/v1/load", {"namespace": "emojivoto", "service": "emojivoto-ingress"},
                                        None)
    assert status == 401
    for bad, field in (({"namespace": "a"}, "namespace, service"), ({"namespace": "a", "service": "b", "path": "x"}, "path"),
                       ({"namespace": "a", "service": "b", "duration": "5 parsecs"}, "duration"),
                       ({"namespace": "a", "service": "b", "duration": "10m"}, "duration: at most"),
                       ({"namespace": "a", "service": "b", "headers": {"a": 1}}, "headers")):
        with pytest.raises(ValueError, match=f"^{field}"):
            parse(bad)
    assert parse({"namespace": "a", "service": "b"})["requests"] == 100

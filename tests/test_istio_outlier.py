"""A DestinationRule's outlierDetection in Istio's two counts: consecutive5xxErrors (any 5xx; 0
turns it off) and consecutiveGatewayErrors (502, 503, 504 and failed connections; a 500 breaks
the run) — read, described, counted by the breaker, and through real sidecars: a pod answering
503 is ejected after two, a pod answering 500 is not."""

from __future__ import annotations

import asyncio
import json

import aiohttp
from aiohttp import web

from controlplane.policy import parse
from proxy.breaker import Breaker
from tests.apps import serve_app
from tests.meshkit import Mesh, spiffe
from tests.test_faults_e2e import until
from tests.test_traffic_e2e import apply, fetch


def dr(outlier: dict) -> dict:
    return {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "reviews", "namespace": "bookinfo"},
            "spec": {"host": "reviews", "trafficPolicy": {"outlierDetection": outlier}}}


def test_both_counts_are_read_and_described():
    spec = parse(dr({"consecutive5xxErrors": 0, "consecutiveGatewayErrors": 3}), "t.yaml", 0).spec
    assert (spec.breaker.consecutive_failures, spec.breaker.gateway_failures, spec.breaker.outlier) == (0, 3, True)
    assert spec.describe() == "eject after 3 gateway errors in a row, at most 10%"
    both = parse(dr({"consecutiveGatewayErrors": 2}), "t.yaml", 0).spec
    assert both.describe() == "eject after 5 5xx or 2 gateway errors in a row, at most 10%"  # Istio's 5 stays
    assert not parse(dr({"consecutive5xxErrors": 0}), "t.yaml", 0).spec.breaker.outlier  # both off: nothing is ejected


def test_gateway_errors_in_a_row_eject_and_a_500_breaks_the_run():
    br = Breaker(consecutive_failures=0, penalty=30, clock=lambda: 0.0, gateway_threshold=2)
    assert br.record("a", True, gateway_error=True) is None
    assert br.record("a", True, gateway_error=False) is None  # a 500: not a gateway error, and 5xx are not counted
    assert br.record("a", True, gateway_error=True) is None
    assert br.record("a", True, gateway_error=True) == "tripped"
    assert [br.record("b", True) for _ in range(10)] == [None] * 10  # consecutive5xxErrors: 0 never trips
    both = Breaker(consecutive_failures=3, penalty=30, clock=lambda: 0.0, gateway_threshold=5)
    assert [both.record("c", True) for _ in range(3)] == [None, None, "tripped"]  # either count trips


async def _answering(status: int, name: str) -> tuple[web.AppRunner, int]:
    async def handle(request: web.Request) -> web.Response:
        if "delay_ms" in request.query:
            await asyncio.sleep(int(request.query["delay_ms"]) / 1000)
        return web.json_response({"served_by": name}, status=status)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return await serve_app(app)


async def test_a_pod_answering_503_is_ejected_and_one_answering_500_is_not(mesh: Mesh):
    runners = []
    try:
        for name, status in (("good", 200), ("unavailable", 503), ("broken", 500)):
            runner, port = await _answering(status, name)
            runners.append(runner)
            proxy = mesh.start_proxy("bookinfo", "reviews", port, name=f"reviews-{name}", labels={"app": "reviews"})
            mesh.register("bookinfo", "reviews", name, proxy.ports["inbound"], spiffe("bookinfo", "reviews"), labels={"app": "reviews"})
        client = mesh.start_proxy("bookinfo", "productpage", port, name="productpage")
        apply(mesh, dr({"consecutive5xxErrors": 0, "consecutiveGatewayErrors": 2, "maxEjectionPercent": 100, "baseEjectionTime": "5m"}),
              {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "turns", "namespace": "bookinfo"},
               "spec": {"host": "reviews", "trafficPolicy": {"loadBalancer": {"simple": "ROUND_ROBIN"}}}})
        url = "http://reviews:9080/reviews/0"
        async with aiohttp.ClientSession() as session:
            await until(lambda: fetch(session, client.outbound, url, headers={"x-meshdojo-debug": "1"}),
                        lambda r: "balance=ROUND_ROBIN" in r[1].get("x-meshdojo-fate", ""), "the DestinationRules")

            async def served(n: int) -> list[tuple[int, str]]:
                out = []
                for _ in range(n):
                    status, _headers, body = await fetch(session, client.outbound, url)
                    out.append((status, json.loads(body)["served_by"]))
                return out

            first = await served(9)  # round robin: each pod thrice, so the 503 pod answers twice in a row of its own
            assert (503, "unavailable") in first and (500, "broken") in first
            after = await served(12)
            assert (503, "unavailable") not in after, after  # ejected for 5 minutes
            assert sorted(set(after)) == [(200, "good"), (500, "broken")], after  # 500s are not gateway errors: it stays
            assert 'outbound_http_breaker_transitions_total{service="reviews.bookinfo.svc.cluster.local",transition="tripped"} 1.0' \
                in client.metrics()

            # a subset's own outlierDetection, for the requests routed to it; the host has none now, so the 503 pod is back there
            apply(mesh, {**dr({}), "spec": {"host": "reviews", "subsets": [
                {"name": "all", "labels": {"app": "reviews"},
                 "trafficPolicy": {"outlierDetection": {"consecutiveGatewayErrors": 2, "maxEjectionPercent": 100, "baseEjectionTime": "5m"}}}]}},
                  {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "reviews", "namespace": "bookinfo"},
                   "spec": {"hosts": ["reviews"], "http": [{"match": [{"uri": {"prefix": "/sub"}}],
                                                            "route": [{"destination": {"host": "reviews", "subset": "all"}}]},
                                                           {"route": [{"destination": {"host": "reviews"}}]}]}})
            await until(lambda: served(6), lambda got: (503, "unavailable") in got, "the host's ejection to end with its outlierDetection")
            url = "http://reviews:9080/sub/0"
            await until(lambda: fetch(session, client.outbound, url, headers={"x-meshdojo-debug": "1"}),
                        lambda r: "subset=all" in r[1].get("x-meshdojo-fate", ""), "the VirtualService")
            await served(9)
            assert (503, "unavailable") not in await served(12)  # ejected from the subset
            url = "http://reviews:9080/reviews/0"
            assert (503, "unavailable") in await served(6)  # and not from the host
            assert 'service="reviews.bookinfo.svc.cluster.local (subset all)",state="open"' in client.metrics()  # its own breaker

            # a subset's own connectionPool: one request at a time to its pods, none waiting; the host's requests are not limited
            apply(mesh, {**dr({}), "spec": {"host": "reviews", "subsets": [
                {"name": "all", "labels": {"app": "reviews"}, "trafficPolicy": {"connectionPool": {
                    "tcp": {"maxConnections": 1}, "http": {"http1MaxPendingRequests": 0}}}}]}})
            slow = "http://reviews:9080/sub/0?delay_ms=300"
            debug = {"x-meshdojo-debug": "1"}
            at_once = await until(lambda: asyncio.gather(*(fetch(session, client.outbound, slow, headers=debug) for _ in range(3))),
                                  lambda got: any(status == 503 for status, _, _ in got), "the subset's connectionPool")
            fates = [headers.get("x-meshdojo-fate", "") for status, headers, _ in at_once if status == 503]
            assert "pool=overflow" in fates[0] and "connectionPool of reviews.bookinfo (subset all)" in fates[0], fates
            host = await asyncio.gather(*(fetch(session, client.outbound, "http://reviews:9080/reviews/0?delay_ms=300") for _ in range(3)))
            assert 503 not in [status for status, _, body in host if "unavailable" not in body], host
    finally:
        for runner in runners:
            await runner.cleanup()

"""HTTPRoute filters through real proxies: headers edited both ways, a URL rewritten, copies
mirrored (Istio's mirroring task) without touching the original, and redirects answered by the
client's proxy."""

from __future__ import annotations

import asyncio
import json

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from tests.apps import serve_app
from tests.meshkit import Mesh, spiffe
from tests.test_faults_e2e import until
from tests.test_traffic_e2e import apply, doc


class Recorder:
    """An app that keeps every request it gets; ``hold`` makes it wait before answering."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.seen: list[dict] = []
        self.hold: asyncio.Event | None = None
        self.runner: web.AppRunner | None = None

    async def start(self) -> int:
        async def handle(request: web.Request) -> web.Response:
            body = await request.read()
            self.seen.append({"method": request.method, "path": request.path_qs, "headers": request.headers.copy(), "body": body})
            if self.hold is not None:
                await self.hold.wait()
            return web.json_response({"served_by": self.name, "path": request.path_qs})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        self.runner, port = await serve_app(app)
        return port

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


async def meshed(mesh: Mesh, ns: str, service: str, recorder: Recorder) -> int:
    """``recorder`` behind a sidecar, as the one endpoint of ``service``; the sidecar's inbound port."""
    proxy = mesh.start_proxy(ns, service, await recorder.start(), name=service)
    mesh.register(ns, service, f"{service}-0", proxy.ports["inbound"], spiffe(ns, service))
    return proxy.ports["inbound"]


async def get(session: aiohttp.ClientSession, proxy: str, url: str, method: str = "GET", **kw) -> tuple[int, CIMultiDict, str]:
    async with session.request(method, url, proxy=proxy, allow_redirects=False, **kw) as rsp:
        return rsp.status, rsp.headers.copy(), await rsp.text()


def route(*rules: dict, name: str = "reviews", parent: str = "reviews") -> dict:
    return doc("HTTPRoute", name, {"parentRefs": [{"kind": "Service", "name": parent}], "rules": list(rules)}, ns="bookinfo")


async def test_headers_are_edited_both_ways_and_the_url_rewritten(mesh: Mesh):
    reviews = Recorder("reviews")
    try:
        await meshed(mesh, "bookinfo", "reviews", reviews)
        client = mesh.start_proxy("bookinfo", "productpage", 9, name="productpage")
        apply(mesh, route({
            "matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
            "filters": [
                {"type": "RequestHeaderModifier", "requestHeaderModifier": {
                    "set": [{"name": "x-canary", "value": "1"}], "add": [{"name": "x-tag", "value": "b"}], "remove": ["x-drop"]}},
                {"type": "URLRewrite", "urlRewrite": {"hostname": "reviews.internal",
                                                      "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/v2/api"}}},
                {"type": "ResponseHeaderModifier", "responseHeaderModifier": {
                    "set": [{"name": "x-route", "value": "reviews#0"}], "remove": ["server"]}},
            ]}, {}))
        sent = {"x-canary": "0", "x-tag": "a", "x-drop": "secret", "x-meshdojo-debug": "1"}
        async with aiohttp.ClientSession() as session:
            status, headers, body = await until(lambda: get(session, client.outbound, "http://reviews:9080/api/list?page=2", headers=sent),
                                                lambda r: "x-route" in r[1], "the route")
            assert status == 200 and headers["x-route"] == "reviews#0" and "Server" not in headers
            fate = headers["x-meshdojo-fate"]
            assert ("filters=request headers: set x-canary: 1, add x-tag: b, remove x-drop; "
                    "rewrote host reviews.internal, path /api/list?page=2 -> /v2/api/list?page=2") in fate, fate
            got = reviews.seen[-1]
            assert got["path"] == "/v2/api/list?page=2" and json.loads(body)["path"] == "/v2/api/list?page=2"
            assert got["headers"]["Host"] == "reviews.internal"
            assert got["headers"]["x-canary"] == "1" and "x-drop" not in got["headers"]
            assert got["headers"].getall("x-tag") == ["a", "b"]  # added beside the client's own
            # the other rule has no filters: nothing is edited
            status, headers, _ = await get(session, client.outbound, "http://reviews:9080/other", headers=sent)
            assert status == 200 and "x-route" not in headers and reviews.seen[-1]["headers"]["x-drop"] == "secret"
            assert reviews.seen[-1]["path"] == "/other"
    finally:
        await reviews.close()


async def test_a_mirror_gets_a_copy_of_each_request_and_the_caller_never_waits_for_it(mesh: Mesh):
    v1, v2 = Recorder("reviews-v1"), Recorder("reviews-v2")
    try:
        v1_port = await meshed(mesh, "bookinfo", "reviews-v1", v1)
        await meshed(mesh, "bookinfo", "reviews-v2", v2)
        mesh.register("bookinfo", "reviews", "reviews-v1-0", v1_port, spiffe("bookinfo", "reviews-v1"))
        client = mesh.start_proxy("bookinfo", "productpage", 9, name="productpage")
        # Istio's mirroring task: all traffic to v1, a copy of each request to v2
        apply(mesh, route({"backendRefs": [{"name": "reviews-v1"}], "filters": [
            {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "reviews-v2", "port": 9080}}}]}))
        async with aiohttp.ClientSession() as session:
            await until(lambda: get(session, client.outbound, "http://reviews:9080/probe", headers={"x-meshdojo-debug": "1"}),
                        lambda r: "mirrored to reviews-v2" in r[1].get("x-meshdojo-fate", ""), "the route")
            await until(lambda: _async(len(v2.seen)), lambda n: n >= 1, "the probe's copy")
            v1.seen.clear(), v2.seen.clear()
            answers = [await get(session, client.outbound, f"http://reviews:9080/reviews/{i}", method="POST", data=b"x" * i)
                       for i in range(20)]
            assert {json.loads(b)["served_by"] for _, _, b in answers} == {"reviews-v1"}  # the copies' answers are thrown away
            await until(lambda: _async(len(v2.seen)), lambda n: n == 20, "every copy", timeout=5)
            assert sorted((s["path"], s["body"]) for s in v2.seen) == sorted((s["path"], s["body"]) for s in v1.seen)
            assert {s["headers"]["Host"] for s in v2.seen} == {"reviews-shadow:9080"}  # as Envoy marks a copy
            assert {s["method"] for s in v2.seen} == {"POST"}
            metrics = await until(lambda: asyncio.to_thread(client.metrics), lambda m: _mirror_count(m, "sent") >= 21, "the copies counted")
            copies = [line for line in metrics.splitlines() if line.startswith("response_total{") and 'dst_service="reviews-v2"' in line]
            assert copies and 'direction="outbound"' in copies[0] and 'tls="true"' in copies[0]  # an edge productpage -> reviews-v2

            # an HTTP/1.0 request: its copy goes out as HTTP/1.1, with the shadow Host
            reader, writer = await asyncio.open_connection("127.0.0.1", int(client.outbound.rsplit(":", 1)[1]))
            writer.write(b"GET http://reviews:9080/h10 HTTP/1.0\r\n\r\n")
            assert (await reader.read()).startswith(b"HTTP/1.1 200 ")
            writer.close()
            await until(lambda: _async([s for s in v2.seen if s["path"] == "/h10"]), lambda got: got, "the HTTP/1.0 copy")
            assert [s["headers"]["Host"] for s in v2.seen if s["path"] == "/h10"] == ["reviews-shadow:9080"]

            # a mirror that hangs: the caller gets its answer while the copy is still held
            v2.hold = asyncio.Event()
            held = len(v2.seen)
            status, _, body = await get(session, client.outbound, "http://reviews:9080/slow-mirror")
            assert status == 200 and json.loads(body)["served_by"] == "reviews-v1"
            await until(lambda: _async(len(v2.seen)), lambda n: n == held + 1, "the held copy to arrive")
            assert not v2.hold.is_set()
            v2.hold.set()
    finally:
        await v1.close()
        await v2.close()


async def test_a_mirror_that_fails_is_counted_and_half_the_requests_are_copied_at_50_percent(mesh: Mesh):
    v1, v2 = Recorder("reviews-v1"), Recorder("reviews-v2")
    try:
        await meshed(mesh, "bookinfo", "reviews", v1)
        await meshed(mesh, "bookinfo", "reviews-v2", v2)
        client = mesh.start_proxy("bookinfo", "productpage", 9, name="productpage")
        apply(mesh, route({"filters": [
            {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "nosuch"}}},
            {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "reviews-v2"}, "percent": 50}}]}))
        async with aiohttp.ClientSession() as session:
            await until(lambda: get(session, client.outbound, "http://reviews:9080/", headers={"x-meshdojo-debug": "1"}),
                        lambda r: "mirrored to nosuch" in r[1].get("x-meshdojo-fate", ""), "the route")
            await until(lambda: asyncio.to_thread(client.metrics), lambda m: _mirror_count(m, "failed", "nosuch") >= 1, "the failed copy")
            statuses = [(await get(session, client.outbound, f"http://reviews:9080/{i}"))[0] for i in range(200)]
            assert set(statuses) == {200}  # a copy that cannot be sent changes nothing for the caller
            sent = lambda: asyncio.to_thread(lambda: _mirror_count(client.metrics(), "sent", "reviews-v2"))  # noqa: E731
            await until(sent, lambda n: n == len(v2.seen), "every copy to be answered and counted")
            copied = [s for s in v2.seen if s["path"] != "/"]  # the 200, not the probes
            assert 60 <= len(copied) <= 140, len(copied)  # 50 % of 200, ±5.6 standard deviations
            metrics = await asyncio.to_thread(client.metrics)
            assert _mirror_count(metrics, "failed", "nosuch") + _mirror_count(metrics, "skipped", "nosuch") >= 201
    finally:
        await v1.close()
        await v2.close()


async def test_a_redirect_is_answered_by_the_callers_proxy(mesh: Mesh):
    web_app = Recorder("web")
    try:
        await meshed(mesh, "bookinfo", "web", web_app)
        client = mesh.start_proxy("bookinfo", "productpage", 9, name="productpage")
        apply(mesh, route(
            {"matches": [{"path": {"type": "PathPrefix", "value": "/old"}}], "filters": [
                {"type": "RequestRedirect", "requestRedirect": {"statusCode": 301,
                                                                "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/new"}}}]},
            {"matches": [{"path": {"type": "PathPrefix", "value": "/secure"}}], "filters": [
                {"type": "RequestRedirect", "requestRedirect": {"scheme": "https"}}]},
            {"matches": [{"queryParams": [{"name": "legacy", "type": "RegularExpression", "value": "[0-9]+"}]}], "filters": [
                {"type": "RequestRedirect", "requestRedirect": {"path": {"type": "ReplaceFullPath", "replaceFullPath": "/legacy"}}}]},
            {}, name="web", parent="web"))
        async with aiohttp.ClientSession() as session:
            status, headers, body = await until(
                lambda: get(session, client.outbound, "http://web:8080/old/page?a=b", headers={"x-meshdojo-debug": "1"}),
                lambda r: r[0] == 301, "the redirect")
            assert headers["Location"] == "http://web:8080/new/page?a=b" and body == ""
            assert "filters=redirect 301 to http://web:8080/new/page?a=b" in headers["x-meshdojo-fate"]
            status, headers, _ = await get(session, client.outbound, "http://web:8080/secure/x")
            assert status == 302 and headers["Location"] == "https://web/secure/x"
            status, headers, _ = await get(session, client.outbound, "http://web:8080/any/page?legacy=12&x=y")
            assert status == 302 and headers["Location"] == "http://web:8080/legacy?legacy=12&x=y"  # matched by query parameter
            assert (await get(session, client.outbound, "http://web:8080/any/page?legacy=new"))[0] == 200
            assert not [s for s in web_app.seen if s["path"].startswith(("/old", "/secure")) or "legacy=12" in s["path"]]
            assert (await get(session, client.outbound, "http://web:8080/new/page"))[0] == 200
    finally:
        await web_app.close()


def _mirror_count(metrics: str, outcome: str, backend: str = "reviews-v2") -> int:
    total = 0
    for line in metrics.splitlines():
        if (line.startswith("outbound_http_route_mirror_total{") and f'outcome="{outcome}"' in line
                and f'backend="{backend}.bookinfo.svc.cluster.local"' in line):
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


async def _async(value):
    return value

"""Cross-origin requests: Gateway API's CORS filter and Istio's VirtualService corsPolicy, read into
one policy (controlplane/cors.py), its answers decided (pure), refused by field, and acted on by a
real sidecar: a preflight from an allowed origin is answered there, the page's own requests get
Access-Control-Allow-Origin on their way back, another origin gets nothing of CORS."""

from __future__ import annotations

import pytest

from controlplane.cors import FORWARD, IGNORE, CorsPolicy, OriginMatch
from controlplane.policy import PolicyError, parse
from tests.apps import recording_app
from tests.meshkit import Mesh, spiffe
from tests.test_faults_e2e import until
from tests.test_traffic_e2e import apply, doc

APP = "https://app.example"


def route(cors: dict, ns: str = "emojivoto") -> dict:
    return doc("HTTPRoute", "emoji-cors", {"parentRefs": [{"kind": "Service", "name": "emoji"}],
                                           "rules": [{"filters": [{"type": "CORS", "cors": cors}]}]}, ns=ns)


def virtual_service(cors: dict) -> dict:
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "emoji", "namespace": "emojivoto"},
            "spec": {"hosts": ["emoji"], "http": [{"corsPolicy": cors, "route": [{"destination": {"host": "emoji"}}]}]}}


def test_both_forms_read_into_one_policy():
    gateway = parse(route({"allowOrigins": [APP, "https://*.example.com"], "allowMethods": ["GET", "PUT"],
                           "allowHeaders": ["x-custom"], "exposeHeaders": ["x-served-by"], "allowCredentials": True}), "t", 0)
    cors = gateway.spec.rules[0].filters.cors
    assert cors == CorsPolicy((OriginMatch("exact", APP), OriginMatch("host", "https://*.example.com")), ("GET", "PUT"),
                              ("x-custom",), ("x-served-by",), 5, True, IGNORE)
    assert gateway.spec.rules[0].describe() == "everything [CORS for https://app.example, https://*.example.com methods GET,PUT credentials]"
    istio = parse(virtual_service({"allowOrigins": [{"exact": APP}, {"regex": r"https://.*\.example\.org"}], "allowMethods": ["POST"],
                                   "maxAge": "24h"}), "t", 0).spec.rules[0].filters.cors
    assert istio == CorsPolicy((OriginMatch("exact", APP), OriginMatch("regex", r"https://.*\.example\.org")), ("POST",), (), (), 86400,
                               False, FORWARD)


def test_what_each_origin_gets():
    cors = CorsPolicy((OriginMatch("exact", APP), OriginMatch("host", "https://*.example.com")), ("GET", "PUT"), ("x-custom",),
                      ("x-served-by",), 600, True)
    assert cors.allows(APP) and cors.allows("https://a.b.example.com") and cors.allows("https://a.example.com:443")
    assert not cors.allows("https://example.com") and not cors.allows("http://a.example.com") and not cors.allows("https://evil.example")
    assert cors.preflight(APP, "PUT", "x-custom") == [
        (b"access-control-allow-origin", APP.encode()), (b"access-control-allow-credentials", b"true"),
        (b"access-control-allow-methods", b"GET,PUT"), (b"access-control-allow-headers", b"x-custom"), (b"access-control-max-age", b"600")]
    assert cors.response_headers(APP) == [(b"access-control-allow-origin", APP.encode()), (b"access-control-allow-credentials", b"true"),
                                          (b"access-control-expose-headers", b"x-served-by")]
    # *: the answer is * — unless credentials are allowed, when it names what was asked (Gateway API)
    anyone = CorsPolicy((OriginMatch("any"),), ("*",), ("*",))
    assert anyone.preflight(APP, "DELETE", "x-a,x-b") == [(b"access-control-allow-origin", b"*"),
                                                         (b"access-control-allow-methods", b"*"), (b"access-control-allow-headers", b"*")]
    trusted = CorsPolicy((OriginMatch("any"),), ("*",), ("*",), credentials=True)
    assert trusted.preflight(APP, "DELETE", "x-a,x-b") == [
        (b"access-control-allow-origin", APP.encode()), (b"access-control-allow-credentials", b"true"),
        (b"access-control-allow-methods", b"DELETE"), (b"access-control-allow-headers", b"x-a,x-b")]


@pytest.mark.parametrize(("document", "field", "words"), [
    (route({"allowOrigins": ["*", APP]}), "spec.rules[0].filters[0].cors.allowOrigins", "write it alone"),
    (route({"allowOrigins": ["app.example"]}), "spec.rules[0].filters[0].cors.allowOrigins[0]", "expected * or scheme://host[:port]"),
    (route({"allowMethods": ["GET"]}), "spec.rules[0].filters[0].cors.allowOrigins", "required here"),
    (route({"allowOrigins": [APP], "allowMethods": ["FETCH"]}), "spec.rules[0].filters[0].cors.allowMethods[0]", "expected one of GET"),
    (route({"allowOrigins": [APP], "maxAge": 0}), "spec.rules[0].filters[0].cors.maxAge", "a number of seconds"),
    (virtual_service({"allowOrigins": [{"regex": "("}]}), "spec.http[0].corsPolicy.allowOrigins[0].regex", "not a regular expression"),
    (virtual_service({"allowOrigins": [{"exact": APP}], "unmatchedPreflights": "DROP"}), "spec.http[0].corsPolicy.unmatchedPreflights",
     "expected one of FORWARD, IGNORE"),
])
def test_refused_by_field(document, field, words):
    with pytest.raises(PolicyError) as refused:
        parse(document, "cors.yaml", 0)
    assert refused.value.field == field and words in refused.value.message, refused.value


async def test_a_real_sidecar_answers_preflights_and_marks_the_answers(mesh: Mesh):
    """Gateway API's filter on emoji: a preflight from the page's origin is answered by the
    caller's sidecar (emoji never sees it); the page's GET reaches emoji and comes back with
    Access-Control-Allow-Origin; another origin's GET goes through without it, and its preflight
    is answered 200 without CORS headers. Istio's corsPolicy sends such a preflight on (FORWARD)."""
    import aiohttp

    def record(request) -> dict[str, str]:
        return {"method": request.method, "origin": request.headers.get("origin", "")}

    async with recording_app(record) as (port, seen), aiohttp.ClientSession() as session:
        server = mesh.start_proxy("emojivoto", "emoji", port, name="emoji")
        client = mesh.start_proxy("emojivoto", "web", port, name="web")
        mesh.register("emojivoto", "emoji", "emoji-0", server.ports["inbound"], spiffe("emojivoto", "emoji"))

        async def call(method: str, origin: str, **headers: str) -> tuple[int, dict[str, str], str]:
            async with session.request(method, "http://emoji/api/list", proxy=client.outbound,
                                       headers={"origin": origin, "x-meshdojo-debug": "1", **headers}) as rsp:
                return rsp.status, {k.lower(): v for k, v in rsp.headers.items()}, await rsp.text()

        apply(mesh, route({"allowOrigins": [APP], "allowMethods": ["GET", "PUT"], "allowHeaders": ["x-custom"], "maxAge": 600}))
        preflight = {"access-control-request-method": "PUT", "access-control-request-headers": "x-custom"}
        status, headers, _ = await until(lambda: call("OPTIONS", APP, **preflight), lambda r: "access-control-allow-origin" in r[1],
                                         "the CORS filter at web's sidecar")
        assert status == 200 and headers["access-control-allow-origin"] == APP and headers["access-control-allow-methods"] == "GET,PUT"
        assert headers["access-control-allow-headers"] == "x-custom" and headers["access-control-max-age"] == "600"
        assert "CORS preflight from https://app.example answered" in headers["x-meshdojo-fate"]
        assert not [s for s in seen if s["method"] == "OPTIONS"]  # answered by the sidecar
        status, headers, _ = await call("GET", APP)
        assert status == 200 and headers["access-control-allow-origin"] == APP and seen[-1] == {"method": "GET", "origin": APP}
        status, headers, _ = await call("GET", "https://evil.example")
        assert status == 200 and "access-control-allow-origin" not in headers and seen[-1]["origin"] == "https://evil.example"
        status, headers, _ = await call("OPTIONS", "https://evil.example", **preflight)
        assert status == 200 and "access-control-allow-origin" not in headers
        assert not [s for s in seen if s["method"] == "OPTIONS"]  # Gateway API: an unmatched preflight is answered too

        # the proxy's own failure (a pod that refuses connections) carries them too, so the page can read why
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            dead = probe.getsockname()[1]
        mesh.register("emojivoto", "voting", "voting-0", dead, spiffe("emojivoto", "voting"))
        apply(mesh, {**route({"allowOrigins": [APP]}), "metadata": {"name": "voting-cors", "namespace": "emojivoto"},
                     "spec": {"parentRefs": [{"kind": "Service", "name": "voting"}], "rules": [{"filters": [
                         {"type": "CORS", "cors": {"allowOrigins": [APP]}}]}]}})

        async def failed(origin: str) -> tuple[int, dict[str, str]]:
            async with session.get("http://voting/api/vote", proxy=client.outbound, headers={"origin": origin}) as rsp:
                return rsp.status, {k.lower(): v for k, v in rsp.headers.items()}

        status, headers = await until(lambda: failed(APP), lambda r: "access-control-allow-origin" in r[1], "the failure marked")
        assert status == 502 and headers["x-meshdojo-error"] == "connect_failed" and headers["access-control-allow-origin"] == APP
        status, headers = await failed("https://evil.example")
        assert status == 502 and "access-control-allow-origin" not in headers

        mesh.call("DELETE", "/v1/policies/HTTPRoute/emojivoto/emoji-cors")
        apply(mesh, virtual_service({"allowOrigins": [{"prefix": "https://app."}], "allowMethods": ["GET"]}))
        await until(lambda: call("OPTIONS", "https://evil.example", **preflight),
                    lambda r: any(s["method"] == "OPTIONS" for s in seen), "Istio's FORWARD: the preflight reaches emoji")
        status, headers, _ = await call("OPTIONS", "https://app.example", **preflight)
        assert status == 200 and headers["access-control-allow-origin"] == APP and headers["access-control-allow-methods"] == "GET"


async def test_the_cors_filter_at_a_real_ingress_gateway(mesh: Mesh):
    """CORS is most often the front door's job: the same filter on a Gateway's route answers the
    preflight at the gateway and marks the page's request on its way back."""
    import aiohttp

    from tests.test_gateway_e2e import gateway
    from tests.test_gateway_e2e import route as gateway_route

    def record(request) -> dict[str, str]:
        return {"method": request.method, "origin": request.headers.get("origin", "")}

    async with recording_app(record) as (port, seen), aiohttp.ClientSession() as session:
        httpbin = mesh.start_proxy("foo", "httpbin", port, name="httpbin")
        edge = mesh.start_gateway("foo", "httpbin.foo:8000")
        mesh.register("foo", "httpbin", "httpbin-0", httpbin.ports["inbound"], spiffe("foo", "httpbin"))
        apply(mesh, gateway([{"name": "http", "port": 80, "protocol": "HTTP"}]),
              gateway_route("httpbin", {"rules": [{"backendRefs": [{"name": "httpbin", "port": 8000}],
                                                   "filters": [{"type": "CORS", "cors": {"allowOrigins": ["https://*.example"],
                                                                                         "allowMethods": ["*"]}}]}]}))
        url = f"http://127.0.0.1:{edge.ports['outbound']}/get"

        async def call(method: str, **headers: str) -> tuple[int, dict[str, str]]:
            async with session.request(method, url, headers={"origin": APP, **headers}) as rsp:
                return rsp.status, {k.lower(): v for k, v in rsp.headers.items()}

        status, headers = await until(lambda: call("OPTIONS", **{"access-control-request-method": "DELETE"}),
                                      lambda r: "access-control-allow-origin" in r[1], "the CORS filter at the gateway")
        assert status == 200 and headers["access-control-allow-origin"] == APP and headers["access-control-allow-methods"] == "*"
        assert not [s for s in seen if s["method"] == "OPTIONS"]
        status, headers = await call("GET")
        assert status == 200 and headers["access-control-allow-origin"] == APP and seen[-1] == {"method": "GET", "origin": APP}

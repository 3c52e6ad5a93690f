"""RequestAuthentication through real proxies and a real control plane: Istio's JWT tasks
(end-user authentication, then authorization by request principal and by claim) with the
sandbox's own issuer, and an issuer whose keys the control plane fetches from a URL.
Pure decisions: tests/test_jwt.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from controlplane.jwtissuer import ISSUER, DemoIssuer
from tests.apps import recording_app, serve_app
from tests.meshkit import Mesh, spiffe
from tests.test_faults_e2e import until
from tests.test_traffic_e2e import apply

POL = "policy.meshdojo.dev/v1alpha1"


def policy(kind: str, name: str, spec: dict) -> dict:
    return {"apiVersion": POL, "kind": kind, "metadata": {"name": name, "namespace": "foo"},
            "spec": {"selector": {"matchLabels": {"app": "httpbin"}}, **spec}}


@pytest.fixture
async def headers_app() -> AsyncIterator[tuple[int, list[dict[str, str]]]]:
    """An app that keeps the path and headers of every request it gets: (its port, what it saw)."""
    async with recording_app(lambda request: {"(path)": request.path_qs, **{k.lower(): v for k, v in request.headers.items()}}) as recorded:
        yield recorded


def token(mesh: Mesh, subject: str, **body) -> str:
    status, answer = mesh.call("POST", "/v1/jwt", {"subject": subject, **body})
    assert status == 200, answer
    return answer["token"]


async def get(session: aiohttp.ClientSession, proxy: str, bearer: str | None = None) -> tuple[int, str, str]:
    """(status, body, the sidecars' account of the request) of GET /headers, with ``bearer`` as its token."""
    headers = {"x-meshdojo-debug": "1", **({"authorization": f"Bearer {bearer}"} if bearer else {})}
    async with session.get("http://httpbin/headers", proxy=proxy, headers=headers) as rsp:
        return rsp.status, await rsp.text(), rsp.headers.get("x-meshdojo-fate", "")


async def test_istios_jwt_tasks_with_the_sandboxs_issuer(mesh: Mesh, headers_app):
    app_port, seen = headers_app
    httpbin = mesh.start_proxy("foo", "httpbin", app_port, name="httpbin")
    sleep = mesh.start_proxy("foo", "sleep", app_port, name="sleep")
    mesh.register("foo", "httpbin", "httpbin-0", httpbin.ports["inbound"], spiffe("foo", "httpbin"))
    alice, bob = token(mesh, "alice", claims={"groups": ["group1"]}), token(mesh, "bob", claims={"groups": ["group2"]})
    async with aiohttp.ClientSession() as session:
        call = lambda bearer=None: get(session, sleep.outbound, bearer)  # noqa: E731
        assert (await call("not.a.token"))[0] == 200  # no RequestAuthentication yet: the token means nothing
        apply(mesh, policy("RequestAuthentication", "jwt-example", {"jwtRules": [{"issuer": ISSUER}]}))
        status, body, fate = await until(lambda: call("not.a.token"), lambda r: r[0] == 401, "the RequestAuthentication")
        assert "Jwt header or payload is not base64url-encoded JSON" in body and "RequestAuthentication" in body
        assert "inbound: authn=refused: Jwt header or payload" in fate
        assert (await call())[0] == 200  # no token at all: still let in, with no principal
        seen.clear()
        status, _body, fate = await call(alice)
        assert status == 200 and f"authn=jwt {ISSUER}/alice by foo/jwt-example" in fate
        assert "authorization" not in seen[-1]  # the app never sees the token (forwardOriginalToken: false)
        async with session.get(f"http://httpbin/headers?access_token={alice}&q=1", proxy=sleep.outbound) as rsp:
            assert rsp.status == 200 and seen[-1]["(path)"] == "/headers?q=1"  # nor in the URL (Istio's other default place)
        stranger = DemoIssuer().mint("alice")[0]  # the same issuer's name, signed with another key
        assert "Jwt verification fails" in (await call(stranger))[1]

        apply(mesh, policy("AuthorizationPolicy", "require-jwt", {"rules": [{"from": [{"source": {"requestPrincipals": [f"{ISSUER}/alice"]}}]}]}))
        await until(lambda: call(), lambda r: r[0] == 403, "the ALLOW of alice's token only")
        assert (await call(alice))[0] == 200 and (await call(bob))[0] == 403
        apply(mesh, policy("AuthorizationPolicy", "require-jwt", {"rules": [{
            "from": [{"source": {"requestPrincipals": ["*"]}}],
            "when": [{"key": "request.auth.claims[groups]", "values": ["group2"]}]}]}))
        await until(lambda: call(bob), lambda r: r[0] == 200, "the ALLOW of group2")
        assert (await call(alice))[0] == 403
    metrics = httpbin.metrics()
    assert 'inbound_http_jwt_total{outcome="verified",policy="foo/jwt-example"}' in metrics
    assert 'inbound_http_jwt_total{outcome="refused",policy="foo/jwt-example"}' in metrics


@pytest.fixture
async def identity_provider() -> AsyncIterator[tuple[DemoIssuer, int]]:
    """An identity provider outside the mesh: its keys at http://127.0.0.1:PORT/jwks.json, its
    tokens its own — (the issuer, that port)."""
    idp = DemoIssuer()

    async def keys(request: web.Request) -> web.Response:
        return web.json_response(idp.jwks())

    served = web.Application()
    served.router.add_get("/jwks.json", keys)
    runner, port = await serve_app(served)
    try:
        yield idp, port
    finally:
        await runner.cleanup()


async def test_the_control_plane_fetches_an_issuers_keys_from_its_jwks_uri(mesh: Mesh, headers_app, identity_provider):
    app_port, _seen = headers_app
    idp, idp_port = identity_provider
    httpbin = mesh.start_proxy("foo", "httpbin", app_port, name="httpbin")
    sleep = mesh.start_proxy("foo", "sleep", app_port, name="sleep")
    mesh.register("foo", "httpbin", "httpbin-0", httpbin.ports["inbound"], spiffe("foo", "httpbin"))
    rule = {"issuer": ISSUER, "jwksUri": f"http://127.0.0.1:{idp_port}/jwks.json", "audiences": ["httpbin"]}
    apply(mesh, policy("RequestAuthentication", "idp", {"jwtRules": [rule]}))
    good = idp.mint("carol", audiences=["httpbin"])[0]
    async with aiohttp.ClientSession() as session:
        await until(lambda: get(session, sleep.outbound, good), lambda r: r[0] == 200, "the keys fetched from the URL")
        assert "Jwt verification fails" in (await get(session, sleep.outbound, token(mesh, "carol", audiences=["httpbin"])))[1]
        assert "Audiences in Jwt are not allowed" in (await get(session, sleep.outbound, idp.mint("carol")[0]))[1]
        apply(mesh, policy("RequestAuthentication", "idp", {"jwtRules": [{**rule, "jwksUri": f"http://127.0.0.1:{idp_port}/nothing"}]}))
        status, body, _fate = await until(lambda: get(session, sleep.outbound, good), lambda r: "HTTP 404" in r[1],
                                          "the fetch to fail")
        assert status == 401 and "Jwks remote fetch is failed" in body


async def test_the_ingress_gateway_checks_tokens_and_addresses_before_the_mesh(mesh: Mesh, headers_app):
    """Istio's end-user authentication at the ingress gateway (``selector: {istio: ingressgateway}``
    in the mesh's root namespace) and its ingress access control (``ipBlocks``): the edge decides,
    and a sidecar inside the mesh is not asked."""
    app_port, seen = headers_app
    httpbin = mesh.start_proxy("foo", "httpbin", app_port, name="httpbin")
    gateway = mesh.start_gateway("foo", "httpbin.foo:8080")
    mesh.register("foo", "httpbin", "httpbin-0", httpbin.ports["inbound"], spiffe("foo", "httpbin"))
    edge = {"selector": {"matchLabels": {"istio": "ingressgateway"}}}
    docs = [{"apiVersion": POL, "kind": "RequestAuthentication", "metadata": {"name": "jwt", "namespace": "meshdojo-system"},
             "spec": {**edge, "jwtRules": [{"issuer": ISSUER}]}},
            {"apiVersion": POL, "kind": "AuthorizationPolicy", "metadata": {"name": "front-door", "namespace": "meshdojo-system"},
             "spec": {**edge, "rules": [{"from": [{"source": {"requestPrincipals": ["*"], "ipBlocks": ["127.0.0.0/8"]}}]}]}}]
    alice = token(mesh, "alice")
    url = f"http://127.0.0.1:{gateway.ports['outbound']}/headers"
    async with aiohttp.ClientSession() as session:

        async def call(bearer: str | None = None) -> tuple[int, str]:
            headers = {"x-meshdojo-debug": "1", **({"authorization": f"Bearer {bearer}"} if bearer else {})}
            async with session.get(url, headers=headers) as rsp:
                return rsp.status, rsp.headers.get("x-meshdojo-fate", "")

        await until(lambda: call(), lambda r: r[0] == 200, "the gateway to reach httpbin")
        apply(mesh, *docs)
        status, fate = await until(lambda: call(), lambda r: r[0] == 403, "the gateway to require a token")
        assert "authz=deny by meshdojo-system/front-door (no ALLOW rule matched)" in fate
        assert (await call("not.a.token"))[0] == 401
        seen.clear()
        status, fate = await call(alice)
        assert status == 200 and f"authn=jwt {ISSUER}/alice by meshdojo-system/jwt" in fate
        assert "authorization" not in seen[-1]  # the token stopped at the edge
        docs[1]["spec"]["rules"][0]["from"][0]["source"]["ipBlocks"] = ["10.0.0.0/8"]  # only callers from another network
        apply(mesh, docs[1])
        await until(lambda: call(alice), lambda r: r[0] == 403, "the gateway to refuse loopback callers")
    assert 'inbound_http_authz_deny_total{policy="meshdojo-system/front-door' in gateway.metrics()
    assert "inbound_http_jwt_total{" not in httpbin.metrics()  # the sidecar inside was not asked

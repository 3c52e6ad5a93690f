"""The operator API and the proxy-facing mesh API: authentication first, then behaviour."""

from __future__ import annotations

import json
import ssl

import aiohttp

from controlplane import ca
from controlplane.config import ControlPlaneConfig
from controlplane.server import ControlPlane
from controlplane.spiffe import SpiffeId
from controlplane.sslcontext import client_context


def admin(tmp_path) -> dict[str, str]:
    return {"Authorization": f"Bearer {(tmp_path / 'state' / 'admin-token').read_text().strip()}"}


ROUTES = [("GET", "/v1/health"), ("GET", "/v1/ca"), ("GET", "/v1/certificates"), ("POST", "/v1/tokens"),
          ("GET", "/v1/services"), ("PUT", "/v1/services/ns/svc"), ("DELETE", "/v1/services/ns/svc"),
          ("PUT", "/v1/services/ns/svc/endpoints/e"), ("GET", "/v1/watch/ns/svc"), ("GET", "/v1/resolve"),
          ("POST", "/v1/policies"), ("GET", "/v1/policies"), ("DELETE", "/v1/policies/FaultInjection/ns/x")]


async def test_every_operator_route_needs_the_admin_token(plane, tmp_path):
    async with aiohttp.ClientSession() as session:
        for method, path in ROUTES:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
                async with session.request(method, f"http://127.0.0.1:{plane.api_port}{path}", headers=headers) as rsp:
                    body = await rsp.json()
                    assert rsp.status == 401, (method, path)
                    assert set(body) == {"error"} and "admin token" in body["error"]
    token_file = tmp_path / "state" / "admin-token"
    assert token_file.stat().st_mode & 0o777 == 0o600


async def test_register_watch_and_bad_input(plane, tmp_path):
    base = f"http://127.0.0.1:{plane.api_port}"
    async with aiohttp.ClientSession(headers=admin(tmp_path)) as session:
        unmeshed = {"address": "127.0.0.1", "port": 1, "meshed": False}
        async with session.put(f"{base}/v1/services/emojivoto/emoji/endpoints/e0", json=unmeshed) as rsp:
            assert rsp.status == 404 and "register the service first" in (await rsp.json())["hint"]
        async with session.put(f"{base}/v1/services/emojivoto/emoji", json={"ports": [8080]}) as rsp:
            assert rsp.status == 200
        async with session.put(f"{base}/v1/services/emojivoto/emoji/endpoints/e0", json={"address": "127.0.0.1", "port": 1}) as rsp:
            assert rsp.status == 400 and "identity is required" in (await rsp.json())["error"]
        async with session.put(f"{base}/v1/services/Bad_Name/x", json={}) as rsp:
            assert rsp.status == 400
        async with session.post(f"{base}/v1/tokens", data=b"not json") as rsp:
            assert rsp.status == 400
        async with session.get(f"{base}/v1/watch/emojivoto/emoji") as watch:
            first = json.loads(await watch.content.readline())
            assert first == {"type": "no_endpoints", "snapshot": True, "service": "emoji.emojivoto.svc.cluster.local"}
            endpoint = {"address": "127.0.0.1", "port": 4143, "identity": "spiffe://meshdojo.local/ns/emojivoto/sa/emoji"}
            async with session.put(f"{base}/v1/services/emojivoto/emoji/endpoints/e0", json=endpoint) as rsp:
                assert rsp.status == 200
            added = json.loads(await watch.content.readline())
            assert added["type"] == "add" and added["endpoints"][0]["port"] == 4143
        async with session.get(f"{base}/v1/resolve", params={"name": "emoji.emojivoto.svc.cluster.local"}) as rsp:
            assert await rsp.json() == {"namespace": "emojivoto", "name": "emoji"}


async def test_mesh_api_needs_a_certificate_or_token(plane, tmp_path):
    anchor = (tmp_path / "state" / "ca" / "trust-anchor.crt").read_text()
    anonymous = client_context(anchor)
    base = f"https://127.0.0.1:{plane.mesh_port}"
    me = SpiffeId("emojivoto", "web")
    key = ca.new_key()
    csr = ca.csr_pem(ca.make_csr(me, key))
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/v1/watch", params={"name": "emoji"}, ssl=anonymous) as rsp:
            assert rsp.status == 401
        async with session.post(f"{base}/v1/certify", json={"csr": csr}, ssl=anonymous) as rsp:
            assert rsp.status == 401
        async with session.post(f"{base}/v1/certify", json={"csr": csr, "token": "forged.token"}, ssl=anonymous) as rsp:
            assert rsp.status == 401
        token = plane.identity.bootstrap_token(SpiffeId("emojivoto", "emoji"))
        async with session.post(f"{base}/v1/certify", json={"csr": csr, "token": token}, ssl=anonymous) as rsp:
            assert rsp.status == 403 and "may only obtain" in (await rsp.json())["error"]
        token = plane.identity.bootstrap_token(me)
        async with session.post(f"{base}/v1/certify", json={"csr": csr, "token": token}, ssl=anonymous) as rsp:
            issued = await rsp.json()
            assert rsp.status == 200 and issued["identity"] == me.uri
        # with the certificate: renewal without a token, and discovery
        with_cert = client_context(anchor, issued["certificateChainPEM"], ca.key_pem(key))
        csr2 = ca.csr_pem(ca.make_csr(me, ca.new_key()))
        async with session.post(f"{base}/v1/certify", json={"csr": csr2}, ssl=with_cert) as rsp:
            assert rsp.status == 200 and (await rsp.json())["serial"] != issued["serial"]
        async with session.get(f"{base}/v1/watch", params={"name": "nope"}, ssl=with_cert) as rsp:
            assert rsp.status == 404


async def test_restart_keeps_the_ca_and_the_registry(tmp_path):
    config = ControlPlaneConfig(state_dir=tmp_path / "state")
    first = ControlPlane(config)
    await first.start()
    anchor = first.identity.material.anchor.certificate
    first.registry.put_service("emojivoto", "emoji", (8080,))
    await first.stop()
    second = ControlPlane(config)
    await second.start()
    try:
        assert second.identity.material.anchor.certificate == anchor
        assert second.registry.get("emojivoto", "emoji") is not None
    finally:
        await second.stop()


def test_tls_contexts_are_tls13_only(tmp_path):
    anchor = ca.make_trust_anchor(ca.dt.datetime.now(ca.dt.timezone.utc))
    ctx = client_context(ca.cert_pem(anchor.certificate))
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3 and ctx.verify_mode == ssl.CERT_REQUIRED

"""Linkerd's default inbound policy through real proxies: deny until an AuthorizationPolicy
ALLOWs a caller; all-authenticated refuses plaintext callers; audit lets them in and counts
them. (Pure decisions: tests/test_decisions.py.)"""

from __future__ import annotations

import asyncio
import socket

import aiohttp

from tests.meshkit import Mesh, spiffe
from tests.test_faults_e2e import until
from tests.test_traffic_e2e import apply, doc, fetch


def _two(mesh: Mesh, echo_port: int, policy: str):
    server = mesh.start_proxy("emojivoto", "emoji", echo_port, "--mode", "permissive", "--default-inbound-policy", policy, name="emoji")
    client = mesh.start_proxy("emojivoto", "web", echo_port, name="web")
    mesh.register("emojivoto", "emoji", "emoji-0", server.ports["inbound"], spiffe("emojivoto", "emoji"))
    return server, client


def _plaintext_status(port: int, path: str = "/") -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: emoji\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1]), data


async def test_deny_until_an_authorization_policy_allows_the_caller(mesh: Mesh, echo_port: int):
    server, client = _two(mesh, echo_port, "deny")
    assert server.config()["defaultInboundPolicy"] == "deny"
    async with aiohttp.ClientSession() as session:
        status, headers, body = await fetch(session, client.outbound, "http://emoji/", headers={"x-meshdojo-debug": "1"})
        assert status == 403 and headers["x-meshdojo-error"] == "authz_denied"
        assert "denied by the default inbound policy deny (config.linkerd.io/default-inbound-policy)" in body
        assert "inbound: authz=deny by the default inbound policy deny" in headers["x-meshdojo-fate"]
        apply(mesh, doc("AuthorizationPolicy", "allow-web", {"targetRef": {"kind": "Service", "name": "emoji"},
                                                             "rules": [{"from": [{"source": {"serviceAccounts": ["web"]}}]}]}))
        await until(lambda: fetch(session, client.outbound, "http://emoji/"), lambda r: r[0] == 200, "the ALLOW to let web in")
    assert (await asyncio.to_thread(_plaintext_status, server.ports["inbound"]))[0] == 403  # nobody else
    metrics = server.metrics()
    assert 'inbound_http_authz_deny_total{policy="default:deny"}' in metrics
    assert 'inbound_http_authz_allow_total{policy="emojivoto/allow-web"}' in metrics


async def test_all_authenticated_refuses_plaintext_and_audit_counts_it(mesh: Mesh, echo_port: int):
    server, client = _two(mesh, echo_port, "all-authenticated")
    async with aiohttp.ClientSession() as session:
        assert (await fetch(session, client.outbound, "http://emoji/"))[0] == 200  # mutual TLS: an identity
    status, raw = await asyncio.to_thread(_plaintext_status, server.ports["inbound"])
    assert status == 403 and b"default inbound policy all-authenticated" in raw
    audited = mesh.start_proxy("emojivoto", "voting", echo_port, "--mode", "permissive", "--default-inbound-policy", "audit",
                               name="voting")
    assert (await asyncio.to_thread(_plaintext_status, audited.ports["inbound"]))[0] == 200
    assert 'inbound_http_authz_audit_total{policy="default:audit"} 1.0' in audited.metrics()

"""Istio's *Egress TLS Origination* task with Gateway API's BackendTLSPolicy: the app calls a
ServiceEntry's host in plain HTTP and its sidecar reaches the host over TLS, checking the
server's certificate against ``validation.hostname`` with the system's CAs. Parsing and the
lookup (pure), then through a real proxy to a real HTTPS server whose CA the proxy's "system"
trusts ($SSL_CERT_FILE)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime as dt
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from controlplane import backendtls, ca
from controlplane.policy import PolicyError, parse
from tests.meshkit import Mesh
from tests.test_faults_e2e import until
from tests.test_traffic_e2e import apply, doc, fetch

NS = "emojivoto"


def policy(hostname: str = "secure.example", section: str | None = "http", **validation) -> dict:
    ref = {"group": "networking.istio.io", "kind": "ServiceEntry", "name": "secure", **({"sectionName": section} if section else {})}
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "BackendTLSPolicy", "metadata": {"name": "secure-tls", "namespace": NS},
            "spec": {"targetRefs": [ref], "validation": {"hostname": hostname, "wellKnownCACertificates": "System", **validation}}}


@pytest.mark.parametrize("change, field, says", [
    (lambda s: s["targetRefs"][0].update(kind="Service", group=""), "spec.targetRefs[0].kind", "reached over mutual TLS by the sidecars"),
    (lambda s: s["validation"].update(caCertificateRefs=[{"kind": "ConfigMap", "name": "ca"}]), "spec.validation.caCertificateRefs",
     "not here yet"),
    (lambda s: s["validation"].pop("wellKnownCACertificates"), "spec.validation.wellKnownCACertificates", "required here: System"),
    (lambda s: s["validation"].update(hostname="*.example"), "spec.validation.hostname", "expected a host name"),
    (lambda s: s.update(targetRefs=[]), "spec.targetRefs", "non-empty"),
])
def test_what_cannot_be_done_is_refused_naming_the_field(change, field, says):
    bad = copy.deepcopy(policy())
    change(bad["spec"])
    with pytest.raises(PolicyError) as refused:
        parse(bad, "tls.yaml", 0)
    assert refused.value.field == field and says in refused.value.message


def test_get_shows_the_entry_its_port_and_the_name_checked():
    from sandbox.resourcetable import table

    assert table([{"document": policy(), "expiresAt": None}])[1] == (
        NS, "BackendTLSPolicy", "secure-tls", "se/secure:http", "TLS to secure.example (System CAs)", "-")


def test_the_policy_of_an_entrys_port_is_found_before_the_whole_entrys():
    whole = parse(policy(section=None), "t", 0).spec
    port = parse(policy(hostname="other.example"), "t", 0).spec
    found = {(NS, "a-whole"): whole, (NS, "b-port"): port, ("default", "elsewhere"): port}
    assert backendtls.for_port(found, NS, "secure", "http") == ("b-port", port)
    assert backendtls.for_port(found, NS, "secure", "https") == ("a-whole", whole)
    assert backendtls.for_port(found, NS, "other", "http") is None


def _https_files(directory: Path, name: str) -> tuple[Path, Path, Path]:
    """A CA (the proxy's "system" trusts it) and a server certificate for ``name`` under it."""
    now = dt.datetime.now(dt.UTC)
    anchor = ca.make_trust_anchor(now)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(anchor.certificate.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(anchor.key, hashes.SHA256()))
    files = (directory / "system-ca.pem", directory / "server.pem", directory / "server.key")
    files[0].write_text(ca.cert_pem(anchor.certificate))
    files[1].write_text(ca.cert_pem(leaf))
    files[2].write_text(ca.key_pem(key))
    return files


@contextlib.asynccontextmanager
async def https_server(cert: Path, key: Path) -> AsyncIterator[tuple[int, list[dict]]]:
    """A real HTTPS server with ``cert``: (its port, what it was asked: each request's SNI, Host and path)."""
    seen: list[dict] = []
    names: list[str | None] = []  # the SNI of each handshake

    async def handle(request: web.Request) -> web.Response:
        seen.append({"sni": names[-1], "host": request.host, "path": request.path_qs})
        return web.json_response({"served_by": "secure", "tls": True})

    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    server_ctx.sni_callback = lambda _sslobj, name, _ctx: names.append(name)  # type: ignore[assignment,func-returns-value]
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    try:
        yield site._server.sockets[0].getsockname()[1], seen  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


async def test_the_sidecar_originates_tls_to_the_entrys_host_and_checks_its_certificate(mesh: Mesh, echo_port: int, tmp_path,
                                                                                          monkeypatch):
    system_ca, cert, key = _https_files(tmp_path, "secure.example")
    monkeypatch.setenv("SSL_CERT_FILE", str(system_ca))  # the proxy's "system" CAs (as a sidecar image's would be)
    client = mesh.start_proxy(NS, "web", echo_port, name="web")
    async with https_server(cert, key) as (https_port, seen):
        await _originated_by_the_policy(mesh, client, https_port, seen)


async def _originated_by_the_policy(mesh: Mesh, client, https_port: int, seen: list[dict]) -> None:
    entry = doc("ServiceEntry", "secure", {"hosts": ["secure.example"], "resolution": "STATIC",
                                           "ports": [{"number": 80, "name": "http", "protocol": "HTTP", "targetPort": https_port}],
                                           "endpoints": [{"address": "127.0.0.1"}]})
    try:
        async with aiohttp.ClientSession() as session:
            # the entry alone: the app's plain HTTP goes to a TLS port as it is, and the server cannot read it
            apply(mesh, entry)
            status, _headers, _body = await until(lambda: fetch(session, client.outbound, "http://secure.example/plain"),
                                                  lambda r: r[0] != 502 or "unknown" not in r[2], "the entry to arrive")
            assert status >= 400 and not seen

            # the BackendTLSPolicy: the sidecar originates TLS, SNI secure.example, the certificate checked
            apply(mesh, entry, policy())
            status, headers, body = await until(
                lambda: fetch(session, client.outbound, "http://secure.example/get?x=1", headers={"x-meshdojo-debug": "1"}),
                lambda r: r[0] == 200, "TLS originated by the sidecar")
            assert json.loads(body) == {"served_by": "secure", "tls": True}
            assert seen[-1] == {"sni": "secure.example", "host": "secure.example", "path": "/get?x=1"}
            assert ("egress=ServiceEntry emojivoto/secure, TLS originated to secure.example (BackendTLSPolicy emojivoto/secure-tls)"
                    in headers["x-meshdojo-fate"])

            # a server whose certificate does not carry the name asked for: refused, and the fate says why
            apply(mesh, entry, policy(hostname="other.example"))
            status, headers, body = await until(lambda: fetch(session, client.outbound, "http://secure.example/wrong"),
                                                lambda r: r[0] != 200, "the other hostname to be checked")
            assert status == 502 and headers["x-meshdojo-error"] == "connect_failed", (status, headers, body)
            assert "TLS handshake with 127.0.0.1" in body and "CERTIFICATE_VERIFY_FAILED" in body, body
            # (requests sent before the new policy arrived went with the old one:) from now on none reaches the server
            assert (await fetch(session, client.outbound, "http://secure.example/refused"))[0] == 502
            assert "/refused" not in [s["path"] for s in seen]
    finally:
        client.proc.terminate()  # the proxy's pooled TLS connections end from its side first: none is left half-closed
        await asyncio.to_thread(client.proc.wait, 10)

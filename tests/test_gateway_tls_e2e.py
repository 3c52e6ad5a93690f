"""Istio's Secure Gateways task at a real ingress gateway: TLS ended at the gateway with the
certificate of a Secret an HTTPS listener names, picked by the client's server name (SNI).

What it proves, through real sockets: no Secret, no handshake; a Secret created later is served
without a restart; a second host gets its own certificate (the task's "multiple hosts"); a name no
listener takes is refused in the handshake; the requests inside follow the routes of HTTPS
listeners only, and the backend is told ``x-forwarded-proto: https``; an HTTP listener's route
redirects to https; a rotated Secret is served to the next client.
"""

from __future__ import annotations

import base64
import hashlib
import ssl

import aiohttp
import pytest

from tests.apps import recording_app
from tests.examplecerts import ca_pem, example_ca, https_get, server_cert
from tests.meshkit import Mesh, spiffe
from tests.test_faults_e2e import until
from tests.test_gateway_e2e import gateway, route
from tests.test_traffic_e2e import apply


def secret(name: str, cert_key: tuple[str, str], namespace: str = "foo") -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls", "metadata": {"name": name, "namespace": namespace},
            "data": {"tls.crt": base64.b64encode(cert_key[0].encode()).decode(), "tls.key": base64.b64encode(cert_key[1].encode()).decode()}}


def https_listener(name: str, host: str, credential: str) -> dict:
    return {"name": name, "port": 443, "protocol": "HTTPS", "hostname": host,
            "tls": {"mode": "Terminate", "certificateRefs": [{"kind": "Secret", "group": "", "name": credential}]}}


async def refused_handshake(port: int, host: str, cadata: str) -> bool:
    """Whether the gateway refused the handshake (with TLS's unrecognized_name alert; Envoy, with
    no filter chain for the name, just closes the connection: curl says SSL_ERROR_SYSCALL)."""
    try:
        await https_get(port, host, "/status/200", cadata)
    except (ssl.SSLError, ConnectionResetError):
        return True
    return False


async def served(port: int, host: str, path: str, cadata: str) -> tuple | None:
    """An answer over TLS, or None while the gateway does not serve the certificate asked for yet
    (the handshake ended, or a certificate the CA did not sign)."""
    try:
        return await https_get(port, host, path, cadata)
    except (ssl.SSLError, ConnectionResetError):
        return None


async def test_istios_secure_gateways_task_at_the_gateway(mesh: Mesh):
    def record(request) -> dict[str, str]:
        return {"(path)": request.path_qs, "host": request.headers.get("host", ""), "proto": request.headers.get("x-forwarded-proto", "")}

    async with recording_app(record) as (httpbin_port, httpbin_seen), recording_app(record) as (hello_port, hello_seen):
        httpbin = mesh.start_proxy("foo", "httpbin", httpbin_port, name="httpbin")
        hello = mesh.start_proxy("foo", "helloworld", hello_port, name="helloworld")
        edge = mesh.start_gateway("foo", "httpbin.foo:8000", "--https-port", "0")
        mesh.register("foo", "httpbin", "httpbin-0", httpbin.ports["inbound"], spiffe("foo", "httpbin"))
        mesh.register("foo", "helloworld", "helloworld-0", hello.ports["inbound"], spiffe("foo", "helloworld"))
        tls_port, plain = edge.ports["https"], f"http://127.0.0.1:{edge.ports['outbound']}"
        example = example_ca()
        cadata = ca_pem(example)

        # the task's Gateway and route, before its Secret exists: no certificate, no handshake
        apply(mesh, gateway([https_listener("https", "httpbin.example.com", "httpbin-credential")]),
              route("httpbin", {"hostnames": ["httpbin.example.com"], "rules": [{"backendRefs": [{"name": "httpbin", "port": 8000}]}]}))
        async def refused_for_its_secret() -> bool:  # (before the Gateway reaches the gateway, no listener takes the name)
            return await refused_handshake(tls_port, "httpbin.example.com", cadata) and "Secret httpbin-credential" in edge.log_text()

        await until(refused_for_its_secret, lambda refused: refused, "the HTTPS listener to be known and its missing Secret to "
                                                                      "refuse the handshake, saying so in the gateway's log")

        # kubectl create secret tls httpbin-credential ...: served without a restart
        status, body = mesh.call("POST", "/v1/secrets", {"document": secret("httpbin-credential", server_cert(example, "httpbin.example.com"))})
        assert status == 200 and body["action"] == "created" and body["secret"]["hosts"] == ["httpbin.example.com"], body
        status, headers, _, subject = await until(lambda: served(tls_port, "httpbin.example.com", "/status/418", cadata),
                                                  lambda r: r is not None and r[0] == 200, "the Secret's certificate to be served")
        assert subject == "httpbin.example.com" and "route=foo/httpbin#0, backend=httpbin" in headers["x-meshdojo-fate"], headers
        assert httpbin_seen[-1] == {"(path)": "/status/418", "host": f"httpbin.example.com:{tls_port}", "proto": "https"}
        listed = mesh.call("GET", "/v1/secrets")[1]["items"]
        assert listed == [{"namespace": "foo", "name": "httpbin-credential", "type": "kubernetes.io/tls", "hosts": ["httpbin.example.com"],
                           "notAfter": listed[0]["notAfter"], "usedBy": ["foo/httpbin-gateway:https"]}]  # never the key

        # the plain port serves the routes of HTTP listeners only: there are none
        async with aiohttp.ClientSession() as session:
            async with session.get(plain + "/status/418", headers={"host": "httpbin.example.com", "x-meshdojo-debug": "1"}) as rsp:
                assert rsp.status == 404 and "no_route" in rsp.headers.get("x-meshdojo-fate", ""), rsp.headers

        # "Configure a TLS ingress gateway for multiple hosts": each host its own certificate, by SNI
        apply(mesh, gateway([https_listener("https-httpbin", "httpbin.example.com", "httpbin-credential"),
                             https_listener("https-helloworld", "helloworld.example.com", "helloworld-credential"),
                             {"name": "http", "port": 80, "protocol": "HTTP", "hostname": "httpbin.example.com"}]),
              route("httpbin", {"parentRefs": [{"name": "httpbin-gateway", "sectionName": "https-httpbin"}],
                                "hostnames": ["httpbin.example.com"], "rules": [{"backendRefs": [{"name": "httpbin", "port": 8000}]}]}),
              route("helloworld", {"hostnames": ["helloworld.example.com"], "rules": [{"backendRefs": [{"name": "helloworld", "port": 5000}]}]}),
              route("to-https", {"parentRefs": [{"name": "httpbin-gateway", "sectionName": "http"}], "hostnames": ["httpbin.example.com"],
                                 "rules": [{"filters": [{"type": "RequestRedirect",
                                                         "requestRedirect": {"scheme": "https", "statusCode": 301}}]}]}))
        assert mesh.call("POST", "/v1/secrets", {"document": secret("helloworld-credential", server_cert(example, "helloworld.example.com"))})[0] == 200
        status, _, _, subject = await until(lambda: served(tls_port, "helloworld.example.com", "/hello", cadata),
                                            lambda r: r is not None and r[0] == 200, "the second host's certificate")
        assert subject == "helloworld.example.com" and hello_seen[-1]["(path)"] == "/hello" and hello_seen[-1]["proto"] == "https"
        assert (await https_get(tls_port, "httpbin.example.com", "/status/200", cadata))[3] == "httpbin.example.com"
        assert await refused_handshake(tls_port, "other.example.com", cadata)  # no listener's name
        assert "TLS handshake for other.example.com refused: no HTTPS listener" in edge.log_text()
        async with aiohttp.ClientSession() as session:  # HTTP to HTTPS, as the task's redirect does it
            async with session.get(plain + "/status/200", headers={"host": "httpbin.example.com"}, allow_redirects=False) as rsp:
                assert rsp.status == 301 and rsp.headers["location"] == "https://httpbin.example.com/status/200", rsp.headers

        # rotation: kubectl create secret ... --dry-run=client -o yaml | kubectl apply -f -, and the next client gets the new one
        renewed = example_ca("example Inc. 2")
        assert mesh.call("POST", "/v1/secrets", {"document": secret("httpbin-credential", server_cert(renewed, "httpbin.example.com"))})[1]["action"] == "configured"
        await until(lambda: served(tls_port, "httpbin.example.com", "/status/200", ca_pem(renewed)), lambda r: r is not None and r[0] == 200,
                    "the rotated certificate (trusted by the new CA only)")
        with pytest.raises(ssl.SSLCertVerificationError):
            await https_get(tls_port, "httpbin.example.com", "/status/200", cadata)
    config = edge.config()["policies"]["gatewayTls"]
    assert {(t["hostname"], t["secret"], t["loaded"]) for t in config} == {
        ("httpbin.example.com", "httpbin-credential", True), ("helloworld.example.com", "helloworld-credential", True)}


def mutual_secret(name: str, cert_key: tuple[str, str], client_ca: str, namespace: str = "foo") -> dict:
    """As Istio's task makes it: kubectl create secret generic NAME --from-file=tls.key=... --from-file=tls.crt=...
    --from-file=ca.crt=..."""
    doc = secret(name, cert_key, namespace)
    return {**doc, "type": "Opaque", "data": {**doc["data"], "ca.crt": base64.b64encode(client_ca.encode()).decode()}}


async def answered(port: int, host: str, cadata: str, client: tuple[str, str] | None, extra: str = "") -> tuple | None:
    """An answer over TLS, or None: the gateway ended the connection (in the handshake, or right
    after it: TLS 1.3 checks a client's certificate last)."""
    try:
        return await https_get(port, host, "/headers", cadata, client=client, extra=extra)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return None


def refused_count(gateway, reason: str) -> float:
    for line in gateway.metrics().splitlines():
        if line.startswith(f'gateway_tls_refused_total{{reason="{reason}"}}'):
            return float(line.split()[-1])
    return 0.0


async def test_istios_mutual_tls_ingress_gateway(mesh: Mesh):
    """The task's "Configure a mutual TLS ingress gateway": the Secret holds ca.crt too, the
    listener's option says MUTUAL, and only a client with a certificate that CA signed gets in;
    the backend is told who it is (x-forwarded-client-cert), whatever the client claimed."""
    async with recording_app(lambda request: {"xfcc": request.headers.get("x-forwarded-client-cert", "")}) as (port, seen):
        httpbin = mesh.start_proxy("foo", "httpbin", port, name="httpbin")
        edge = mesh.start_gateway("foo", "httpbin.foo:8000", "--https-port", "0")
        mesh.register("foo", "httpbin", "httpbin-0", httpbin.ports["inbound"], spiffe("foo", "httpbin"))
        tls_port = edge.ports["https"]
        example, stranger = example_ca(), example_ca("someone else")
        cadata = ca_pem(example)
        client, untrusted = server_cert(example, "client.example.com"), server_cert(stranger, "client.example.com")

        def listener(mode: str) -> dict:
            return {**https_listener("https", "httpbin.example.com", "httpbin-credential"),
                    "tls": {"mode": "Terminate", "certificateRefs": [{"name": "httpbin-credential"}],
                            "options": {"gateway.istio.io/tls-terminate-mode": mode}}}

        the_route = route("httpbin", {"hostnames": ["httpbin.example.com"], "rules": [{"backendRefs": [{"name": "httpbin", "port": 8000}]}]})
        # MUTUAL with the first Secret (no ca.crt): nothing to check clients against, so no handshake, in TLS's words
        assert mesh.call("POST", "/v1/secrets", {"document": secret("httpbin-credential", server_cert(example, "httpbin.example.com"))})[0] == 200
        apply(mesh, gateway([listener("MUTUAL")]), the_route)

        async def refused_for_its_ca() -> bool:
            try:
                await https_get(tls_port, "httpbin.example.com", "/", cadata, client=client)
            except ssl.SSLError as exc:
                return "UNRECOGNIZED_NAME" in str(exc) and "has no ca.crt" in edge.log_text()
            return False

        await until(refused_for_its_ca, lambda refused: refused, "the MUTUAL listener refusing for want of a ca.crt, with an alert")
        assert refused_count(edge, "no_client_ca") >= 1

        # the task: delete the Secret, create it again with ca.crt (generic), and the listener serves
        assert mesh.call("POST", "/v1/secrets", {"document": mutual_secret("httpbin-credential", server_cert(example, "httpbin.example.com"),
                                                                           cadata)})[1]["secret"]["clientCA"] == "CN=example.com,O=example Inc."
        forged = "x-forwarded-client-cert: Subject=\"CN=admin\"\r\n"
        status, headers, _, _ = await until(lambda: answered(tls_port, "httpbin.example.com", cadata, client, forged),
                                            lambda r: r is not None and r[0] == 200, "a client with a certificate the CA signed")
        der = ssl.PEM_cert_to_DER_cert(client[0])
        assert seen[-1]["xfcc"] == (f'Hash={hashlib.sha256(der).hexdigest()};Subject="CN=client.example.com";'
                                    "DNS=client.example.com"), seen[-1]  # the certificate's word, not the client's
        # "Attempt to send an HTTPS request using the prior approach and see how it fails"
        assert await answered(tls_port, "httpbin.example.com", cadata, None) is None
        assert await answered(tls_port, "httpbin.example.com", cadata, untrusted) is None
        async def both_counted() -> float:
            return refused_count(edge, "no_client_certificate") * refused_count(edge, "client_certificate_untrusted")

        await until(both_counted, lambda n: n >= 1, "both refusals counted")
        said = edge.log_text()
        assert "the client presented no certificate, which this MUTUAL listener requires" in said, said
        assert "the client's certificate is not signed by the listener's ca.crt" in said, said

        # OPTIONAL_MUTUAL: a certificate is checked when given, and a client without one gets in too
        apply(mesh, gateway([listener("OPTIONAL_MUTUAL")]), the_route)
        await until(lambda: answered(tls_port, "httpbin.example.com", cadata, None), lambda r: r is not None and r[0] == 200,
                    "a client without a certificate at the OPTIONAL_MUTUAL listener")
        assert seen[-1]["xfcc"] == ""
        assert (await answered(tls_port, "httpbin.example.com", cadata, client))[0] == 200 and "CN=client.example.com" in seen[-1]["xfcc"]
        assert await answered(tls_port, "httpbin.example.com", cadata, untrusted) is None
    config = edge.config()["policies"]["gatewayTls"]
    assert [(t["secret"], t["mode"], t["loaded"]) for t in config] == [("httpbin-credential", "OPTIONAL_MUTUAL", True)]

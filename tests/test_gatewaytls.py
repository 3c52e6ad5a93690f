"""The gateway's TLS decisions, without sockets: which context a server name gets, or why none
(each a reason label of gateway_tls_refused_total); how a failed handshake is named; and the
x-forwarded-client-cert the backend is told, from a real handshake done in memory."""

from __future__ import annotations

import hashlib
import ssl

from cryptography import x509

from controlplane.gatewayapi import TlsListener
from controlplane.sslcontext import load_chain
from proxy.gatewaytls import (
    NO_CLIENT_CA,
    NO_CLIENT_CERT,
    NO_SECRET,
    TIMEOUT,
    UNKNOWN_NAME,
    UNTRUSTED_CLIENT_CERT,
    GatewayCertificates,
    Refusal,
    client_certificate_header,
    refused_handshake,
)
from tests.examplecerts import ca_pem, example_ca, issued_with_subject, server_cert


def certificates(listeners: tuple[TlsListener, ...]) -> GatewayCertificates:
    return GatewayCertificates(None, None, lambda: listeners)  # type: ignore[arg-type]  # no watch: apply() by hand


def test_a_server_name_gets_its_listeners_context_for_its_mode_or_a_reason():
    example = example_ca()
    cert, key = server_cert(example, "httpbin.example.com")
    gw = certificates((TlsListener("httpbin.example.com", "plain", "foo/g"), TlsListener("mutual.example.com", "plain", "foo/g", "MUTUAL"),
                       TlsListener("strict.example.com", "with-ca", "foo/g", "MUTUAL"), TlsListener("gone.example.com", "gone", "foo/g")))
    gw.apply({"plain": {"certificateChainPEM": cert, "privateKeyPEM": key},
              "with-ca": {"certificateChainPEM": cert, "privateKeyPEM": key, "caPEM": ca_pem(example)}})
    assert gw.choose("httpbin.example.com").verify_mode == ssl.CERT_NONE
    assert gw.choose("strict.example.com").verify_mode == ssl.CERT_REQUIRED
    for name, reason, words in (("other.example.com", UNKNOWN_NAME, "no HTTPS listener"), ("gone.example.com", NO_SECRET, "Secret gone"),
                                ("mutual.example.com", NO_CLIENT_CA, "Secret plain has no ca.crt")):
        refused = gw.choose(name)
        assert isinstance(refused, Refusal) and refused.reason == reason and words in refused.message, (name, refused)
    assert gw.loaded == {"plain": False, "with-ca": True}


def test_a_failed_handshake_is_named_by_its_cause():
    def failed(reason: str) -> ssl.SSLError:
        exc = ssl.SSLError(1, "x")
        exc.reason = reason
        return exc

    assert refused_handshake(failed("PEER_DID_NOT_RETURN_A_CERTIFICATE")) == NO_CLIENT_CERT
    assert refused_handshake(failed("CERTIFICATE_VERIFY_FAILED")) == UNTRUSTED_CLIENT_CERT
    assert refused_handshake(TimeoutError()) == TIMEOUT
    assert refused_handshake(failed("WRONG_VERSION_NUMBER")) == "handshake_failed"


def handshake(server: ssl.SSLContext, client: ssl.SSLContext, host: str) -> ssl.SSLObject:
    """A TLS handshake between two in-memory ends; the server's end, done."""
    pipes = [ssl.MemoryBIO() for _ in range(4)]
    ends = (server.wrap_bio(pipes[0], pipes[1], server_side=True), client.wrap_bio(pipes[2], pipes[3], server_hostname=host))
    done = [False, False]
    while not all(done):
        for i, end in enumerate(ends):
            if not done[i]:
                try:
                    end.do_handshake()
                    done[i] = True
                except ssl.SSLWantReadError:
                    pass
        pipes[0].write(pipes[3].read())
        pipes[2].write(pipes[1].read())
    return ends[0]


def test_the_backend_is_told_the_verified_client_as_envoy_writes_it():
    example = example_ca()
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    load_chain(server, *server_cert(example, "httpbin.example.com"))
    server.verify_mode = ssl.CERT_REQUIRED
    server.load_verify_locations(cadata=ca_pem(example))
    cases = [server_cert(example, "client.example.com"),  # with a DNS name, as examplecerts makes them
             *(issued_with_subject(example, cn) for cn in ("client.example.com", 'odd, "quoted" +name ', "#crlf\r\nx-admin: yes"))]
    for cert, key in cases:
        client = ssl.create_default_context(cadata=ca_pem(example))
        load_chain(client, cert, key)
        tls = handshake(server, client, "httpbin.example.com")
        der = tls.getpeercert(binary_form=True)
        header = client_certificate_header(der, tls.getpeercert())
        subject = x509.load_der_x509_certificate(der).subject.rfc4514_string()  # cryptography's reading, for comparison
        assert header.startswith(f"Hash={hashlib.sha256(der).hexdigest()};Subject=\"")
        assert "\r" not in header and "\n" not in header and header.isascii(), header  # cannot add a header line
        if "\r" in subject:
            assert "%0D%0A" in header, header
        else:
            assert f'Subject="{subject}"' in header, (header, subject)
        assert header.endswith(";DNS=client.example.com") == (cert == cases[0][0]), header

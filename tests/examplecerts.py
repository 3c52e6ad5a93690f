"""Certificates as Istio's Secure Gateways task makes them with openssl: an ``example.com`` CA
and a server certificate for a host, and a TLS client that sends a server name (curl's
``--resolve``) and reads one HTTP/1.1 response."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


def example_ca(org: str = "example Inc.") -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org), x509.NameAttribute(NameOID.COMMON_NAME, "example.com")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1)).add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def server_cert(ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], host: str) -> tuple[str, str]:
    """(the certificate's PEM, its key's PEM) for ``host``, signed by ``ca``."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(ca[0].subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False).sign(ca[1], hashes.SHA256()))
    return _pem(cert), _key_pem(key)


def ca_pem(ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]) -> str:
    return _pem(ca[0])


async def https_get(port: int, host: str, path: str, cadata: str, timeout: float = 10.0,
                    address: str = "127.0.0.1", client: tuple[str, str] | None = None,
                    extra: str = "") -> tuple[int, dict[str, str], str, str]:
    """GET https://host:port/path at ``address``, the CA trusted and the name checked (curl's
    ``--cacert`` and ``--resolve``), with ``client``'s certificate and key if given (``--cert``,
    ``--key``) and ``extra`` header lines: (status, headers, body, the served certificate's
    subject). A server that ends the connection after the handshake (TLS 1.3 checks a client's
    certificate last) raises ConnectionResetError."""
    from controlplane.sslcontext import load_chain

    ctx = ssl.create_default_context(cadata=cadata)
    if client is not None:
        load_chain(ctx, *client)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port, ssl=ctx, server_hostname=host), timeout)
    try:
        subject = dict(x[0] for x in writer.get_extra_info("peercert")["subject"])["commonName"]
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\nX-Meshdojo-Debug: 1\r\n{extra}\r\n".encode())
        raw = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    if not raw:
        raise ConnectionResetError("the server closed the connection without an answer")
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body.decode(errors="replace"), subject


def issued_with_subject(ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], common_name: str,
                        organization: str = "client organization") -> tuple[str, str]:
    """A client certificate with any common name (and an organization, as Istio's task's client
    certificate has), signed by ``ca``: (its PEM, its key's PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name), x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(ca[0].subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1)).sign(ca[1], hashes.SHA256()))
    return _pem(cert), _key_pem(key)

"""TLS 1.3 contexts built from in-memory PEM, for the proxies and the control plane.

Python's ``ssl`` loads a private key only from a path. The key must never reach persistent
storage, so it goes through an anonymous in-memory file (``memfd_create``) where the platform
has one, and otherwise through a 0600 file in a private directory that is removed right after
loading.
"""

from __future__ import annotations

import os
import shutil
import ssl
import tempfile


def load_chain(ctx: ssl.SSLContext, chain_pem: str, key_pem: str) -> None:
    blob = (chain_pem + key_pem).encode()
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("meshdojo-identity", os.MFD_CLOEXEC)
        try:
            os.write(fd, blob)
            ctx.load_cert_chain(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        return
    directory = tempfile.mkdtemp(prefix="meshdojo-")
    try:
        path = os.path.join(directory, "identity.pem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, blob)
        finally:
            os.close(fd)
        ctx.load_cert_chain(path)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def server_context(anchor_pem: str, chain_pem: str, key_pem: str, *, require_client_cert: bool = True) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    ctx.load_verify_locations(cadata=anchor_pem)
    load_chain(ctx, chain_pem, key_pem)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def client_context(anchor_pem: str, chain_pem: str | None = None, key_pem: str | None = None) -> ssl.SSLContext:
    """Verifies the server's chain against the trust anchor. Names are checked by the caller
    against the SPIFFE ID discovery promised (``ssl`` only knows DNS names)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=anchor_pem)
    if chain_pem and key_pem:
        load_chain(ctx, chain_pem, key_pem)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def peer_identity(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> str | None:
    """The single URI SAN of a verified peer certificate, or None."""
    if ssl_object is None:
        return None
    cert = ssl_object.getpeercert()
    if not cert:
        return None
    uris = [value for kind, value in cert.get("subjectAltName", ()) if kind == "URI"]
    return uris[0] if len(uris) == 1 else None

"""Layering, checked mechanically: the proxy never imports the UI, the launcher or a web
framework — nor ``cryptography``, which costs ~8 MB resident (its keys and CSRs are made by
``proxy.keygen`` in a child process); the control plane never imports the UI."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(("module", "forbidden"), [
    ("proxy.app", ("tui", "sandbox", "textual", "aiohttp", "cryptography", "yaml")),
    ("proxy.__main__", ("tui", "sandbox", "textual", "aiohttp", "cryptography", "yaml")),
    ("controlplane.server", ("tui", "textual", "sandbox", "proxy")),
])
def test_imports(module, forbidden):
    code = f"import sys, {module}; print(' '.join(sorted(sys.modules)))"
    loaded = set(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split())
    bad = sorted(m for m in loaded if m.split(".")[0] in forbidden)
    assert bad == [], f"{module} pulls in {bad}"


@pytest.mark.parametrize("openssl", [None, ""], ids=["openssl-req", "python-child"])
async def test_keygen_makes_a_key_and_a_csr_the_ca_accepts_in_a_child_process(openssl):
    import datetime as dt
    import shutil

    from cryptography import x509

    from controlplane import ca
    from controlplane.spiffe import SpiffeId
    from controlplane.sslcontext import server_context
    from proxy.keygen import key_and_csr

    if openssl is None and shutil.which("openssl") is None:
        pytest.skip("no openssl on PATH")
    me = SpiffeId("emojivoto", "web")
    key_pem, csr_pem = await key_and_csr(me.uri, openssl=openssl)
    key = ca.load_key(key_pem.encode())
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    assert key.curve.name == "secp256r1" and csr.public_key().public_numbers() == key.public_key().public_numbers()
    assert csr.is_signature_valid
    assert ca.requested_identity(csr) == me.uri
    now = dt.datetime.now(dt.UTC)
    anchor = ca.make_trust_anchor(now)
    issuer = ca.make_issuer(anchor, now)
    cert = ca.sign_workload(csr, me, issuer, now, dt.timedelta(hours=24))
    assert ca.uri_sans(cert) == [me.uri]
    chain = ca.cert_pem(cert) + ca.cert_pem(issuer.certificate)
    server_context(ca.cert_pem(anchor.certificate), chain, key_pem)  # the proxy can serve with them


async def test_keygen_failures_are_errors_not_keys():
    from proxy.keygen import KeygenError, key_and_csr, openssl_argv, split_openssl_output

    with pytest.raises(KeygenError, match="exit 1"):
        await key_and_csr("spiffe://meshdojo.local/ns/a/sa/b", openssl="/bin/false")
    with pytest.raises(ValueError, match="SPIFFE ID"):
        openssl_argv("spiffe://x/ns/a/sa/b,DNS:evil.example", "openssl")
    with pytest.raises(ValueError, match="no key"):
        split_openssl_output("-----BEGIN CERTIFICATE REQUEST-----\nAA\n-----END CERTIFICATE REQUEST-----\n")


def test_the_ui_and_the_cli_reach_the_sandbox_through_the_backend_seam():
    """Lifecycle, workloads, logs and the operator API go through sandbox.backends; what the UI
    and the CLI may still take from sandbox.local directly is its error type and a pure lookup."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    allowed = {"SandboxError", "find_deployment"}
    used = {}
    for path in [*root.glob("tui/**/*.py"), *root.glob("sandbox/cli/*.py")]:
        for name in re.findall(r"\blocal\.([A-Za-z_]+)", path.read_text()):
            if name not in allowed:
                used.setdefault(name, []).append(str(path.relative_to(root)))
    assert used == {}, f"call these through sandbox.backends.backend_for(...): {used}"

"""The CA in Kubernetes mode: the issuer's certificate and key, and the trust anchor's
certificate, from the Secret ``meshdojo install`` made (as Linkerd keeps its issuer in
``linkerd-identity-issuer``). The trust anchor's key never enters the cluster."""

from __future__ import annotations

import base64
import secrets
from typing import Any

from cryptography import x509

from controlplane import ca
from controlplane.castore import CaMaterial, CaStoreError

ISSUER_SECRET = "meshdojo-identity-issuer"
# the operator API's bearer token: the CLI and the UI read it with the user's own credentials
OPERATOR_SECRET, OPERATOR_KEY = "meshdojo-operator-token", "token"
# keys in the Secret (the kubernetes.io/tls layout, plus the anchor)
ANCHOR_KEY, CERT_KEY, KEY_KEY = "ca.crt", "tls.crt", "tls.key"


def issuer_secret_data(anchor_pem: str, issuer_pem: str, issuer_key_pem: str) -> dict[str, str]:
    """The Secret's ``data`` (base64), for the install manifests."""
    return {k: base64.b64encode(v.encode()).decode() for k, v in
            ((ANCHOR_KEY, anchor_pem), (CERT_KEY, issuer_pem), (KEY_KEY, issuer_key_pem))}


def material_from_secret(data: dict[str, str], where: str) -> CaMaterial:
    try:
        pems = {k: base64.b64decode(data[k]) for k in (ANCHOR_KEY, CERT_KEY, KEY_KEY)}
        anchor = x509.load_pem_x509_certificate(pems[ANCHOR_KEY])
        issuer = ca.KeyPair(x509.load_pem_x509_certificate(pems[CERT_KEY]), ca.load_key(pems[KEY_KEY]))
    except (KeyError, ValueError) as exc:
        raise CaStoreError(f"the issuer Secret {where} is unusable ({exc}): it needs {ANCHOR_KEY}, {CERT_KEY} and {KEY_KEY} "
                           "(PEM); `meshdojo install` makes it") from None
    # the anchor's key stays outside the cluster; bootstrap tokens (for workloads outside it) get a fresh secret
    return CaMaterial(ca.KeyPair(anchor, None), issuer, secrets.token_bytes(32))  # type: ignore[arg-type]


def load_material(api_client: Any, namespace: str, name: str = ISSUER_SECRET) -> CaMaterial:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    try:
        secret = client.CoreV1Api(api_client).read_namespaced_secret(name, namespace)
    except ApiException as exc:
        raise CaStoreError(f"cannot read the issuer Secret {namespace}/{name}: {exc.status} {exc.reason}; "
                           "run `meshdojo install` first") from None
    return material_from_secret(secret.data or {}, f"{namespace}/{name}")


def load_operator_token(api_client: Any, namespace: str) -> str | None:
    """The operator API's token from the Secret ``meshdojo install`` made (None: an install
    without one; the control plane then makes its own, readable only inside its pod)."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    try:
        secret = client.CoreV1Api(api_client).read_namespaced_secret(OPERATOR_SECRET, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise CaStoreError(f"cannot read the Secret {namespace}/{OPERATOR_SECRET}: {exc.status} {exc.reason}") from None
    raw = (secret.data or {}).get(OPERATOR_KEY)
    return base64.b64decode(raw).decode().strip() if raw else None

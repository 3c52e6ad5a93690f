"""Talking to a cluster for ``meshdojo install`` and ``uninstall``: the official ``kubernetes``
client, server-side apply with our own field manager (so a second install changes only what
changed, and ``kubectl apply`` of the same objects is equivalent)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

FIELD_MANAGER = "meshdojo"
PART_OF_SELECTOR = "app.kubernetes.io/part-of=meshdojo"


class ClusterError(RuntimeError):
    """Something the learner can act on: no kubeconfig, an unreachable server, a refusal."""


def connect(kubeconfig: Path | None, context: str | None) -> Any:
    """A DynamicClient for the kubeconfig (``$KUBECONFIG`` or ~/.kube/config when not given)."""
    from kubernetes import config, dynamic
    from kubernetes.config.config_exception import ConfigException

    # $KUBECONFIG read now, not when the client was imported (a long-running UI, a test that sets it)
    path = str(kubeconfig) if kubeconfig else os.environ.get("KUBECONFIG") or None
    try:
        api = config.new_client_from_config(path, context=context)
    except (ConfigException, OSError) as exc:
        where = kubeconfig or "$KUBECONFIG or ~/.kube/config"
        raise ClusterError(f"no usable kubeconfig ({where}): {exc}; pass --kubeconfig FILE (and --context NAME), "
                           "or create a cluster first (kind create cluster)") from None
    try:
        return dynamic.DynamicClient(api)
    except Exception as exc:  # urllib3 and the API's errors: say where, not how
        raise ClusterError(f"cannot reach the API server at {api.configuration.host}: {reason(exc)}; "
                           "is the cluster running? (kubectl cluster-info)") from None


def reason(exc: Exception) -> str:
    """The API server's own message of a refusal (its Status body), else the exception's words."""
    body = getattr(exc, "body", None)
    if body:
        try:
            import json

            return json.loads(body).get("message", str(body))
        except ValueError:
            return str(body)[:300]
    return str(getattr(exc, "reason", None) or exc)[:300]


def _resource(client: Any, obj: dict[str, Any]) -> Any:
    return client.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])


def apply(client: Any, objects: list[dict[str, Any]], dry_run: bool = False) -> list[dict[str, Any]]:
    """Server-side apply each object in order; the first refusal stops (and is raised).
    ``dry_run``: the API server checks everything (admission included) and stores nothing."""
    applied = []
    for obj in objects:
        ns = obj["metadata"].get("namespace")
        try:
            applied.append(_resource(client, obj).server_side_apply(body=obj, name=obj["metadata"]["name"], namespace=ns,
                                                                     field_manager=FIELD_MANAGER, force_conflicts=True,
                                                                     dry_run="All" if dry_run else None).to_dict())
        except Exception as exc:
            raise ClusterError(f"{obj['kind']} {obj['metadata']['name']} was refused: {reason(exc)}") from None
    return applied


def crd_exists(client: Any, name: str) -> dict[str, Any] | None:
    from kubernetes.dynamic.exceptions import NotFoundError

    try:
        return client.resources.get(api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition").get(name=name).to_dict()
    except NotFoundError:
        return None


def wait_established(client: Any, names: list[str], timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
    """Until every named CRD has condition Established (the API server serves its kind)."""
    crds = client.resources.get(api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition")
    deadline = clock() + timeout
    waiting = list(names)
    while waiting:
        status = (crds.get(name=waiting[0]).to_dict().get("status") or {})
        if any(c["type"] == "Established" and c["status"] == "True" for c in status.get("conditions") or []):
            waiting.pop(0)
            continue
        if clock() > deadline:
            raise ClusterError(f"CRD {waiting[0]} not Established after {timeout:g} s (kubectl describe crd {waiting[0]})")
        time.sleep(0.1)  # polling the API server: a watch for a handful of objects costs more than it saves


def existing_pki(client: Any) -> Any:
    """The CA already installed (a second install keeps it: workloads keep trusting each other)."""
    import base64

    from kubernetes.dynamic.exceptions import NotFoundError

    from controlplane.injector import CONTROLPLANE_NAMESPACE
    from controlplane.kube.castore import ANCHOR_KEY, CERT_KEY, ISSUER_SECRET, KEY_KEY
    from sandbox.kube.install import Pki

    try:
        secret = client.resources.get(api_version="v1", kind="Secret").get(name=ISSUER_SECRET, namespace=CONTROLPLANE_NAMESPACE).to_dict()
    except NotFoundError:
        return None
    data = secret.get("data") or {}
    try:
        return Pki(*(base64.b64decode(data[k]).decode() for k in (ANCHOR_KEY, CERT_KEY, KEY_KEY)))
    except (KeyError, ValueError):
        raise ClusterError(f"the Secret {CONTROLPLANE_NAMESPACE}/{ISSUER_SECRET} is not one meshdojo made; "
                           "`meshdojo uninstall` first, or repair it") from None


def existing_operator_token(client: Any) -> str | None:
    """The operator API's token an earlier install made (kept: a running CLI or UI keeps working)."""
    import base64

    from kubernetes.dynamic.exceptions import NotFoundError

    from controlplane.injector import CONTROLPLANE_NAMESPACE
    from controlplane.kube.castore import OPERATOR_KEY, OPERATOR_SECRET

    try:
        secret = client.resources.get(api_version="v1", kind="Secret").get(name=OPERATOR_SECRET, namespace=CONTROLPLANE_NAMESPACE).to_dict()
    except NotFoundError:
        return None
    raw = (secret.get("data") or {}).get(OPERATOR_KEY)
    return base64.b64decode(raw).decode().strip() if raw else None


def new_operator_token() -> str:
    import secrets

    return secrets.token_urlsafe(32)


def pki_from_files(anchor: Path, certificate: Path, key: Path) -> Any:
    """A CA the user brings (as ``linkerd install --identity-*-file``), checked before anything is applied."""
    import datetime as dt

    from controlplane.castore import CaStoreError, check_own_ca
    from sandbox.kube.install import Pki

    try:
        texts = [p.read_text() for p in (anchor, certificate, key)]
    except (OSError, UnicodeDecodeError) as exc:
        raise ClusterError(f"cannot read {getattr(exc, 'filename', None) or exc}: {getattr(exc, 'strerror', None) or 'not PEM text'}") from None
    try:
        check_own_ca(*texts, (str(anchor), str(certificate), str(key)), dt.datetime.now(dt.UTC))
    except CaStoreError as exc:
        raise ClusterError(str(exc)) from None
    return Pki(texts[0], texts[1], texts[2])


def new_pki() -> Any:
    """A fresh trust anchor and issuer; the anchor's key is dropped (it never enters the cluster)."""
    import datetime as dt

    from controlplane import ca
    from sandbox.kube.install import Pki

    now = dt.datetime.now(dt.UTC)
    anchor = ca.make_trust_anchor(now)
    issuer = ca.make_issuer(anchor, now)
    return Pki(ca.cert_pem(anchor.certificate), ca.cert_pem(issuer.certificate), ca.key_pem(issuer.key))


def ours(client: Any) -> list[str]:
    """Every object of meshdojo's on the cluster, as kubectl names them (empty: nothing remains)."""
    from controlplane.injector import CONTROLPLANE_NAMESPACE
    from sandbox.kube.install import CLUSTER_KINDS, NAMESPACED_KINDS, describe

    found = []
    for api_version, kind in (*CLUSTER_KINDS, *NAMESPACED_KINDS):
        for item in client.resources.get(api_version=api_version, kind=kind).get(label_selector=PART_OF_SELECTOR).to_dict()["items"]:
            found.append(describe({"apiVersion": api_version, "kind": kind, "metadata": item["metadata"]}))
    namespaces = client.resources.get(api_version="v1", kind="Namespace")
    if any(n["metadata"]["name"] == CONTROLPLANE_NAMESPACE for n in namespaces.get(label_selector=PART_OF_SELECTOR).to_dict()["items"]):
        found.append(f"namespace/{CONTROLPLANE_NAMESPACE}")
    return found


def uninstall(client: Any, timeout: float, clock: Callable[[], float] = time.monotonic) -> list[str]:
    """Delete everything labelled as meshdojo's — the webhook first, so no new pod is sent to an
    injector that is going away — and wait until none of it remains. Returns what was deleted."""
    from kubernetes.dynamic.exceptions import NotFoundError

    from controlplane.injector import CONTROLPLANE_NAMESPACE
    from sandbox.kube.install import CLUSTER_KINDS, NAMESPACED_KINDS

    def delete(resource: Any, **where: str) -> None:
        try:
            resource.delete(**where)
        except NotFoundError:  # gone meanwhile: a trust-anchor ConfigMap of a namespace `down` is deleting, say
            pass

    deleted = ours(client)
    for api_version, kind in CLUSTER_KINDS:
        resource = client.resources.get(api_version=api_version, kind=kind)
        for item in resource.get(label_selector=PART_OF_SELECTOR).to_dict()["items"]:
            delete(resource, name=item["metadata"]["name"])
    for api_version, kind in NAMESPACED_KINDS:
        resource = client.resources.get(api_version=api_version, kind=kind)
        for item in resource.get(label_selector=PART_OF_SELECTOR).to_dict()["items"]:
            delete(resource, name=item["metadata"]["name"], namespace=item["metadata"]["namespace"])
    if f"namespace/{CONTROLPLANE_NAMESPACE}" in deleted:
        delete(client.resources.get(api_version="v1", kind="Namespace"), name=CONTROLPLANE_NAMESPACE)
    deadline = clock() + timeout
    while remaining := ours(client):
        if clock() > deadline:
            raise ClusterError(f"still there after {timeout:g} s: {', '.join(remaining)} (kubectl describe them: a finalizer?)")
        time.sleep(0.2)  # polling the API server until the namespace controller has emptied the namespace
    return deleted

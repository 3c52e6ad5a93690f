"""``meshdojo check`` for a sandbox on a cluster: the install, the control plane, the injector and
every pod, each problem with its fix (Linkerd's ``linkerd check`` covers the same ground)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

from sandbox.check import FAIL, OK, WARN, Result, policy_checks, sync_checks
from sandbox.errors import SandboxError

CAT = "meshdojo-cluster"


def checks(backend: Any) -> Iterator[Result]:
    from controlplane.injector import CONTROLPLANE_NAMESPACE, TRUST_ANCHOR_CONFIGMAP
    from sandbox.cpapi import ApiError
    from sandbox.kube import cluster
    from sandbox.kube.install import WEBHOOK_CONFIG

    try:
        st = backend.status()
    except SandboxError as exc:
        yield Result(CAT, FAIL, f"the cluster answers ({backend.choice.describe()})", str(exc))
        return
    if st is None:
        yield Result(CAT, FAIL, f"sandbox {backend.sandbox!r} is up", f"start it: meshdojo up --name {backend.sandbox} "
                                                                      f"--backend {backend.choice.describe()}")
        return
    yield Result(CAT, OK, f"sandbox {backend.sandbox!r} is up on {backend.choice.describe()}")
    client = backend.client()
    crds = client.resources.get(api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition").get(
        label_selector=cluster.PART_OF_SELECTOR).to_dict()["items"]
    pending = [c["metadata"]["name"] for c in crds if not any(
        k["type"] == "Established" and k["status"] == "True" for k in (c.get("status") or {}).get("conditions") or [])]
    if crds and not pending:
        yield Result(CAT, OK, f"{len(crds)} policy CRDs are Established")
    else:
        yield Result(CAT, FAIL, f"policy CRDs Established ({', '.join(pending) or 'none installed'})", "meshdojo up installs them again")
    cp = st["controlplane"]
    yield (Result(CAT, OK, f"the control plane is ready ({cp['api']})") if cp["ready"] else
           Result(CAT, FAIL, "the control plane is ready", f"kubectl -n {CONTROLPLANE_NAMESPACE} describe deploy/meshdojo-controlplane"))
    api = None
    try:
        api = backend.operator_api()
        api.call("GET", "/v1/health")
        yield Result(CAT, OK, "the operator API answers with the install's token")
    except (ApiError, SandboxError) as exc:
        api = None  # its policy checks below are skipped
        yield Result(CAT, FAIL, "the operator API answers", str(exc))
    anchors = client.resources.get(api_version="v1", kind="ConfigMap")
    try:
        anchor = anchors.get(name=TRUST_ANCHOR_CONFIGMAP, namespace=CONTROLPLANE_NAMESPACE).to_dict()["data"]["ca.crt"]
        hook = client.resources.get(api_version="admissionregistration.k8s.io/v1", kind="MutatingWebhookConfiguration").get(
            name=WEBHOOK_CONFIG).to_dict()
        bundle = base64.b64decode(hook["webhooks"][0]["clientConfig"]["caBundle"]).decode()
        if bundle.strip() == anchor.strip():
            yield Result(CAT, OK, "the injector's webhook trusts the mesh's trust anchor")
        else:
            yield Result(CAT, FAIL, "the injector's webhook trusts the mesh's trust anchor", "meshdojo up installs it again")
    except Exception as exc:  # NotFound, a hand-edited object: name it
        yield Result(CAT, FAIL, "the injector's webhook is installed", f"meshdojo up installs it again ({type(exc).__name__})")
    cat = "meshdojo-workloads"
    for w in st["workloads"]:
        key = f"{w['namespace']}/{w['deployment']}"
        wanted = st["deployments"].get(key, {}).get("inject", False)
        if not w["ready"]:
            yield Result(cat, FAIL, f"{w['namespace']}/{w['name']}: not ready ({w['phase']})", f"kubectl -n {w['namespace']} describe pod {w['name']}")
        elif wanted and not w["meshed"]:
            yield Result(cat, WARN, f"{w['namespace']}/{w['name']}: should have a sidecar and has none (made while the injector "
                                    "was unreachable?)", f"meshdojo kill {w['deployment']} -n {w['namespace']}  (its new pod is injected)")
        else:
            yield Result(cat, OK, f"{w['namespace']}/{w['name']}: ready{', meshed as ' + w['identity'] if w['meshed'] else ''}")
    if api is not None:
        yield from sync_checks(api, st, backend.sandbox)
        yield from policy_checks(api, backend.sandbox)

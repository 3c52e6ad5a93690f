"""The control plane on the test cluster, as tests/test_kube_controlplane.py runs it: `meshdojo
install` puts everything there, and the control plane runs here as a local process whose
kubeconfig holds its own ServiceAccount's token (so its RBAC is proven enough)."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import yaml
from kubernetes import client

from sandbox.cli import main
from sandbox.processes import stop_groups, wait_until
from tests.k8senv.cluster import free_port, write_private
from tests.meshkit import Mesh
from tests.test_own_ca import flags as ca_flags
from tests.test_own_ca import learners_ca

IMAGE = "meshdojo/meshdojo:0.1.0-test"
NS = "emojivoto"


def sa_kubeconfig(k8s, api: client.ApiClient, path: Path, namespace: str, name: str) -> Path:
    token = client.CoreV1Api(api).create_namespaced_service_account_token(
        name, namespace, {"spec": {"expirationSeconds": 3600}}).status.token
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "sa",
              "clusters": [{"name": "test", "cluster": {"server": k8s.server, "certificate-authority": str(k8s.root / "pki" / "ca.crt")}}],
              "users": [{"name": name, "user": {"token": token}}],
              "contexts": [{"name": "sa", "context": {"cluster": "test", "user": name}}]}
    return write_private(path, yaml.safe_dump(config))


class Plane:
    """The installed cluster and our control plane process beside it."""

    def __init__(self, k8s, root: Path) -> None:
        self.k8s, self.root = k8s, root
        self.api = k8s.client()
        self.core, self.apps = client.CoreV1Api(self.api), client.AppsV1Api(self.api)
        self.mesh = Mesh(root)
        self.timings: dict[str, float] = {}

    def start(self) -> None:
        webhook_port = free_port()
        began = time.monotonic()
        # a CA of the learner's own, as Linkerd's docs make it with step (test_kube_backend.py's install makes its own)
        self.learners_ca = learners_ca(self.root)
        assert main(["install", "--kubeconfig", str(self.k8s.kubeconfig), "--image", IMAGE, *ca_flags(self.learners_ca),
                     "--webhook-url", f"https://127.0.0.1:{webhook_port}/inject"]) == 0
        own = sa_kubeconfig(self.k8s, self.api, self.root / "controlplane.kubeconfig", "meshdojo-system", "meshdojo-controlplane")
        self.mesh.start_controlplane("--kubernetes", "--kubeconfig", str(own), "--webhook-port", str(webhook_port),
                                     "--webhook-host", "127.0.0.1", "--proxy-image", IMAGE, "--api-port", "0", "--mesh-port", "0")
        wait_until(lambda: self.mesh.call("GET", "/v1/health")[0] == 200, 30, "the control plane's operator API")
        self.timings["install to the control plane answering (s)"] = time.monotonic() - began
        secret = self.core.read_namespaced_secret("meshdojo-identity-issuer", "meshdojo-system").data
        self.anchor_pem = base64.b64decode(secret["ca.crt"]).decode()
        assert self.anchor_pem == self.learners_ca["anchor"].read_text()
        self.anchor = write_private(self.root / "anchor.crt", self.anchor_pem)

    def stop(self) -> None:
        stop_groups(self.mesh.procs, grace=5)

    def services(self) -> dict[str, dict]:
        status, body = self.mesh.call("GET", "/v1/services")
        assert status == 200, body
        return {s["name"]: s for s in body["services"] if s["namespace"] == NS}

    def stored(self, kind: str, namespace: str = NS) -> dict[str, dict]:
        """The policies of ``kind`` in ``namespace`` the operator API lists: name -> document."""
        status, body = self.mesh.call("GET", f"/v1/policies?kind={kind}&namespace={namespace}")
        assert status == 200, body
        return {i["document"]["metadata"]["name"]: i["document"] for i in body["items"]}

    def sa_token(self, name: str, audiences: list[str], namespace: str = NS) -> str:
        return self.core.create_namespaced_service_account_token(
            name, namespace, {"spec": {"audiences": audiences, "expirationSeconds": 3600}}).status.token


GATEWAY_CLASS_CRD = {  # Gateway API's GatewayClass, its fields kept (a cluster with Istio has the real one)
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "gatewayclasses.gateway.networking.k8s.io",
                 "annotations": {"api-approved.kubernetes.io": "unapproved, a test's stand-in for Gateway API's own"}},
    "spec": {"group": "gateway.networking.k8s.io", "scope": "Cluster",
             "names": {"kind": "GatewayClass", "plural": "gatewayclasses", "singular": "gatewayclass", "listKind": "GatewayClassList"},
             "versions": [{"name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                           "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]},
}

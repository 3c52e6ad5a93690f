"""`down` on a cluster when the API server refuses part of it: a clear error that says to run `down`
again, the sandbox's record kept so that it can, and a second `down` with the right to do it
finishing the job (the full up-to-down tour is test_kube_backend.py)."""

from __future__ import annotations

import json

import pytest
from kubernetes import client

from sandbox.backends.choice import BackendChoice
from sandbox.backends.kube import STATE_FILE, KubeBackend
from sandbox.errors import SandboxError
from sandbox.kube import workloads as kw
from sandbox.processes import wait_until
from tests.kube_plane import sa_kubeconfig

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(180)]


def test_a_refused_down_says_to_run_it_again_and_keeps_the_record(k8s, tmp_path, monkeypatch):
    monkeypatch.setenv("MESHDOJO_HOME", str(tmp_path / "home"))
    api = k8s.client()
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    core.create_namespace({"metadata": {"name": "down-lab", "labels": {kw.SANDBOX_LABEL: "lab"}}})
    # a user who may look at namespaces but not delete them
    core.create_namespaced_service_account("default", {"metadata": {"name": "looker"}})
    rbac.create_cluster_role({"metadata": {"name": "namespace-looker"},
                              "rules": [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list"]}]})
    rbac.create_cluster_role_binding({"metadata": {"name": "namespace-looker"},
                                      "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "namespace-looker"},
                                      "subjects": [{"kind": "ServiceAccount", "name": "looker", "namespace": "default"}]})
    try:
        looker = sa_kubeconfig(k8s, api, tmp_path / "looker.kubeconfig", "default", "looker")
        backend = KubeBackend("lab", BackendChoice(kind="context", context="sa", kubeconfig=str(looker)))
        backend.paths.root.mkdir(parents=True)
        (backend.paths.root / STATE_FILE).write_text(json.dumps({"demos": ["emojivoto"], "made_cluster": False}))

        with pytest.raises(SandboxError) as refused:
            backend.down(timeout=30)
        message = str(refused.value)
        assert message.startswith("the API server refused while taking the sandbox down: ") and "forbidden" in message, message
        assert "run `meshdojo down` again" in message and "Traceback" not in message
        assert (backend.paths.root / STATE_FILE).exists()  # the record stays: `down` can go on
        assert "down-lab" in [n.metadata.name for n in core.list_namespace().items]

        admin = KubeBackend("lab", BackendChoice(kind="context", kubeconfig=str(k8s.kubeconfig)))
        assert admin.down(timeout=120) is True
        assert not (admin.paths.root / STATE_FILE).exists()
        wait_until(lambda: "down-lab" not in [n.metadata.name for n in core.list_namespace().items], 60, "the namespace to go")
    finally:
        rbac.delete_cluster_role_binding("namespace-looker")
        rbac.delete_cluster_role("namespace-looker")
        core.delete_namespaced_service_account("looker", "default")

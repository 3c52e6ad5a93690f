"""Demo manifests: the shipped ones load; bad ones are reported with file, document and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.manifests import ManifestError, load_demo

DEMOS = Path(__file__).resolve().parent.parent / "demo-apps"

GOOD = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: emojivoto}
spec:
  replicas: 2
  template:
    metadata: {labels: {app: web}, annotations: {meshdojo.dev/inject: enabled}}
    spec:
      serviceAccountName: web
      containers:
      - name: web
        image: x
        command: [python, app.py, web]
        env: [{name: PORT, value: "8080"}]
        ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: emojivoto}
spec: {selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "m.yaml").write_text(text)
    return tmp_path


def test_shipped_demos_load():
    emojivoto = load_demo(DEMOS / "emojivoto")
    assert {d.name for d in emojivoto.deployments} == {"web", "emoji", "voting", "vote-bot"}
    assert all(d.inject for d in emojivoto.deployments)
    bookinfo = load_demo(DEMOS / "bookinfo")
    reviews_v2 = next(d for d in bookinfo.deployments if d.name == "reviews-v2")
    assert [s.name for s in bookinfo.services_for(reviews_v2)] == ["reviews", "reviews-v2"]


def test_a_good_manifest(tmp_path):
    demo = load_demo(write(tmp_path, GOOD))
    (web,) = demo.deployments
    assert (web.replicas, web.service_account, web.inject, web.container.port) == (2, "web", True, 8080)
    assert demo.services[0].ports == ((80, 8080),)


@pytest.mark.parametrize(("change", "where", "what"), [
    (("image: x", "image: x\n        securityContext: {}"), "document 0: spec.template.spec.containers[0].securityContext", "unknown field"),
    (("replicas: 2", "replicas: two"), "document 0: spec.replicas", "expected an integer"),
    (("        command: [python, app.py, web]\n", ""), "document 0: spec.template.spec.containers[0].command", "needs the command"),
    (("port: 80,", "port: '80',"), "document 1: spec.ports[0].port", "expected an integer"),
    (("kind: Service", "kind: Ingress"), "document 1: kind", "not one the local backend reads"),
    (("meshdojo.dev/inject: enabled", "meshdojo.dev/inject: yes-please"), "meshdojo.dev/inject", "expected enabled or disabled"),
    (("meshdojo.dev/inject: enabled", "meshdojo.dev/inject: enabled, config.linkerd.io/default-inbound-policy: none"),
     "document 0: spec.template.metadata.annotations.config.linkerd.io/default-inbound-policy",
     "expected one of all-unauthenticated, all-authenticated"),
    (("meshdojo.dev/inject: enabled", "meshdojo.dev/inject: enabled, config.linkerd.io/access-log: xml"),
     "document 0: spec.template.metadata.annotations.config.linkerd.io/access-log", "expected one of apache, json, got 'xml'"),
])
def test_bad_manifests_name_file_document_and_field(tmp_path, change, where, what):
    old, new = change
    assert old in GOOD
    with pytest.raises(ManifestError) as err:
        load_demo(write(tmp_path, GOOD.replace(old, new, 1)))
    message = str(err.value)
    assert str(tmp_path / "m.yaml") in message and where in message and what in message


def test_the_default_inbound_policy_comes_from_the_pod_template_else_its_namespace(tmp_path):
    """Linkerd's config.linkerd.io/default-inbound-policy: the pod template's annotation wins over
    its Namespace's; a wrong one on the Namespace is refused naming that document."""
    namespace = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: emojivoto\n  annotations: {config.linkerd.io/default-inbound-policy: %s}\n---\n"
    (web,) = load_demo(write(tmp_path, namespace % "deny" + GOOD)).deployments
    assert web.default_inbound_policy == "deny"
    pod = GOOD.replace("meshdojo.dev/inject: enabled", "meshdojo.dev/inject: enabled, config.linkerd.io/default-inbound-policy: audit")
    (web,) = load_demo(write(tmp_path, namespace % "deny" + pod)).deployments
    assert web.default_inbound_policy == "audit"
    assert load_demo(write(tmp_path, GOOD)).deployments[0].default_inbound_policy is None
    with pytest.raises(ManifestError, match=r"document 0: metadata.annotations.config.linkerd.io/default-inbound-policy: expected one of"):
        load_demo(write(tmp_path, namespace % "closed" + GOOD))


def test_linkerds_access_log_comes_from_the_pod_template_else_its_namespace(tmp_path):
    namespace = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: emojivoto\n  annotations: {config.linkerd.io/access-log: %s}\n---\n"
    assert load_demo(write(tmp_path, namespace % "json" + GOOD)).deployments[0].access_log == "json"
    pod = GOOD.replace("meshdojo.dev/inject: enabled", "meshdojo.dev/inject: enabled, config.linkerd.io/access-log: apache")
    assert load_demo(write(tmp_path, namespace % "json" + pod)).deployments[0].access_log == "apache"
    assert load_demo(write(tmp_path, GOOD)).deployments[0].access_log is None
    with pytest.raises(ManifestError, match=r"document 0: metadata.annotations.config.linkerd.io/access-log: expected one of apache, json"):
        load_demo(write(tmp_path, namespace % "text" + GOOD))


def test_invalid_yaml(tmp_path):
    with pytest.raises(ManifestError, match="not valid YAML"):
        load_demo(write(tmp_path, "a: [b"))

"""A learner's own app joins the sandbox: `meshdojo apply -f app.yaml` with Deployment, Service,
ServiceAccount and Namespace documents (the files kubectl takes) runs it beside the demos, meshed,
and `meshdojo delete -f` takes it away; a bad document is an error naming its field, and nothing
of the file is applied."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from sandbox import applied
from sandbox.manifests import ManifestError, expand, load_demo
from sandbox.processes import wait_until

ROOT = Path(__file__).resolve().parent.parent

HELLO = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "lessons"}},
    {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "hello", "namespace": "lessons"}},
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "hello", "namespace": "lessons"},
     "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "hello"}},
              "template": {"metadata": {"labels": {"app": "hello"}, "annotations": {"meshdojo.dev/inject": "enabled"}},
                           "spec": {"serviceAccountName": "hello", "containers": [{
                               "name": "hello", "image": "python:3.11-slim",
                               # serves this directory; $(PORT) and $(BIND_HOST) are expanded as Kubernetes would
                               "command": ["python", "-m", "http.server", "$(PORT)", "--bind", "$(BIND_HOST)"],
                               "ports": [{"containerPort": 8080}]}]}}}},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "hello", "namespace": "lessons"},
     "spec": {"selector": {"app": "hello"}, "ports": [{"port": 80, "targetPort": 8080}]}},
    {"apiVersion": "policy.meshdojo.dev/v1alpha1", "kind": "RetryBudget", "metadata": {"name": "hello", "namespace": "lessons"},
     "spec": {"targetRef": {"kind": "Service", "name": "hello"}}},
]


@pytest.mark.parametrize(("arg", "env", "out"), [
    ("$(PORT)", {"PORT": "14080"}, "14080"),
    ("--port=$(PORT)/$(HOST)", {"PORT": "1", "HOST": "h"}, "--port=1/h"),
    ("$$(PORT)", {"PORT": "1"}, "$(PORT)"),
    ("$(MISSING)", {}, "$(MISSING)"),
    ("cost: 5$", {}, "cost: 5$"),
])
def test_variables_in_commands_expand_as_kubernetes_does(arg, env, out):
    assert expand(arg, env) == out


def _entries(docs: list[dict], source: str = "hello.yaml") -> list[dict]:
    return [{"source": source, "index": i, "document": d} for i, d in enumerate(docs)]


def test_merging_validates_and_refuses_a_demos_names(tmp_path):
    workloads = [d for d in HELLO if applied.is_workload(d)]
    merged, results = applied.merge([], _entries(workloads), [], tmp_path)
    assert [a for _, a in results] == ["created"] * 4
    again, results = applied.merge(merged, _entries(workloads), [], tmp_path)
    assert again == merged and [a for _, a in results] == ["unchanged"] * 4

    bad = json.loads(json.dumps(workloads))
    del bad[2]["spec"]["template"]["spec"]["containers"][0]["command"]
    with pytest.raises(ManifestError, match=r"hello.yaml: document 2: spec.template.spec.containers\[0\].command"):
        applied.merge([], _entries(bad), [], tmp_path)

    emojivoto = load_demo(ROOT / "demo-apps" / "emojivoto")
    web = json.loads(json.dumps(workloads[2]))
    web["metadata"] = {"name": "web", "namespace": "emojivoto"}
    with pytest.raises(applied.AppliedError, match="belongs to the emojivoto demo"):
        applied.merge([], _entries([web]), [emojivoto], tmp_path)

    kept, removed, absent = applied.remove(merged, [workloads[2], {"kind": "Service", "metadata": {"name": "nope", "namespace": "x"}}])
    assert removed == [("Deployment", "lessons", "hello")] and absent == [("Service", "x", "nope")] and len(kept) == 3


@pytest.mark.timeout(240)
def test_a_learners_app_runs_meshed_beside_the_demo_and_goes_away(cli, tmp_path):
    cli.run("up", "--no-tui", "--demo", "emojivoto")
    app = tmp_path / "hello.yaml"
    app.write_text(yaml.safe_dump_all(HELLO, sort_keys=False))

    broken = tmp_path / "broken.yaml"
    broken_docs = json.loads(json.dumps(HELLO))
    broken_docs[3]["spec"]["ports"][0]["port"] = "eighty"
    broken.write_text(yaml.safe_dump_all(broken_docs, sort_keys=False))
    refused = cli.run("apply", "-f", str(broken), check=False)
    assert refused.returncode == 1 and "document 3: spec.ports[0].port" in refused.stderr and "nothing was applied" in refused.stderr
    assert "RetryBudget" not in cli.run("get", "retrybudget").stdout  # not half-applied

    out = cli.run("apply", "-f", str(app)).stdout
    assert "deployment/hello created (namespace lessons)" in out and "service/hello created (namespace lessons)" in out
    assert "namespace/lessons created\n" in out and "retrybudget/hello created (namespace lessons)" in out

    def hello_ready():
        return next((w for w in cli.status()["workloads"] if w["deployment"] == "hello" and w["ready"] and w["meshed"]), None)

    workload = wait_until(hello_ready, 60, "hello-0 to be ready with its sidecar")
    assert workload["identity"] == "spiffe://meshdojo.local/ns/lessons/sa/hello" and workload["services"] == ["hello"]
    # called from web's sidecar, with web's identity, over mutual TLS: the file listing http.server serves
    result = json.loads(cli.run("load", "svc/hello", "/", "--from", "deploy/web", "-n", "5", "-o", "json").stdout)
    assert result["codes"] == {"200": {"count": 5, "share": 1.0}}, result
    edges = cli.run("edges", "-o", "json").stdout
    wait_until(lambda: any(e["dst"] == "hello" and e["secured"] for e in json.loads(cli.run("edges", "-o", "json").stdout)), 20,
               f"the web -> hello edge, secured (edges: {edges[:300]})")

    out = cli.run("delete", "-f", str(app)).stdout
    assert "Deployment lessons/hello deleted" in out and "RetryBudget lessons/hello deleted" in out
    wait_until(lambda: not any(w["deployment"] == "hello" for w in cli.status()["workloads"]), 30, "hello's instance to stop")
    gone = cli.run("load", "svc/hello", "/", "--from", "deploy/web", "-n", "1", check=False)
    assert gone.returncode != 0 or '"200"' not in gone.stdout


def test_linkerds_default_inbound_policy_on_a_learners_namespace(cli, tmp_path):
    """config.linkerd.io/default-inbound-policy: deny on the Namespace: hello's sidecar refuses
    every caller until an AuthorizationPolicy ALLOWs one (Linkerd's "restricting access" task)."""
    cli.run("up", "--no-tui", "--demo", "emojivoto")
    docs = json.loads(json.dumps(HELLO[:4]))
    docs[0]["metadata"]["annotations"] = {"config.linkerd.io/default-inbound-policy": "deny"}
    app = tmp_path / "hello.yaml"
    app.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    cli.run("apply", "-f", str(app))
    wait_until(lambda: any(w["deployment"] == "hello" and w["ready"] for w in cli.status()["workloads"]), 60, "hello-0 ready")

    def codes() -> dict:
        return json.loads(cli.run("load", "svc/hello", "/", "--from", "deploy/web", "-n", "4", "-c", "1", "-o", "json").stdout)["codes"]

    assert set(codes()) == {"403"}
    (hello,) = [line for line in cli.run("identity").stdout.splitlines() if line.startswith("hello-")]
    assert hello.rstrip().endswith(", default deny"), hello  # `meshdojo identity` shows it beside the TLS mode
    allow = tmp_path / "allow.yaml"
    allow.write_text("apiVersion: policy.meshdojo.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: allow-web, namespace: lessons}\n"
                     "spec:\n  targetRef: {kind: Service, name: hello}\n"
                     "  rules: [{from: [{source: {serviceAccounts: [emojivoto/web]}}]}]\n")
    cli.run("apply", "-f", str(allow))
    wait_until(lambda: set(codes()) == {"200"}, 20, "the ALLOW to let web in")

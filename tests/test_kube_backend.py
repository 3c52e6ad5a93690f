"""`meshdojo up --backend context` against the real API server (tests/k8senv), then the learner's
verbs on it — status, scale, uninject/inject, kill, logs' refusal, apply/get/delete of a policy and
of a learner's own app — and `down`, which leaves nothing of ours and never the cluster itself.

kwok's pods run no process, so the control plane runs beside the cluster as a local process in
Kubernetes mode (its kubeconfig holds its own ServiceAccount's token); `up` is told where with
--controlplane-url/--webhook-url, the options for a control plane outside the cluster.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from unittest.mock import patch

import pytest

from sandbox.kube import cluster as kube
from sandbox.processes import wait_until
from tests.k8senv.cluster import free_port
from tests.kube_plane import IMAGE, sa_kubeconfig
from tests.meshkit import Mesh

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(420)]
ROOT = Path(__file__).resolve().parent.parent
NS = "emojivoto"


class Learner:
    def __init__(self, k8s, home: Path) -> None:
        self.env = {**os.environ, "MESHDOJO_HOME": str(home), "KUBECONFIG": str(k8s.kubeconfig)}
        self.env.pop("MESHDOJO_BACKEND", None)

    @staticmethod
    def argv(*args: str) -> list[str]:
        return [sys.executable, "-m", "sandbox.cli", *args, "--name", "lab"]

    def run(self, *args: str, ok: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(self.argv(*args), capture_output=True, text=True,
                              env=self.env, timeout=timeout)
        if ok:
            assert done.returncode == 0, f"meshdojo {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        return done

    def status(self) -> dict:
        return json.loads(self.run("status", "-o", "json").stdout)


def _pods(st: dict, deployment: str) -> list[dict]:
    return [w for w in st["workloads"] if w["deployment"] == deployment]


async def _dashboard_shows_the_pods(home: Path, kubeconfig: Path, deployments: set[str]) -> None:
    from textual.widgets import DataTable, Static

    from tui.app import MeshdojoApp

    # the in-process UI finds the sandbox and the cluster as the CLI does; both restored after
    with patch.dict(os.environ, {"MESHDOJO_HOME": str(home), "KUBECONFIG": str(kubeconfig)}):
        app = MeshdojoApp("lab")
        async with app.run_test(size=(120, 40)) as pilot:
            table = app.query_one("#workloads", DataTable)

            def rows() -> set[str]:
                return {str(r.key.value) for r in table.ordered_rows}

            deadline = time.monotonic() + 30
            while not deployments <= rows() and time.monotonic() < deadline:
                await pilot.pause(0.1)
            assert deployments <= rows(), (rows(), app.snapshot.problem)
            assert "control plane up" in str(app.query_one("#summary", Static).render())
        assert app.crash is None


def test_up_on_a_context_then_the_verbs_then_down(k8s, tmp_path, record_property):
    api, webhook = free_port(), free_port()
    learner = Learner(k8s, tmp_path / "home")
    client = k8s.client()
    # the control plane beside the cluster needs the install's Secrets: install first (up re-applies, keeping them)
    from sandbox.cli import main

    assert main(["install", "--kubeconfig", str(k8s.kubeconfig), "--image", IMAGE,
                 "--webhook-url", f"https://127.0.0.1:{webhook}/inject"]) == 0
    own = sa_kubeconfig(k8s, client, tmp_path / "cp.kubeconfig", "meshdojo-system", "meshdojo-controlplane")
    mesh = Mesh(tmp_path)
    try:
        mesh.start_controlplane("--kubernetes", "--kubeconfig", str(own), "--webhook-port", str(webhook), "--webhook-host",
                                "127.0.0.1", "--proxy-image", IMAGE, "--api-port", str(api), "--mesh-port", "0")
        began = time.monotonic()
        up = learner.run("up", "--backend", "context", "--demo", "emojivoto", "--no-tui", "--image", IMAGE,
                         "--controlplane-url", f"http://127.0.0.1:{api}", "--webhook-url", f"https://127.0.0.1:{webhook}/inject")
        record_property("up --backend context (s)", round(time.monotonic() - began, 1))
        steps = [line for line in up.stdout.splitlines() if line.startswith("[")]
        assert any("installing meshdojo" in s for s in steps) and any("applying the demos' manifests: emojivoto" in s for s in steps)
        assert "ready: 5 pods (5 meshed)" in steps[-1], up.stdout  # the four demo apps and the ingress gateway
        assert "kubectl -n emojivoto port-forward svc/emojivoto-ingress 8080:80" in up.stdout  # a context's own cluster: no host port
        # the control plane's operator token is the install's Secret: the CLI read it with the user's credentials
        assert mesh.admin_token == kube.existing_operator_token(kube.connect(k8s.kubeconfig, None))

        # status: the pods, from the API server, as the local backend's table
        table = learner.run("status").stdout
        assert "(backend context): ready" in table and "POD" in table and "NODE" in table
        st = learner.status()
        assert st["backend"] == "context"
        assert {w["deployment"] for w in st["workloads"]} == {"web", "emoji", "voting", "vote-bot", "emojivoto-ingress"}
        assert all(w["meshed"] and w["identity"] == f"spiffe://meshdojo.local/ns/{NS}/sa/{w['deployment']}"
                   for w in st["workloads"] if w["deployment"] != "emojivoto-ingress")
        (gateway,) = [w for w in st["workloads"] if w["deployment"] == "emojivoto-ingress"]
        assert gateway["identity"] == f"spiffe://meshdojo.local/ns/{NS}/sa/ingress-gateway"
        gateway_pod = json.loads(k8s.kubectl("get", "pods", "-n", NS, "-l", "app=emojivoto-ingress", "-o", "json").stdout)["items"][0]
        (proxy,) = gateway_pod["spec"]["containers"]  # the proxy alone, not injected again
        assert proxy["args"][-6:] == ["--gateway", "web.emojivoto:80", "--outbound-address", "0.0.0.0", "--https-port", "4443"]
        # the remembered backend: no flag needed from now on
        assert json.loads((tmp_path / "home" / "lab" / "backend.json").read_text())["kind"] == "context"

        # the terminal UI on the same sandbox: the dashboard lists its deployments, the control plane up
        asyncio.run(_dashboard_shows_the_pods(tmp_path / "home", k8s.kubeconfig,
                                              {f"{NS}/{d}" for d in ("web", "emoji", "voting", "vote-bot", "emojivoto-ingress")}))

        # the observing verbs answer on a cluster as they do locally (kwok's pods serve no metrics: empty, not an error)
        for verb in (["stat"], ["edges"], ["routes", "svc/web"], ["identity"], ["check"]):
            done = learner.run(*verb, ok=False)
            assert done.returncode == 0 and "Traceback" not in done.stderr, (verb, done.stdout, done.stderr)

        doctor = learner.run("check").stdout
        assert "√ the operator API answers with the install's token" in doctor and "emojivoto/web-" in doctor, doctor
        assert "√ the injector's webhook trusts the mesh's trust anchor" in doctor
        # logs come from the API server (kubectl logs); kwok's nodes keep none, and saying so is not a traceback
        logs = learner.run("logs", "web", ok=False)
        assert logs.returncode == 1 and "the API server gives no log for emojivoto/web-" in logs.stderr, logs.stderr
        # tap, top, wire, attack and network faults go through the control plane's pod (tested with pods that run, in
        # test_kube_traffic.py); here kwok's pods run nothing, which top survives
        top = learner.run("top", "deploy/web", "--duration", "1", ok=False)
        assert top.returncode == 0 and "Traceback" not in top.stderr, top.stderr
        # load with a workload's identity leaves from its own sidecar, inside its pod: kwok's pods run none here, and saying so
        # is not a traceback (pods that run: test_kube_traffic.py; through the gateway: test_kube_lessons.py)
        load = learner.run("load", "svc/web", "--from", "deploy/vote-bot", ok=False)
        assert load.returncode == 1 and "sidecar" in load.stderr and "Traceback" not in load.stderr, load.stderr

        # scale: the Deployment's replicas, waited for
        assert "deployment emojivoto/web scaled to 2" in learner.run("scale", "deploy/web", "2").stdout
        assert len(_pods(learner.status(), "web")) == 2

        # uninject / inject: the template's annotation rolls the pods; the webhook decides each new one
        assert "uninjected" in learner.run("uninject", "vote-bot").stdout
        assert [w["meshed"] for w in _pods(learner.status(), "vote-bot")] == [False]
        assert "injected" in learner.run("inject", "vote-bot").stdout
        assert [w["meshed"] for w in _pods(learner.status(), "vote-bot")] == [True]

        # kill: the pod is deleted and its Deployment makes another
        before = {w["name"] for w in _pods(learner.status(), "emoji")}
        assert "deleted pod emojivoto/" in learner.run("kill", "emoji").stdout
        after = wait_until(lambda: {w["name"] for w in _pods(learner.status(), "emoji") if w["ready"]} - before or None, 60,
                           "a new emoji pod")
        assert len(after) == 1
        refused = learner.run("kill", "emoji", "--proxy", ok=False)
        assert refused.returncode == 1 and "kubectl exec" in refused.stderr and "Traceback" not in refused.stderr

        # policies: through the operator API, which writes them as custom resources
        policy = str(ROOT / "demo-apps/emojivoto/policies/voting-abort.yaml")
        assert "faultinjection/voting-abort" in learner.run("apply", "-f", policy).stdout
        assert json.loads(k8s.kubectl("get", "faultinjection", "voting-abort", "-n", NS, "-o", "json").stdout)["spec"]["abort"]
        assert "voting-abort" in learner.run("get", "faultinjection").stdout
        assert "deleted" in learner.run("delete", "-f", policy).stdout
        assert k8s.kubectl("get", "faultinjection", "voting-abort", "-n", NS, check=False).returncode != 0

        # Linkerd's tasks annotate the Service: `meshdojo annotate` patches it through the API server, Linkerd's keys only
        done = learner.run("annotate", "svc/emoji", "retry.linkerd.io/http=5xx", "retry.linkerd.io/limit=3")
        assert "service/emoji annotated" in done.stdout and "retried on 500-599, up to 3 times" in done.stdout
        k8s.kubectl("annotate", "svc", "emoji", "-n", NS, "example.com/owner=me")  # another's annotation, left alone
        svc = json.loads(k8s.kubectl("get", "svc", "emoji", "-n", NS, "-o", "json").stdout)
        assert {k: v for k, v in svc["metadata"]["annotations"].items() if "linkerd" in k or "example" in k} == {
            "retry.linkerd.io/http": "5xx", "retry.linkerd.io/limit": "3", "example.com/owner": "me"}
        refused = learner.run("annotate", "svc/emoji", "retry.linkerd.io/limit=lots", "--overwrite", ok=False)
        assert refused.returncode == 1 and "nothing was changed" in refused.stderr and "Traceback" not in refused.stderr
        assert "emojivoto/emoji.annotations#0" in learner.run("routes", "svc/emoji").stdout
        k8s.kubectl("annotate", "svc", "emoji", "-n", NS, "--overwrite", "retry.linkerd.io/limit=lots")  # kubectl takes any value
        wait_until(lambda: "‼ Service emojivoto/emoji: metadata.annotations.retry.linkerd.io/limit: expected" in learner.run("check").stdout,
                   30, "check to name the annotation it cannot use")
        learner.run("annotate", "svc/emoji", "retry.linkerd.io/http-", "retry.linkerd.io/limit-")
        svc = json.loads(k8s.kubectl("get", "svc", "emoji", "-n", NS, "-o", "json").stdout)
        assert not [k for k in svc["metadata"]["annotations"] if "linkerd" in k] and svc["metadata"]["annotations"]["example.com/owner"] == "me"

        # a learner's own app: applied to the cluster (and injected there), deleted again
        app = tmp_path / "hello.yaml"
        app.write_text("""
apiVersion: v1
kind: Namespace
metadata: {name: hello}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: hello, namespace: hello}
spec:
  replicas: 1
  selector: {matchLabels: {app: hello}}
  template:
    metadata: {labels: {app: hello}, annotations: {meshdojo.dev/inject: enabled}}
    spec:
      containers:
      - {name: hello, image: ghcr.io/meshdojo/demo-apps:0.1, command: [python, emojivoto/app.py, emoji],
         env: [{name: PORT, value: "8080"}], ports: [{containerPort: 8080}]}
""")
        applied = learner.run("apply", "-f", str(app)).stdout
        assert "namespace/hello serverside-applied" in applied and "deployment/hello serverside-applied" in applied
        hello = wait_until(lambda: [w for w in learner.status()["workloads"] if w["namespace"] == "hello" and w["ready"]] or None,
                           60, "the learner's pod")
        assert hello[0]["meshed"]
        pod = json.loads(k8s.kubectl("get", "pods", "-n", "hello", "-o", "json").stdout)["items"][0]
        assert pod["spec"]["containers"][-1]["image"] == IMAGE  # the demo apps' image is meshdojo's on a cluster
        # a refused document: nothing of the file is applied
        bad = tmp_path / "bad.yaml"
        bad.write_text(app.read_text().replace("name: hello, namespace: hello}", "name: hello2, namespace: hello}")
                       .replace("replicas: 1", "replicas: many"))
        refused = learner.run("apply", "-f", str(bad), ok=False)
        assert refused.returncode == 1 and "nothing was applied" in refused.stderr and "Traceback" not in refused.stderr
        assert k8s.kubectl("get", "deploy", "hello2", "-n", "hello", check=False).returncode != 0
        assert "deployment hello/hello deleted" in learner.run("delete", "-f", str(app)).stdout.lower()

        # down: the sandbox's namespaces and the install are gone; the cluster is not ours to delete
        down = learner.run("down", timeout=300)
        assert "nothing of meshdojo's remains" in down.stdout
        admin = kube.connect(k8s.kubeconfig, None)
        assert kube.ours(admin) == []
        names = [n["metadata"]["name"] for n in admin.resources.get(api_version="v1", kind="Namespace").get().to_dict()["items"]]
        assert NS not in names and "hello" not in names and "default" in names, names
        assert not (tmp_path / "home" / "lab" / "backend.json").exists()
        assert learner.run("status", ok=False).returncode == 1
    finally:
        mesh.close()

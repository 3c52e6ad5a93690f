"""The mesh on a cluster carries real traffic, and the verbs that need the control plane's pod
to reach the sidecars work there: `stat`/`edges` from scraped pods, `tap`, `top`, a network
fault, the wire view and the intruder — against the real API server (tests/k8senv).

`up --backend context` applies emojivoto as it is; the injector writes each pod's sidecar; then
tests/k8senv/pods.py runs every pod the way a kubelet would (its IP from kwok, in a network
namespace of its own, the containers' commands, env and volumes as the API server stores them,
the ServiceAccount token from a TokenRequest). The control plane runs beside the cluster on the
pod network's host address, where the pods' sidecars reach it by its Service's name.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from unittest.mock import patch

import pytest

from controlplane.injector import ADMIN_PORT, OUTBOUND_PORT
from controlplane.jwtissuer import ISSUER
from sandbox.processes import wait_until
from tests.apps import plain_http_server
from tests.k8senv import pods as podnet
from tests.k8senv.cluster import free_port
from tests.kube_gateway_steps import secure_gateway, stat_rows
from tests.kube_plane import IMAGE, sa_kubeconfig
from tests.meshkit import Mesh
from tests.test_kube_backend import Learner

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(600)]
NS = "emojivoto"
MESH_PORT = 8086  # the port the injected sidecars are told (the control plane's Service), on the pod network's host address


async def _tui_taps_web(home: Path, kubeconfig: Path) -> str:
    """The UI's tap pane on the cluster sandbox: requests appear, and a request's fate."""
    from textual.widgets import DataTable, Input

    from tests.test_tui_sandbox import text, until
    from tui.app import MeshdojoApp

    # the in-process UI finds the sandbox and the cluster as the CLI does; both restored after
    with patch.dict(os.environ, {"MESHDOJO_HOME": str(home), "KUBECONFIG": str(kubeconfig)}):
        app = MeshdojoApp("lab")
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.snapshot.status, "the first refresh", 30)
            await pilot.press("3")
            target = app.query_one("#tap-target", Input)
            target.value = "web"
            target.focus()
            await pilot.press("enter")
            table = app.query_one("#tap-table", DataTable)
            await until(pilot, lambda: table.row_count >= 2, "tapped requests in the UI", 30)
            table.focus()
            await pilot.press("down")
            await until(pilot, lambda: "src " in text(app, "#fate"), "a request's fate in the UI")
            fate = text(app, "#fate")
        assert app.crash is None
        return fate


def _tap_lines(learner: Learner, *args: str, want: int, timeout: float = 60) -> list[dict]:
    """The first ``want`` request events of `meshdojo tap ... -o json`, then Ctrl-C."""
    proc = subprocess.Popen([*learner.argv("tap", *args, "-o", "json")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=learner.env)
    events: list[dict] = []
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            event = json.loads(line)
            if event.get("type") == "end":
                events.append(event)
                if len(events) >= want:
                    break
    finally:
        timer.cancel()
        proc.terminate()
        _out, err = proc.communicate(timeout=10)
    assert len(events) >= want, f"tap gave {len(events)} of {want} events in {timeout}s: {err}"
    return events


def _from_pod(netns: str, url: str, bearer: str | None = None) -> str:
    """GET ``url`` from inside a pod, through its sidecar (HTTP_PROXY, as its app does): "status body"."""
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    script = ("import urllib.request, urllib.error\n"
              f"opener = urllib.request.build_opener(urllib.request.ProxyHandler({{'http': 'http://127.0.0.1:{OUTBOUND_PORT}'}}))\n"
              "try:\n"
              f"    r = opener.open(urllib.request.Request({url!r}, headers={headers!r}), timeout=10); print(r.status, r.read().decode())\n"
              "except urllib.error.HTTPError as e:\n"
              "    print(e.code, e.headers.get('x-meshdojo-error'), e.read().decode())\n")
    done = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    return (done.stdout or done.stderr).strip()


@contextlib.contextmanager
def meshed_cluster(k8s, tmp_path: Path, demos: str) -> Iterator[tuple[Learner, podnet.PodNetwork]]:
    """meshdojo installed on the test cluster, its control plane beside it on the pod network's
    host address, ``up --backend context --demo DEMOS`` done; the pods run by the caller
    (``net.run``, or ``net.follow`` to keep up with the cluster); ``down`` and cleanup after."""
    api, webhook = free_port(), free_port()
    learner = Learner(k8s, tmp_path / "home")
    client = k8s.client()
    from sandbox.cli import main

    with podnet.PodNetwork(tmp_path / "pods", client, k8s.networks.pods, {"meshdojo-controlplane.meshdojo-system.svc": None},
                           k8s.node_logs.files) as net:
        host = net.host_ip
        assert main(["install", "--kubeconfig", str(k8s.kubeconfig), "--image", IMAGE,
                     "--webhook-url", f"https://{host}:{webhook}/inject"]) == 0
        own = sa_kubeconfig(k8s, client, tmp_path / "cp.kubeconfig", "meshdojo-system", "meshdojo-controlplane")
        mesh = Mesh(tmp_path)
        try:
            mesh.start_controlplane("--kubernetes", "--kubeconfig", str(own), "--host", host, "--relay-address", host,
                                    "--webhook-port", str(webhook), "--webhook-host", host, "--proxy-image", IMAGE,
                                    "--api-port", str(api), "--mesh-port", str(MESH_PORT))
            learner.run("up", "--backend", "context", "--demo", demos, "--no-tui", "--image", IMAGE,
                        "--controlplane-url", f"http://{host}:{api}", "--webhook-url", f"https://{host}:{webhook}/inject")
            yield learner, net
        finally:
            try:
                learner.run("down", ok=False)
            finally:
                mesh.close()


@pytest.mark.skipif(podnet.usable() is not None, reason=podnet.usable() or "")
def test_real_traffic_on_the_cluster_tap_top_netfaults_wire_and_the_intruder(k8s, tmp_path, record_property):
    client = k8s.client()
    with meshed_cluster(k8s, tmp_path, "emojivoto") as (learner, net):
        began = time.monotonic()
        for pod in podnet.pods_of(client, NS):
            net.run(pod)
        running = sorted(p.name.rsplit("-", 2)[0] for p in net.pods.values())
        assert running == ["emoji", "emojivoto-ingress", "vote-bot", "voting", "web"], running

        # vote-bot -> web -> emoji and voting, each hop through two sidecars over mTLS: stat and edges from scraped pods
        def traffic() -> dict[str, dict] | None:
            rows = stat_rows(learner)
            return rows if all((rows.get(d) or {}).get("rps") for d in ("web", "emoji", "voting")) else None

        try:
            rows = wait_until(traffic, 90, "requests on web, emoji and voting in `meshdojo stat`", interval=0.5)
        except Exception:
            print("\n".join(f"--- {key}/{c}\n{net.log(p.name, c)[-1500:]}" for key, p in net.pods.items() for c in p.procs))
            raise
        record_property("pods started to traffic in stat (s)", round(time.monotonic() - began, 1))
        assert rows["emoji"]["success_rate"] == 1.0 and rows["web"]["meshed"] == "1/1", rows
        edges = json.loads(learner.run("edges", "-o", "json").stdout)
        assert any(e["src"] == "web" and e["dst"] == "emoji" and e["secured"] for e in edges), edges

        # logs: the pods' own, through the API server and the node (`kubectl logs`), the app's and the sidecar's
        app_log = learner.run("logs", "emoji").stdout
        assert "listening on 127.0.0.1:14080" in app_log, app_log  # the app moved to its private port (PORT)
        proxy_log = learner.run("logs", "emoji", "--proxy").stdout
        assert f"identity spiffe://meshdojo.local/ns/{NS}/sa/emoji: certificate serial" in proxy_log, proxy_log

        # identities: each pod's sidecar, read through the control plane (its certificate, from a TokenReview'd token)
        idents = {w["workload"].rsplit("-", 2)[0]: w for w in json.loads(learner.run("identity", "-o", "json").stdout)["workloads"]}
        assert idents["emoji"]["identity"] == f"spiffe://meshdojo.local/ns/{NS}/sa/emoji" and idents["emoji"]["serial"], idents
        assert idents["emoji"]["mode"] == "permissive", idents["emoji"]
        # load with web's identity, from web's own sidecar: emoji's sidecar counts the requests as web's, over mutual TLS
        sent = json.loads(learner.run("load", "svc/emoji", "/api/list", "--from", "deploy/web", "-n", "6", "-o", "json").stdout)
        assert sent["codes"] == {"200": {"count": 6, "share": 1.0}}, sent
        # Linkerd's Restricting Access task with kubectl: voting's sidecar (its port's name, http, from the injector)
        # refuses every caller once the Server covers it, then lets web alone in once the ServerAuthorization names it
        # (or an AuthorizationPolicy requires a MeshTLSAuthentication of web's identity)
        task = [str(ROOT / f"demo-apps/emojivoto/policies/{f}.yaml") for f in ("voting-server", "voting-serverauthorization")]

        def voting_from(source: str) -> set[str]:
            out = learner.run("load", "svc/voting", "/api/results", "--from", f"deploy/{source}", "-n", "3", "-c", "1", "-o", "json")
            return set(json.loads(out.stdout)["codes"])

        k8s.kubectl("apply", "-f", task[0])
        wait_until(lambda: voting_from("web") == {"403"}, 30, "voting's Server to refuse web", interval=0.5)
        k8s.kubectl("apply", "-f", task[1])
        wait_until(lambda: voting_from("web") == {"200"}, 30, "the ServerAuthorization to let web in", interval=0.5)
        assert voting_from("emoji") == {"403"}
        # the same step in Linkerd's newer form: an AuthorizationPolicy requiring a MeshTLSAuthentication of web's identity
        newer = str(ROOT / "demo-apps/emojivoto/policies/voting-authorizationpolicy.yaml")
        k8s.kubectl("delete", "-f", task[1])
        wait_until(lambda: voting_from("web") == {"403"}, 30, "web refused without the ServerAuthorization", interval=0.5)
        k8s.kubectl("apply", "-f", newer)
        wait_until(lambda: voting_from("web") == {"200"}, 30, "Linkerd's AuthorizationPolicy to let web in", interval=0.5)
        assert voting_from("emoji") == {"403"}
        k8s.kubectl("delete", "-f", newer, "-f", task[0])
        # Linkerd's per-route policy task, on emoji: only what its routes match is served (404 otherwise), each route
        # to the callers its AuthorizationPolicy names
        routes = [str(ROOT / f"demo-apps/emojivoto/policies/{f}.yaml")
                  for f in ("emoji-server", "emoji-list-route", "emoji-find-route", "emoji-find-policy")]
        find = "/api/find?shortcode=:joy:"

        def emoji_from(source: str, path: str) -> set[str]:
            out = learner.run("load", "svc/emoji", path, "--from", f"deploy/{source}", "-n", "3", "-c", "1", "-o", "json")
            return set(json.loads(out.stdout)["codes"])

        k8s.kubectl("apply", *(arg for path in routes for arg in ("-f", path)))
        wait_until(lambda: emoji_from("voting", find) == {"403"}, 30, "the find route to refuse voting", interval=0.5)
        assert emoji_from("web", find) == {"200"} and emoji_from("voting", "/api/list") == {"200"}
        assert emoji_from("web", "/api/results") == {"404"}  # no route of emoji's Server matches it
        posted = learner.run("load", "svc/emoji", "/api/list", "-X", "POST", "--from", "deploy/web", "-n", "2", "-o", "json")
        assert set(json.loads(posted.stdout)["codes"]) == {"404"}, posted.stdout  # the list route is GET's: the method reached emoji
        k8s.kubectl("delete", *(arg for path in routes for arg in ("-f", path)))
        wait_until(lambda: emoji_from("voting", find) == {"200"}, 30, "emoji open again", interval=0.5)
        wait_until(lambda: voting_from("emoji") == {"200"}, 30, "voting open again", interval=0.5)
        # Linkerd's rate limiting task: web's Server lets everyone in, and its HTTPLocalRateLimitPolicy gives each
        # identity 4 requests a second — ten at once from emoji's sidecar get 429s, voting's bucket is its own
        limits = [str(ROOT / f"demo-apps/emojivoto/policies/{f}.yaml") for f in ("web-server", "web-ratelimit-linkerd")]

        def web_burst(source: str, n: int = 10) -> dict[str, int]:
            out = learner.run("load", "svc/web", "/api/list", "--from", f"deploy/{source}", "-n", str(n), "-c", str(n), "-o", "json")
            return {code: entry["count"] for code, entry in json.loads(out.stdout)["codes"].items()}

        k8s.kubectl("apply", "-f", limits[0], "-f", limits[1])
        limited = wait_until(lambda: (c := web_burst("emoji")).get("429") and c, 30, "web's limit to refuse emoji's burst", interval=0.5)
        assert limited.get("200", 0) <= 6, limited
        assert web_burst("voting", 4) == {"200": 4}
        k8s.kubectl("delete", "-f", limits[1], "-f", limits[0])
        wait_until(lambda: web_burst("emoji") == {"200": 10}, 30, "web unlimited again", interval=0.5)
        # proxy-status: each pod's sidecar, read through the control plane, holds the latest snapshot and endpoints
        synced = wait_until(lambda: (rows := json.loads(learner.run("proxy-status", "-o", "json").stdout))
                            and all(r["policies"] == r["endpoints"] == "SYNCED" for r in rows) and rows, 30,
                            "every pod's sidecar in step with the control plane", interval=0.5)
        assert {r["name"].rsplit("-", 2)[0] for r in synced} >= {"web", "emoji", "voting", "vote-bot"}, synced

        # tap: the control plane reads web's sidecar and streams it; the identities prove mTLS across pods
        events = _tap_lines(learner, "deploy/web", "--to", "deploy/emoji", want=3)
        assert all(e["tls"] and e["dst"].startswith("emoji") for e in events), events
        assert {e.get("server_id") for e in events} == {f"spiffe://meshdojo.local/ns/{NS}/sa/emoji"}, events
        # ... over mutual TLS: a sidecar's tap asked in clear from another host is refused before its token is read
        web_ip = next(p.ip for p in net.pods.values() if p.name.startswith("web-"))
        plain = urllib.request.Request(f"http://{web_ip}:{ADMIN_PORT}/tap", headers={"Authorization": "Bearer guessed"})
        with pytest.raises(urllib.error.HTTPError) as clear:
            urllib.request.urlopen(plain, timeout=10)
        assert clear.value.code == 403 and b"only over mutual TLS" in clear.value.read()
        top = learner.run("top", "deploy/web", "--duration", "3").stdout
        assert "/api/list" in top or "/api/vote" in top, top
        fate = asyncio.run(_tui_taps_web(tmp_path / "home", k8s.kubeconfig))
        assert "mTLS: yes" in fate and "_id: spiffe://meshdojo.local/ns/emojivoto/sa/" in fate, fate  # client_id or server_id

        # egress, Istio's task on the cluster: from web's pod, through its sidecar, to a server outside the mesh (on the
        # pod network's host address): passed through; a Sidecar CRD makes the namespace REGISTRY_ONLY, and the
        # control plane's watch of the CRD brings it to the pod's proxy
        with plain_http_server(net.host_ip, lambda _path, _host: "outside") as outside_port:
            outside = f"http://{net.host_ip}:{outside_port}/"
            web_netns = next(p.netns for p in net.pods.values() if p.name.startswith("web-"))
            assert _from_pod(web_netns, outside) == "200 outside", outside
            # meshdojo load --from: the control plane asks web's own sidecar, in its pod, to send as web's app would
            sent = json.loads(learner.run("load", outside, "--from", "deploy/web", "-n", "4", "-c", "2", "-o", "json").stdout)
            assert sent["codes"] == {"200": {"count": 4, "share": 1.0}}, sent
            sidecar = tmp_path / "sidecar.yaml"
            sidecar.write_text("apiVersion: policy.meshdojo.dev/v1alpha1\nkind: Sidecar\nmetadata: {name: default, namespace: emojivoto}\n"
                               "spec:\n  outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n")
            learner.run("apply", "-f", str(sidecar))
            wait_until(lambda: _from_pod(web_netns, outside).startswith("502 "), 30, "REGISTRY_ONLY to refuse the outside host")
            assert "egress_blocked" in _from_pod(web_netns, outside) and "Sidecar emojivoto/default" in _from_pod(web_netns, outside)
            assert "Sidecar" in learner.run("get", "sidecar", "-n", NS).stdout
            learner.run("delete", "-f", str(sidecar))
            wait_until(lambda: _from_pod(web_netns, outside) == "200 outside", 30, "passthrough again")

        # distributed tracing: a Telemetry CRD samples every request; the apps pass the context on, the control plane
        # reads each pod's spans over mutual TLS, and a vote is one trace through the four sidecars it crosses
        learner.run("apply", "-f", str(ROOT / "demo-apps/emojivoto/policies/tracing-all.yaml"))

        def a_vote() -> list[dict] | None:
            for t in json.loads(learner.run("trace", "-n", NS, "-o", "json").stdout):
                if t["root"]["path"].startswith("/api/vote") and t["spans"] == 6:
                    return json.loads(learner.run("trace", t["traceId"], "-o", "json").stdout)["spans"]
            return None

        vote = wait_until(a_vote, 60, "a vote's whole trace on the cluster", interval=1)
        assert [(s["depth"], s["workload"].split("/")[1].rsplit("-", 2)[0], s["direction"]) for s in vote] == [
            (0, "vote-bot", "outbound"), (1, "web", "inbound"), (2, "web", "outbound"), (3, "emoji", "inbound"),
            (2, "web", "outbound"), (3, "voting", "inbound")], vote
        assert vote[1]["peer"] == f"spiffe://meshdojo.local/ns/{NS}/sa/vote-bot", vote[1]

        # a network fault on the edge web -> emoji: the relay in the control plane holds emoji's answers 400 ms
        learner.run("fault", "net", "latency", "svc/emoji", "--from", "deploy/web", "--latency", "400ms", "--for", "2m")
        slow = _tap_lines(learner, "deploy/web", "--to", "deploy/emoji", want=3)
        assert min(e["latency_ms"] for e in slow) >= 380, [e["latency_ms"] for e in slow]
        listing = json.loads(learner.run("fault", "list", "-o", "json").stdout)
        assert any("400ms" in f["what"] or "400 ms" in f["what"] for f in listing["faults"]), listing
        learner.run("fault", "clear")
        fast = _tap_lines(learner, "deploy/web", "--to", "deploy/emoji", want=3)
        assert max(e["latency_ms"] for e in fast) < 300, [e["latency_ms"] for e in fast]

        # the wire view: what an eavesdropper between the pods sees is a TLS 1.3 handshake, then ciphertext
        wire = json.loads(learner.run("wire", "deploy/web", "deploy/emoji", "--timeout", "30", "-o", "json").stdout)
        assert wire["connections"], wire
        assert wire["connections"][0]["handshake"]["version"] == "TLS 1.3", wire["connections"][0]

        # the intruder, from the control plane's place in the network: PERMISSIVE lets plaintext in ...
        attacked = learner.run("attack", "svc/emoji", "-o", "json", ok=False)
        assert attacked.returncode == 1, attacked.stderr
        (hit,) = json.loads(attacked.stdout)
        emoji_ip = next(p.ip for p in net.pods.values() if p.name.startswith("emoji-"))
        assert hit["address"] == emoji_ip and hit["meshed"], hit
        assert {a["attempt"]: a["verdict"] for a in hit["attempts"]} == {"plaintext": "let through", "foreign-ca": "refused"}
        # ... and STRICT refuses both
        strict = tmp_path / "strict.yaml"
        strict.write_text("apiVersion: policy.meshdojo.dev/v1alpha1\nkind: MeshTLS\nmetadata: {name: strict, namespace: emojivoto}\n"
                          "spec:\n  targetRef: {kind: Service, name: emoji}\n  mode: STRICT\n")
        learner.run("apply", "-f", str(strict))

        def refused() -> bool:
            done = learner.run("attack", "svc/emoji", "-o", "json", ok=False)
            return done.returncode == 0 and {a["verdict"] for a in json.loads(done.stdout)[0]["attempts"]} == {"refused"}

        wait_until(refused, 30, "STRICT to refuse the intruder's plaintext")

        # end users' JWTs, Istio's RequestAuthentication as CRDs: the control plane issues a token and hands its
        # issuer's keys to emoji's sidecar; a forged token gets 401, alice's 200, and a DENY of mallory's principal 403
        jwt = tmp_path / "jwt.yaml"
        jwt.write_text(f"apiVersion: policy.meshdojo.dev/v1alpha1\nkind: RequestAuthentication\nmetadata: {{name: jwt, namespace: {NS}}}\n"
                       f"spec:\n  selector: {{matchLabels: {{app: emoji}}}}\n  jwtRules: [{{issuer: '{ISSUER}'}}]\n---\n"
                       f"apiVersion: policy.meshdojo.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {{name: no-mallory, namespace: {NS}}}\n"
                       f"spec:\n  selector: {{matchLabels: {{app: emoji}}}}\n  action: DENY\n"
                       f"  rules: [{{from: [{{source: {{requestPrincipals: ['{ISSUER}/mallory']}}}}]}}]\n")
        learner.run("apply", "-f", str(jwt))
        alice, mallory = (learner.run("jwt", user).stdout.strip() for user in ("alice", "mallory"))
        emoji_url = f"http://emoji.{NS}:8080/api/list"
        forged = wait_until(lambda: (r := _from_pod(web_netns, emoji_url, "e30.e30.x")).startswith("401 ") and r, 30,
                            "emoji's sidecar to check tokens")
        assert "jwt_refused" in forged, forged
        assert _from_pod(web_netns, emoji_url, alice).startswith("200 ")
        assert _from_pod(web_netns, emoji_url, mallory).startswith("403 authz_denied")
        shown = json.loads(learner.run("diagnostics", "endpoints", f"emoji.{NS}.svc.cluster.local:8080", "-o", "json").stdout)
        assert shown and all(e["pod"].startswith("emoji-") and e["identity"].endswith(f"/ns/{NS}/sa/emoji") for e in shown), shown
        page = learner.run("diagnostics", "proxy-metrics", "deploy/emoji", "-n", NS).stdout  # the same way: its /metrics
        assert page.startswith("#\n# POD emoji-") and re.search(r'^request_total\{[^}]*direction="inbound"', page, re.M), page[:300]
        described = learner.run("describe", "deploy/emoji").stdout  # the pod's sidecar, read through the control plane
        assert f"RequestAuthentication  {NS}/jwt (workload)" in described and f"{NS}/no-mallory (DENY, workload)" in described, described

        # the ingress gateway's pod enforces what selects it (Istio's istio: ingressgateway, from the pod's labels): a DENY
        # in the mesh's root namespace refuses one path at the edge, the rest of the page still comes through
        edge = tmp_path / "edge.yaml"
        edge.write_text("apiVersion: policy.meshdojo.dev/v1alpha1\nkind: AuthorizationPolicy\n"
                        "metadata: {name: edge, namespace: meshdojo-system}\n"
                        "spec:\n  selector: {matchLabels: {istio: ingressgateway}}\n  action: DENY\n"
                        "  rules: [{to: [{operation: {paths: [/api/vote*]}}]}]\n")
        learner.run("apply", "-f", str(edge))

        def through_gateway(path: str, *headers: str) -> dict:
            args = [arg for h in headers for arg in ("-H", h)]
            out = json.loads(learner.run("load", "svc/web", path, "-n", "3", "-c", "1", *args, "-o", "json").stdout)
            return {code: c["count"] for code, c in out["codes"].items()}

        wait_until(lambda: through_gateway("/api/vote?choice=:joy:") == {"403": 3}, 30, "the gateway to refuse /api/vote", interval=1)
        assert through_gateway("/api/list") == {"200": 3}
        learner.run("delete", "-f", str(edge))

        # a Service of a Gateway's name that someone else made (Istio's own, on a cluster that runs it) is left as it is
        k8s.kubectl("create", "service", "clusterip", "taken-istio", "-n", NS, "--tcp=80:9999")
        taken = tmp_path / "taken.yaml"
        taken.write_text(f"apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: taken, namespace: {NS}}}\n"
                         "spec:\n  gatewayClassName: istio\n  listeners: [{name: http, port: 80, protocol: HTTP}]\n")
        learner.run("apply", "-f", str(taken))
        wait_until(lambda: f"could not apply the Service {NS}/taken-istio" in (tmp_path / "controlplane.log").read_text(), 30,
                   "the control plane to say the Service is someone else's", interval=0.5)
        kept = json.loads(k8s.kubectl("get", "svc/taken-istio", "-n", NS, "-o", "json").stdout)
        assert kept["spec"]["selector"] == {"app": "taken-istio"} and kept["spec"]["ports"][0]["targetPort"] == 9999, kept["spec"]
        assert "ownerReferences" not in kept["metadata"], kept["metadata"]
        learner.run("delete", "-f", str(taken))
        k8s.kubectl("delete", "service", "taken-istio", "-n", NS)

        # Istio's Gateway API ingress: a Gateway (a CR) served by the namespace's gateway pod, a route letting one path in
        ingress = tmp_path / "ingress.yaml"
        ingress.write_text(f"apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: web-gateway, namespace: {NS}}}\n"
                           "spec:\n  gatewayClassName: istio\n  listeners: [{name: http, port: 80, protocol: HTTP}]\n---\n"
                           f"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: web, namespace: {NS}}}\n"
                           "spec:\n  parentRefs: [{name: web-gateway}]\n"
                           "  rules: [{matches: [{path: {type: PathPrefix, value: /api/list}}], backendRefs: [{name: web, port: 80}]}]\n")
        learner.run("apply", "-f", str(ingress))
        wait_until(lambda: through_gateway("/api/vote?choice=:joy:") == {"404": 3}, 30, "the route to keep /api/vote out", interval=1)
        assert through_gateway("/api/list") == {"200": 3}
        k8s.kubectl("wait", "--for=condition=programmed", "gateway/web-gateway", "-n", NS, "--timeout=30s")  # as Istio's tasks wait
        sending = threading.Event()  # the gateway's pod tapped through the control plane, a request it refused explained

        def keep_sending() -> None:
            while not sending.wait(0.5):
                through_gateway("/api/vote?choice=:joy:")

        threading.Thread(target=keep_sending, daemon=True).start()
        try:
            (refused,) = _tap_lines(learner, "deploy/emojivoto-ingress", want=1)
        finally:
            sending.set()
        assert refused["fate"]["no_route"].startswith(f"no rule of HTTPRoute {NS}/web attached to this gateway"), refused
        described = learner.run("describe", "deploy/emojivoto-ingress").stdout  # its pod's /config, through the control plane
        assert f"HTTPRoute {NS}/web on Gateway {NS}/web-gateway (any host)" in described, described
        # the Gateway's own Service, named as Istio names it (kubectl port-forward svc/web-gateway-istio 8080:80 as in its
        # tasks): the namespace's gateway pod behind it, owned by the Gateway; kubectl get gateway shows it as the ADDRESS
        service = wait_until(lambda: (r := k8s.kubectl("get", "svc/web-gateway-istio", "-n", NS, "-o", "json", check=False)).returncode == 0
                             and json.loads(r.stdout), 30, "the Gateway's Service", interval=0.5)
        gateway_uid = json.loads(k8s.kubectl("get", "gateway/web-gateway", "-n", NS, "-o", "json").stdout)["metadata"]["uid"]
        assert service["metadata"]["ownerReferences"][0]["uid"] == gateway_uid, service["metadata"]
        assert service["spec"]["selector"] == {"app": f"{NS}-ingress"}, service["spec"]
        assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(80, OUTBOUND_PORT)], service["spec"]
        written = wait_until(lambda: (w := json.loads(k8s.kubectl("get", "gateway/web-gateway", "-n", NS, "-o", "json").stdout)["status"])
                             and w["addresses"][0]["value"].startswith("web-gateway-istio.") and w, 30, "the Service as the address")
        assert written["addresses"] == [{"type": "Hostname", "value": f"web-gateway-istio.{NS}.svc.cluster.local"}], written
        # Istio's Getting Started annotates the Gateway for its Service's type: the Service follows
        k8s.kubectl("annotate", "gateway/web-gateway", "-n", NS, "networking.istio.io/service-type=NodePort")
        wait_until(lambda: json.loads(k8s.kubectl("get", "svc/web-gateway-istio", "-n", NS, "-o", "json").stdout)["spec"]["type"]
                   == "NodePort", 30, "the Gateway's Service made a NodePort", interval=0.5)
        assert [(item["name"], item["attachedRoutes"]) for item in written["listeners"]] == [("http", 1)], written

        # the route's status.parents, as Istio and Linkerd write theirs: our entry says why, another controller's is kept
        def parents() -> list[dict]:
            return json.loads(k8s.kubectl("get", "httproute/web", "-n", NS, "-o", "json").stdout).get("status", {}).get("parents", [])

        def ours(reason: str) -> Callable[[], dict | None]:
            return lambda: next((p for p in parents() if p["controllerName"] == "meshdojo.dev/controller"
                                 and p["conditions"][0]["reason"] == reason), None)

        entry = wait_until(ours("Accepted"), 30, "the route's status to be written", interval=0.5)
        assert entry["parentRef"] == {"name": "web-gateway"} and entry["conditions"][1]["reason"] == "ResolvedRefs", entry
        shown = json.loads(learner.run("get", "httproute/web", "-n", NS, "-o", "json").stdout)[0]  # meshdojo's get, as kubectl's
        assert shown["status"]["parents"] == [entry], shown
        theirs = {"parentRef": {"name": "web-gateway"}, "controllerName": "example.com/another-controller",
                  "conditions": [{"type": "Accepted", "status": "False", "reason": "NoMatchingParent", "message": "",
                                  "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
        k8s.kubectl("patch", "httproute/web", "-n", NS, "--subresource=status", "--type=merge",
                    "-p", json.dumps({"status": {"parents": [*parents(), theirs]}}))
        learner.run("delete", "gateway", "web-gateway", "-n", NS)
        wait_until(lambda: k8s.kubectl("get", "svc/web-gateway-istio", "-n", NS, check=False).returncode != 0, 30,
                   "the Gateway's Service garbage-collected with it", interval=0.5)
        gone = wait_until(ours("NoMatchingParent"), 30, "the route's status to say its Gateway is gone", interval=0.5)
        assert gone["conditions"][0]["message"].startswith(f"Gateway {NS}/web-gateway does not exist"), gone
        assert theirs in parents(), parents()
        learner.run("delete", "httproute", "web", "-n", NS)
        wait_until(lambda: through_gateway("/api/vote?choice=:joy:") != {"404": 3}, 30, "the gateway open again", interval=1)

        # Istio's Kubernetes Ingress task, with kubectl: an IngressClass naming Istio's controller and an Ingress of that
        # class (built-in kinds: no CRD of ours) served by the namespace's gateway pod; another controller's left alone
        task = tmp_path / "kubernetes-ingress.yaml"
        task.write_text("apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: istio}\n"
                        "spec: {controller: istio.io/ingress-controller}\n---\n"
                        f"apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: ingress, namespace: {NS}}}\n"
                        "spec:\n  ingressClassName: istio\n  rules:\n  - http:\n      paths:\n"
                        "      - {path: /api/list, pathType: Exact, backend: {service: {name: web, port: {number: 80}}}}\n---\n"
                        f"apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: theirs, namespace: {NS}}}\n"
                        "spec:\n  ingressClassName: nginx\n  defaultBackend: {service: {name: web, port: {number: 80}}}\n")
        k8s.kubectl("apply", "-f", str(task))
        wait_until(lambda: through_gateway("/api/vote?choice=:joy:") == {"404": 3}, 30, "the Ingress to keep /api/vote out", interval=1)
        assert through_gateway("/api/list") == {"200": 3}
        listed = learner.run("get", "ingress", "-n", NS).stdout
        assert " ingress " in listed and "theirs" not in listed, listed
        assert "theirs" not in learner.run("check", ok=False).stdout  # another class: not ours to judge either
        described = learner.run("describe", f"deploy/{NS}-ingress").stdout
        assert f"Ingress {NS}/ingress as route {NS}/ingress (any host)" in described, described
        k8s.kubectl("delete", "-f", str(task))
        wait_until(lambda: through_gateway("/api/vote?choice=:joy:") != {"404": 3}, 30, "the gateway open again", interval=1)

        # Istio's Secure Gateways task: an HTTPS listener naming a Secret made with kubectl; the control plane reads it by
        # name (a Role in the gateway's namespace: no list, no watch) and gives it to the gateway pod alone, which ends TLS
        secure_gateway(k8s, learner, net, tmp_path)

        # Istio's External Authorization task: the sample authorizer applied as a learner's Deployment (its pod run as the
        # API server made it, injected), its ExtensionProvider and web's CUSTOM policy as CRDs; web asks it about each vote
        task = ROOT / "demo-apps/extauthz"
        learner.run("apply", "-f", str(task / "ext-authz.yaml"), "-f", str(task / "provider.yaml"), "-f", str(task / "web-ext-authz.yaml"))

        def authorizer_pod() -> dict | None:
            return next((p for p in podnet.pods_of(client, NS) if p["metadata"]["name"].startswith("ext-authz-")
                         and p.get("status", {}).get("podIP")), None)

        net.run(wait_until(authorizer_pod, 60, "the authorizer's pod", interval=0.5))
        wait_until(lambda: through_gateway("/api/vote?choice=:joy:", "x-ext-authz: allow") == {"200": 3}, 60,
                   "the authorizer's pod to allow a vote", interval=1)
        assert through_gateway("/api/vote?choice=:joy:", "x-ext-authz: deny") == {"403": 3}
        assert through_gateway("/api/list") == {"200": 3}
        learner.run("delete", "-f", str(task / "web-ext-authz.yaml"))

        # a report of the last minutes on the cluster: the latency fault and the STRICT MeshTLS among its changes
        report = learner.run("report", "--before", "3m", "--after", "20s", "-o", str(tmp_path / "report.html"))
        assert "wrote" in report.stdout, report.stdout
        page = (tmp_path / "report.html").read_text()
        assert "NetworkFault" in page and "created MeshTLS" in page and "emojivoto/emoji" in page
        print(f"\nreal traffic on the test cluster: {len(net.pods)} pods, web {rows['web']['rps']:.1f} rps; "
              f"latency fault {min(e['latency_ms'] for e in slow):.0f} ms, cleared {max(e['latency_ms'] for e in fast):.0f} ms")

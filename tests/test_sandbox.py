"""The local sandbox end to end, through the real `meshdojo` command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from sandbox.processes import pid_alive, wait_until
from tests.meshkit import Cli

DEMO_POLICIES = Path(__file__).resolve().parent.parent / "demo-apps" / "emojivoto" / "policies"
BOOKINFO_POLICIES = DEMO_POLICIES.parent.parent / "bookinfo" / "policies"


def all_pids(st: dict) -> list[int]:
    pids = [st["supervisor"], st["forkserver"], st["controlplane"]["pid"]] + [g["pid"] for g in st["gateways"]]
    for w in st["workloads"]:
        pids += [p for p in w["pids"].values() if p]
    return [p for p in pids if p]


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=15) as rsp:
            return rsp.status, rsp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def tapped_end(cli: Cli, target: str, send, timeout: float = 30) -> dict:
    """The first request `meshdojo tap TARGET -o json` sees end, ``send`` called until it does."""
    import threading

    proc = subprocess.Popen([sys.executable, "-m", "sandbox.cli", "tap", target, "-o", "json"], env=cli.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done = threading.Event()

    def keep_sending() -> None:
        while not done.wait(0.2):
            send()

    threading.Thread(target=keep_sending, daemon=True).start()
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        assert proc.stdout is not None
        return next(e for line in proc.stdout if (e := json.loads(line)).get("type") == "end")
    finally:
        done.set()
        timer.cancel()
        proc.terminate()
        proc.communicate(timeout=10)


def inbound_requests(workload: dict) -> float:
    """Requests a meshed instance's sidecar has received so far."""
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{workload['ports']['admin']}/metrics", timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("request_total{") and 'direction="inbound"' in line)


def reachable(url: str) -> int:
    """The status of a GET, or 0 when nothing answers (yet)."""
    try:
        return get(url)[0]
    except OSError:
        return 0


@pytest.mark.timeout(240)
def test_lifecycle_up_kill_scale_inject_down(cli):
    out = cli.run("up", "--no-tui", "--demo", "emojivoto").stdout
    assert "Ready:" in out and "emojivoto web UI" in out
    st = cli.status()
    assert st["ready"] and st["backend"] == "local" and st["controlplane"]["ready"]
    assert {w["deployment"] for w in st["workloads"]} == {"web", "emoji", "voting", "vote-bot"}
    # every sidecar and the gateway are forked from the fork server (sandbox/forkserver.py), and say so
    assert f"sidecars forked from pid {st['forkserver']}" in cli.run("status").stdout
    for pid in [w["pids"]["proxy"] for w in st["workloads"]] + [g["pid"] for g in st["gateways"]]:
        assert int(Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[1]) == st["forkserver"]
    for w in st["workloads"]:
        assert w["meshed"] and w["ready"] and w["identity"] == f"spiffe://meshdojo.local/ns/emojivoto/sa/{w['deployment']}"
        assert set(w["ports"]) == {"app", "inbound", "outbound", "admin"} and w["pids"]["proxy"]
    # the UI URL goes through the ingress gateway and an mTLS hop to web
    gateway = st["gateways"][0]["url"]
    status, body = get(gateway + "api/list")
    assert status == 200 and ":doughnut:" in body
    web = next(w for w in st["workloads"] if w["deployment"] == "web")
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{web['ports']['admin']}/metrics", timeout=5).read().decode()
    assert 'client_id="spiffe://meshdojo.local/ns/emojivoto/sa/ingress-gateway"' in metrics
    # the vote-bot's traffic crosses the mesh too, doughnut failures included
    wait_until(lambda: 'client_id="spiffe://meshdojo.local/ns/emojivoto/sa/vote-bot"' in urllib.request.urlopen(
        f"http://127.0.0.1:{web['ports']['admin']}/metrics", timeout=5).read().decode(), 20, "vote-bot traffic at web")

    # a real Prometheus can find every proxy
    targets = json.loads((cli.home / "default" / "prometheus-targets.json").read_text())
    assert {t["labels"]["deployment"] for t in targets} == {"web", "emoji", "voting", "vote-bot"}
    assert all(t["targets"][0].startswith("127.0.0.1:") for t in targets)

    # top: web's traffic by destination, from the tap stream
    top = cli.run("top", "deploy/web", "--duration", "3").stdout
    assert "SOURCE" in top and "voting" in top and "/api/vote" in top

    # the doctor agrees
    check = cli.run("check").stdout
    assert "√ emoji-0: proxy ready with a valid certificate from this CA" in check and "×" not in check
    assert "√ issuer is signed by the trust anchor" in check and "√ admin token and CA keys are 0600" in check

    # policy resources from the CLI: all or nothing, then the shipped example, then the shortcut
    bad = cli.home.parent / "bad.yaml"
    bad.write_text((DEMO_POLICIES / "voting-abort.yaml").read_text() + "\n---\n" + (DEMO_POLICIES / "voting-abort.yaml").read_text()
                   .replace("name: voting-abort", "name: other").replace("httpStatus: 503", "httpStatus: 99"))
    failed = cli.run("apply", "-f", str(bad), check=False)
    assert failed.returncode == 1 and f"{bad}: document 1: spec.abort.httpStatus: expected an HTTP status" in failed.stderr
    assert "No FaultInjection" in cli.run("get", "faultinjection").stdout or "No faultinjection" in cli.run("get", "faultinjection").stdout
    assert "faultinjection/voting-abort created" in cli.run("apply", "-f", str(DEMO_POLICIES)).stdout
    assert "httpStatus: 503" in cli.run("get", "faults", "voting-abort", "-o", "yaml").stdout
    assert "deleted" in cli.run("delete", "-f", str(DEMO_POLICIES / "voting-abort.yaml")).stdout
    shortcut = cli.run("fault", "inject", "voting", "--abort", "503", "--for", "1m").stdout
    assert "kind: FaultInjection" in shortcut and "meshdojo fault clear voting" in shortcut
    wait_until(lambda: get(gateway + "api/vote?choice=:joy:")[0] == 503, 5, "the fault to take effect")
    cli.run("fault", "clear", "voting")
    wait_until(lambda: get(gateway + "api/vote?choice=:joy:")[0] == 200, 5, "the fault to be cleared")

    # an unknown deployment is an error, not "no traffic yet"; two MeshTLS for one workload are a conflict
    nosuch = cli.run("stat", "deploy/nosuch", check=False)
    assert nosuch.returncode == 1 and "no deployment 'nosuch'; known: emoji" in nosuch.stderr
    tied = cli.home.parent / "tied.yaml"
    tied.write_text("".join(f"---\napiVersion: policy.meshdojo.dev/v1alpha1\nkind: MeshTLS\nmetadata: {{name: {n}, namespace: emojivoto}}\n"
                            f"spec: {{mode: PERMISSIVE, targetRef: {{kind: Deployment, name: emoji}}}}\n" for n in ("a-tls", "b-tls")))
    cli.run("apply", "-f", str(tied))
    listed = cli.run("get")  # every kind
    assert "MeshTLS" in listed.stdout and "deploy/emoji" in listed.stdout
    assert "conflict: MeshTLS emojivoto/a-tls, emojivoto/b-tls all apply to emojivoto/emoji-0" in listed.stderr
    assert "‼ conflict: MeshTLS" in cli.run("check").stdout
    cli.run("delete", "-f", str(tied))

    # Linkerd's retries task annotates the Service: `meshdojo annotate`, with kubectl's rules, checked before it is written
    done = cli.run("annotate", "svc/web", "retry.linkerd.io/http=5xx", "retry.linkerd.io/limit=3")
    assert "service/web annotated" in done.stdout and "retried on 500-599, up to 3 times" in done.stdout
    assert "emojivoto/web.annotations#0" in cli.run("routes", "svc/web").stdout
    for args, message in ((["retry.linkerd.io/limit=lots", "--overwrite"], "metadata.annotations.retry.linkerd.io/limit: expected"),
                          (["retry.linkerd.io/limit=2"], "--overwrite is false"), (["owner=me"], "not one of Linkerd's")):
        refused = cli.run("annotate", "svc/web", *args, check=False)
        assert refused.returncode == 1 and message in refused.stderr and "Traceback" not in refused.stderr, refused.stderr
    assert cli.run("annotate", "svc/web").stdout.splitlines() == ["retry.linkerd.io/http=5xx", "retry.linkerd.io/limit=3"]

    # a second up says so clearly, and changes nothing
    again = cli.run("up", "--no-tui", "--demo", "emojivoto", check=False)
    assert again.returncode == 1 and "already running" in again.stderr and "meshdojo down" in again.stderr

    # kill: the supervisor restarts it and counts the restart
    emoji = next(w for w in st["workloads"] if w["deployment"] == "emoji")
    assert "supervisor restarts it" in cli.run("kill", "emoji").stdout
    st2 = wait_until(lambda: (s := cli.status()) and all(
        w["ready"] and w["restarts"] >= 1 and w["pids"]["app"] != emoji["pids"]["app"]
        for w in s["workloads"] if w["deployment"] == "emoji") and s, 30, "emoji to be restarted")
    assert get(gateway + "api/list")[0] == 200

    # the control plane too: restarted on its own ports, while the proxies keep serving
    old_cp = cli.status()["controlplane"]["pid"]
    cli.run("kill", "controlplane")
    assert get(gateway + "api/list")[0] == 200  # static stability while it is down
    wait_until(lambda: (c := cli.status()["controlplane"]) and c["restarts"] >= 1 and c["pid"] not in (None, old_cp)
               and c["ready"], 30, "the control plane to be restarted")
    wait_until(lambda: cli.run("check", check=False).returncode == 0, 30, "check to pass after the restart")

    # killed while the supervisor waits to restart it, the control plane is not killed "again": it says so
    cli.run("kill", "controlplane")
    wait_until(lambda: cli.status()["controlplane"]["restarting_in"] is not None, 10, "the restart wait")
    waiting = cli.run("kill", "controlplane", check=False)
    if cli.status()["controlplane"]["pid"] is None:  # (unless the restart won the race)
        assert waiting.returncode == 1 and "not running right now" in waiting.stderr and "restarts it" in waiting.stderr
    wait_until(lambda: cli.status()["controlplane"]["ready"], 30, "the control plane to be back")
    # the Service's annotations outlive the control plane's restarts (they are its registry's), then go as kubectl's KEY-
    assert cli.run("annotate", "svc/web").stdout.splitlines() == ["retry.linkerd.io/http=5xx", "retry.linkerd.io/limit=3"]
    assert "no retries, timeouts or failure accrual" in cli.run("annotate", "svc/web", "retry.linkerd.io/http-",
                                                                "retry.linkerd.io/limit-").stdout

    # a killed sidecar: its endpoint is withdrawn while it is down, and it comes back on the same ports
    voting = next(w for w in cli.status()["workloads"] if w["deployment"] == "voting")
    # asked of the API directly, not through `status` (a process each time): the sidecar is down
    # for its restart delay and start-up only, and each look must be quicker than that
    services_url = cli.status()["controlplane"]["api"] + "/v1/services"
    admin_token = (cli.home / "default" / "controlplane" / "admin-token").read_text().strip()

    def voting_endpoints() -> list[int]:
        services = json.loads(urllib.request.urlopen(urllib.request.Request(
            services_url, headers={"Authorization": "Bearer " + admin_token}), timeout=5).read())["services"]
        return [ep["port"] for s in services if s["name"] == "voting" for ep in s["endpoints"].values()]

    assert voting_endpoints() == [voting["ports"]["inbound"]]
    assert "sidecar" in cli.run("kill", "voting", "--proxy").stdout
    wait_until(lambda: voting_endpoints() == [], 10, "voting's endpoint to be withdrawn while its sidecar is down")
    back = wait_until(lambda: (w := next(x for x in cli.status()["workloads"] if x["deployment"] == "voting"))["ready"]
                      and w["pids"]["proxy"] != voting["pids"]["proxy"] and w, 30, "the sidecar to be restarted")
    assert back["ports"] == voting["ports"]  # the same ports: the app's HTTP_PROXY still points at it
    wait_until(lambda: voting_endpoints() == [voting["ports"]["inbound"]], 10, "voting's endpoint to return")

    # the ingress gateway comes back on the same port, so the printed URL keeps working
    cli.run("kill", "emojivoto-ingress")
    wait_until(lambda: reachable(gateway + "api/list") == 200, 30, "the gateway to return")

    # scale and uninject/inject
    cli.run("scale", "web", "2")
    webs = [w for w in cli.status()["workloads"] if w["deployment"] == "web"]
    assert len(webs) == 2
    scaled = time.monotonic()
    counts = {w["name"]: inbound_requests(w) for w in webs}
    # both instances serve within 10 s: the new one is probed at once, the old one is not starved
    wait_until(lambda: all(inbound_requests(w) > counts[w["name"]] for w in webs), 10, "both web instances to serve")
    print(f"both web instances served {time.monotonic() - scaled:.1f} s after the scale")
    cli.run("uninject", "emoji")
    st3 = cli.status()
    assert [w["meshed"] for w in st3["workloads"] if w["deployment"] == "emoji"] == [False]
    assert get(gateway + "api/list")[0] == 200  # meshed web reaches the unmeshed emoji in plaintext
    cli.run("inject", "emoji")
    assert "ambiguous" not in cli.run("logs", "emoji", "--proxy").stderr

    pids = set(all_pids(st) + all_pids(st2) + all_pids(cli.status()))
    cli.run("down")
    wait_until(lambda: not any(pid_alive(p) for p in pids), 15, "every process to exit")
    assert cli.run("status", check=False).returncode == 1
    failed = cli.run("check", check=False)
    assert failed.returncode == 1 and "× sandbox 'default' is running" in failed.stdout and "meshdojo up" in failed.stdout


@pytest.mark.timeout(180)
def test_sigkill_of_the_supervisor_then_down_leaves_nothing(cli):
    cli.run("up", "--no-tui", "--demo", "emojivoto")
    st = cli.status()
    pids = all_pids(st)
    os.kill(st["supervisor"], signal.SIGKILL)
    cli.run("down")
    wait_until(lambda: not any(pid_alive(p) for p in pids), 15, "every process to exit")
    # and the sandbox can start again
    cli.run("up", "--no-tui", "--demo", "emojivoto")


@pytest.mark.timeout(120)
def test_a_sandbox_whose_owner_is_sigkilled_stops_by_itself(cli):
    """MESHDOJO_OWNER_PID (the test workers set it): a test's sandbox ends with the test run,
    even when a SIGKILL leaves its teardown unrun."""
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        cli.env["MESHDOJO_OWNER_PID"] = str(owner.pid)
        cli.run("up", "--no-tui", "--demo", "emojivoto")
        pids = all_pids(cli.status())
        assert all(pid_alive(p) for p in pids)
    finally:
        owner.kill()
        owner.wait()
    wait_until(lambda: not any(pid_alive(p) for p in pids), 30, "the sandbox to stop with its owner")
    assert "owns this sandbox" in (cli.home / "default" / "logs" / "supervisor.log").read_text()


@pytest.mark.timeout(180)
def test_two_named_sandboxes_side_by_side(cli):
    cli.run("up", "--no-tui", "--demo", "emojivoto", "--name", "a")
    cli.env["MESHDOJO_FORKSERVER"] = "off"  # b starts its sidecars by exec, as before the fork server
    cli.run("up", "--no-tui", "--demo", "emojivoto", "--name", "b")
    a, b = cli.status("a"), cli.status("b")
    assert a["controlplane"]["api"] != b["controlplane"]["api"]
    assert a["forkserver"] and b["forkserver"] is None
    for w in b["workloads"]:  # b's sidecars are the supervisor's own children
        assert int(Path(f"/proc/{w['pids']['proxy']}/stat").read_text().rsplit(") ", 1)[1].split()[1]) == b["supervisor"]
    assert get(a["gateways"][0]["url"] + "api/list")[0] == 200
    assert get(b["gateways"][0]["url"] + "api/list")[0] == 200
    cli.run("down", "--name", "a")
    assert get(b["gateways"][0]["url"] + "api/list")[0] == 200


def test_bad_input_is_a_clear_error(cli):
    result = cli.run("up", "--no-tui", "--demo", "nope", check=False)
    assert result.returncode == 1 and "unknown demo 'nope'" in result.stderr and "--demo emojivoto" in result.stderr
    result = cli.run("up", "--no-tui", "--cert-lifetime", "5s", check=False)
    assert result.returncode == 1 and "at least 60s" in result.stderr
    result = cli.run("status", "--name", "Bad_Name", check=False)
    assert result.returncode == 1 and "lowercase" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.timeout(240)
async def test_bookinfo_timeouts_reproduce_istios_delay_lesson(cli):
    """A 7 s ratings delay: reviews-v2 waits (10 s timeout), productpage gives up after 3 s + one
    retry, so the page shows 'reviews unavailable' after about 6 s; reviews-v3 (2.5 s) shows
    'ratings unavailable' instead."""
    import asyncio
    import time as clock

    from aiohttp import web

    from sandbox.cpapi import OperatorApi
    from tests.apps import serve_app

    async def slow_ratings(_request: web.Request) -> web.Response:
        await asyncio.sleep(7)
        return web.json_response({"id": 0, "ratings": {"Reviewer1": 5, "Reviewer2": 4}})

    app = web.Application()
    app.router.add_get("/ratings/{id}", slow_ratings)
    runner, slow_port = await serve_app(app)
    try:
        await asyncio.to_thread(cli.run, "up", "--no-tui", "--demo", "bookinfo")
        root = (await asyncio.to_thread(cli.status))["gateways"][0]["url"]
        page = root + "api/v1/products/0"

        # Istio's Getting Started gateway: only the paths its route names get in; the lesson below goes through it
        await asyncio.to_thread(cli.run, "apply", "-f", str(BOOKINFO_POLICIES / "bookinfo-gateway.yaml"))
        await asyncio.to_thread(wait_until, lambda: get(root)[0] == 404, 5, "the gateway's route to keep / out")
        assert "(HTTPRoute bookinfo/bookinfo) matches GET / " in get(root)[1] and get(root + "productpage")[0] == 200
        refused = await asyncio.to_thread(tapped_end, cli, "deploy/bookinfo-ingress", lambda: get(root))
        assert refused["fate"]["no_route"] == "no rule of HTTPRoute bookinfo/bookinfo attached to this gateway matches host 127.0.0.1"
        described = (await asyncio.to_thread(cli.run, "describe", "deploy/bookinfo-ingress")).stdout  # the gateway, as any workload
        assert "gateway       routes attached to its Gateways decide, the most specific host first: HTTPRoute bookinfo/bookinfo " \
               "on Gateway bookinfo/bookinfo-gateway (any host)" in described, described
        assert "404 no_route" in (await asyncio.to_thread(cli.run, "logs", "bookinfo-ingress")).stdout
        listed = (await asyncio.to_thread(cli.run, "get", "gateway")).stdout.splitlines()  # as kubectl get gateway
        assert listed[1].split() == ["bookinfo", "bookinfo-gateway", "istio", root, "True", "1", "http:80"], listed
        # a route written for the Service without its kind names a Gateway (Gateway API's default): apply and check say so
        stray = cli.home / "stray.yaml"
        stray.write_text("apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: stray, namespace: bookinfo}\n"
                         "spec:\n  parentRefs: [{name: reviews}]\n  rules: [{backendRefs: [{name: reviews-v1}, {name: reviews-v9}]}]\n")
        said = (await asyncio.to_thread(cli.run, "apply", "-f", str(stray))).stderr
        assert "Gateway bookinfo/reviews does not exist (yet)" in said and '{kind: Service, group: "", name: reviews}' in said, said
        checked = (await asyncio.to_thread(cli.run, "check", check=False)).stdout
        assert "HTTPRoute bookinfo/stray: Gateway bookinfo/reviews does not exist" in checked, checked
        assert "HTTPRoute bookinfo/stray: ResolvedRefs False (BackendNotFound): no Service reviews-v9" in checked, checked
        # ... and so does its status, as kubectl shows a route's on a cluster (kubectl's KIND/NAME and -A taken)
        (shown,) = yaml.safe_load_all((await asyncio.to_thread(cli.run, "get", "httproute/stray", "-A", "-o", "yaml")).stdout)
        (ours,) = shown["status"]["parents"]
        assert ours["controllerName"] == "meshdojo.dev/controller" and ours["parentRef"] == {"name": "reviews"}, ours
        assert [(c["type"], c["status"], c["reason"]) for c in ours["conditions"]] == [
            ("Accepted", "False", "NoMatchingParent"), ("ResolvedRefs", "False", "BackendNotFound")], ours
        stray.write_text(yaml.safe_dump(shown))  # get -o yaml, applied back (as kubectl apply, the status is ignored)
        assert (await asyncio.to_thread(cli.run, "apply", "-f", str(stray))).stdout == "httproute/stray unchanged (namespace bookinfo)\n"
        await asyncio.to_thread(cli.run, "delete", "httproute/stray", "-n", "bookinfo")

        # Istio's lesson with policies: jason is routed to reviews-v2, and ratings is 7 s slow for jason
        policies = BOOKINFO_POLICIES
        await asyncio.to_thread(cli.run, "apply", "-f", str(policies / "reviews-jason-v2.yaml"),
                                "-f", str(policies / "ratings-delay-jason.yaml"))
        await asyncio.to_thread(wait_until, lambda: '"version": "v1"' in get(page)[1], 5, "the route to reviews-v1")
        started = clock.monotonic()
        status, body = await asyncio.to_thread(get, page, {"end-user": "jason"})
        elapsed = clock.monotonic() - started
        assert status == 200 and "product reviews are currently unavailable" in body and 5.5 < elapsed < 9, (elapsed, body)
        started = clock.monotonic()
        status, body = await asyncio.to_thread(get, page)  # everyone else: v1, no ratings call, fast
        assert status == 200 and '"version": "v1"' in body and clock.monotonic() - started < 2
        await asyncio.to_thread(cli.run, "delete", "faultinjection", "ratings-delay")
        await asyncio.to_thread(cli.run, "delete", "httproute", "reviews")

        # the same with the apps' own timeouts only: a slow ratings endpoint, no policy at all. The slow
        # endpoint comes first, so ratings never has no endpoint at all (a fast 503, not a timeout); each
        # scale-down takes an instance out of discovery before it stops it
        api = OperatorApi.from_state(cli.home / "default" / "controlplane")
        api.put_endpoint("bookinfo", "ratings", "slow-ratings",
                         {"address": "127.0.0.1", "port": slow_port, "meshed": False, "labels": {"app": "ratings"}})
        for deployment, replicas in (("ratings-v1", "0"), ("reviews-v1", "0"), ("reviews-v3", "0")):
            await asyncio.to_thread(cli.run, "scale", deployment, replicas)
        started = clock.monotonic()
        status, body = await asyncio.to_thread(get, page)
        elapsed = clock.monotonic() - started
        assert status == 200 and "product reviews are currently unavailable" in body, body
        assert 5.5 < elapsed < 9, elapsed  # two 3 s attempts

        await asyncio.to_thread(cli.run, "scale", "reviews-v3", "1")
        await asyncio.to_thread(cli.run, "scale", "reviews-v2", "0")
        started = clock.monotonic()
        status, body = await asyncio.to_thread(get, page)
        elapsed = clock.monotonic() - started
        assert status == 200 and "Ratings service is currently unavailable" in body and '"version": "v3"' in body, body
        assert 2 < elapsed < 4.5, elapsed  # reviews-v3 gives up on ratings after 2.5 s
    finally:
        await runner.cleanup()


def test_stale_pid_file_is_cleaned_and_a_broken_control_plane_is_reported(cli, tmp_path):
    root = cli.home / "default"
    root.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (root / "supervisor.json").write_text(json.dumps({"pid": dead.pid, "groups": [dead.pid]}))
    # a half-deleted CA: the control plane refuses to start, and says how to fix it
    (root / "controlplane" / "ca").mkdir(parents=True)
    (root / "controlplane" / "ca" / "issuer.crt").write_text("x")
    result = cli.run("up", "--no-tui", "--demo", "emojivoto", check=False)
    assert result.returncode == 1 and "control plane did not come up" in result.stderr
    assert "remove that directory" in result.stderr and "Traceback" not in result.stderr
    assert cli.run("status", check=False).returncode == 1  # nothing left running
    supervisor_log = (root / "logs" / "supervisor.log").read_text()
    assert "sandbox failed" in supervisor_log


def test_unwritable_state_directory_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = Cli(blocker / "home").run("up", "--no-tui", "--demo", "emojivoto", check=False)
    assert result.returncode == 1 and "set MESHDOJO_HOME" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.timeout(120)
def test_foreground_up_stops_everything_on_ctrl_c(cli):
    up = subprocess.Popen([sys.executable, "-m", "sandbox.cli", "up", "--demo", "emojivoto"], env=cli.env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        wait_until(lambda: "Press Ctrl-C" in (up.stdout.readline() or ""), 60, "the sandbox to be ready")
        pids = all_pids(cli.status())
        up.send_signal(signal.SIGINT)
        out, _ = up.communicate(timeout=30)
        assert up.returncode == 0 and "no process left behind" in out
        wait_until(lambda: not any(pid_alive(p) for p in pids), 15, "every process to exit")
    finally:
        up.kill()
        up.communicate(timeout=10)


def test_a_port_already_taken_is_a_clear_error(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "sandbox.cli", "controlplane", "--state-dir", str(tmp_path / "s"),
                                 "--api-port", str(port)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "Is another process using the port?" in result.stderr
    assert "Traceback" not in result.stderr


def test_names_resolve_like_kubectl():
    from sandbox.local import SandboxError, find_deployment

    st = {"workloads": [{"namespace": "a", "deployment": "web"}, {"namespace": "b", "deployment": "web"},
                        {"namespace": "a", "deployment": "emoji"}]}
    assert find_deployment(st, "emoji", None) == ("a", "emoji")
    assert find_deployment(st, "web", "b") == ("b", "web")
    with pytest.raises(SandboxError, match="ambiguous: a/web, b/web; add -n NAMESPACE"):
        find_deployment(st, "web", None)
    with pytest.raises(SandboxError, match="no deployment 'nope'; known: emoji, web"):
        find_deployment(st, "nope", None)

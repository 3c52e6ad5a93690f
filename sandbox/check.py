"""``meshdojo check``: a doctor in Linkerd's style. Each check returns a verdict and, when it
is not a pass, a hint that says what to do; the CLI prints them and exits non-zero on failure."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import stat
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from cryptography import x509

from sandbox.cpapi import ApiError, OperatorApi
from sandbox.paths import SandboxPaths, home

OK, WARN, FAIL = "√", "‼", "×"
MIN_PYTHON = (3, 11)


@dataclass(frozen=True)
class Result:
    category: str
    verdict: str
    message: str
    hint: str = ""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def pre_checks() -> Iterator[Result]:
    cat = "meshdojo-pre"
    if sys.version_info[:2] >= MIN_PYTHON:
        yield Result(cat, OK, f"Python is {sys.version.split()[0]} (3.11 or newer)")
    else:
        yield Result(cat, FAIL, f"Python is {sys.version.split()[0]}", "meshdojo needs Python 3.11 or newer")
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
        yield Result(cat, OK, "can bind free ports on 127.0.0.1")
    except OSError as exc:
        yield Result(cat, FAIL, f"cannot bind a port on 127.0.0.1 ({exc})", "is the loopback interface up?")
    root = home()
    if root.exists():
        mode = stat.S_IMODE(root.stat().st_mode)
        if mode & 0o077:
            yield Result(cat, WARN, f"state directory {root} is readable by others ({oct(mode)})", f"chmod 700 {root}")
        else:
            yield Result(cat, OK, f"state directory {root} is private")
        if not os.access(root, os.W_OK):
            yield Result(cat, FAIL, f"state directory {root} is not writable", "set MESHDOJO_HOME to a directory you own")
    else:
        yield Result(cat, OK, f"state directory {root} will be created on first 'meshdojo up'")


def sandbox_checks(name: str) -> Iterator[Result]:
    from sandbox import local

    paths = SandboxPaths.for_name(name)
    cat = "meshdojo-controlplane"
    st = local.status(name)
    if st is None:
        yield Result(cat, FAIL, f"sandbox {name!r} is running", f"start it with 'meshdojo up --name {name}'")
        return
    yield Result(cat, OK, f"sandbox {name!r} is running (supervisor pid {st['supervisor']})")
    secret = paths.controlplane / "admin-token"
    modes = [stat.S_IMODE(p.stat().st_mode) for p in (secret, *(paths.controlplane / "ca").glob("*.key")) if p.exists()]
    if modes and all(m == 0o600 for m in modes):
        yield Result(cat, OK, "admin token and CA keys are 0600")
    else:
        yield Result(cat, FAIL, "admin token or CA keys are readable by others", f"chmod 600 {paths.controlplane}/admin-token {paths.controlplane}/ca/*")
    api = OperatorApi.from_state(paths.controlplane)
    try:
        api.call("GET", "/v1/health")
        ca_info = api.call("GET", "/v1/ca")
    except ApiError as exc:
        yield Result(cat, FAIL, f"control plane API answers ({exc})", f"see 'meshdojo logs controlplane --name {name}'")
        return
    yield Result(cat, OK, f"control plane API answers at {api.base_url}")
    anchor = x509.load_pem_x509_certificate(ca_info["trustAnchorPEM"].encode())
    yield from _validity(cat, "trust anchor", anchor.not_valid_after_utc, dt.timedelta(days=60))
    issuer_path = paths.controlplane / "ca" / "issuer.crt"
    issuer = x509.load_pem_x509_certificate(issuer_path.read_bytes())
    yield from _validity(cat, "issuer certificate", issuer.not_valid_after_utc, dt.timedelta(days=7))
    try:
        issuer.verify_directly_issued_by(anchor)
        yield Result(cat, OK, "issuer is signed by the trust anchor")
    except (ValueError, TypeError, Exception) as exc:
        yield Result(cat, FAIL, f"issuer is not signed by the trust anchor ({exc})", "meshdojo down, then meshdojo up --new-ca (or your own CA: --identity-*-file)")
        return

    cat = "meshdojo-data-plane"
    proxies = [w for w in st["workloads"] if w["meshed"]]
    not_ready = [w["name"] for w in st["workloads"] if not w["ready"]]
    if not_ready:
        yield Result(cat, FAIL, f"workloads not ready: {', '.join(not_ready)}", "see 'meshdojo status' and 'meshdojo logs <name> --proxy'")
    else:
        yield Result(cat, OK, f"all {len(st['workloads'])} workload instances are ready")
    for w in proxies:
        yield _proxy_certificate(cat, w, issuer)
    for key, want in sorted(st.get("deployments", {}).items()):
        if not want.get("inject"):
            deployment = key.split("/", 1)[1]
            yield Result(cat, WARN, f"deployment {key} is not meshed: no sidecar, so its traffic is plaintext and unmeasured",
                         f"meshdojo inject {deployment} --name {name}")

    yield from sync_checks(api, st, name)
    yield from policy_checks(api, name)

    cat = "meshdojo-clock"
    skew = abs((_now() - dt.datetime.fromtimestamp(os.stat(paths.status).st_mtime, dt.UTC)).total_seconds())
    if skew < 30:
        yield Result(cat, OK, "the sandbox's status is fresh and clocks agree (all processes share this host's clock)")
    else:
        yield Result(cat, WARN, f"the sandbox's status is {skew:.0f}s old", "is the supervisor stuck? see 'meshdojo logs' and 'meshdojo status'")


def sync_checks(api: OperatorApi, st: dict, name: str) -> Iterator[Result]:
    """Every sidecar that answers holds the control plane's latest policies and endpoints
    (``meshdojo proxy-status``); one that does not answer is reported by the other checks."""
    from sandbox import proxystatus
    from sandbox.observe import sidecar_config

    cat = "meshdojo-data-plane"
    try:
        found = [r for r in proxystatus.gather(api, st, lambda w: sidecar_config(api, w)) if r["policies"] != proxystatus.UNREACHABLE]
    except ApiError as exc:
        yield Result(cat, FAIL, f"the control plane's policy version can be read ({exc})", f"meshdojo logs controlplane --name {name}")
        return
    behind = [r for r in found if r["policies"] != proxystatus.SYNCED or r["endpoints"] != proxystatus.SYNCED]
    for r in behind:
        what = [f"policies v{r['policyVersion']} of v{r['controlPlaneVersion']}"] if r["policies"] != proxystatus.SYNCED else []
        what += [f"endpoints of {s['service']}" for s in r["stale"]]
        yield Result(cat, WARN, f"{r['namespace']}/{r['name']}: its sidecar is behind the control plane ({'; '.join(what)})",
                     f"meshdojo proxy-status --name {name}; meshdojo logs {r['name']} --proxy (a lost watch reconnects by itself)")
    if found and not behind:
        yield Result(cat, OK, f"all {len(found)} sidecars hold the control plane's latest policies (v{found[0]['controlPlaneVersion']}) "
                              "and endpoints")


def policy_checks(api: OperatorApi, name: str) -> Iterator[Result]:
    """Policies that tie, and Services' Linkerd annotations that cannot be used (on a cluster,
    ``kubectl annotate`` takes any value)."""
    cat = "meshdojo-policy"
    try:
        found = api.call("GET", "/v1/policies?kind=-")
    except ApiError as exc:
        yield Result(cat, FAIL, f"policies can be read ({exc})", f"meshdojo logs controlplane --name {name}")
        return
    for conflict in found["conflicts"]:
        yield Result(cat, WARN, f"conflict: {conflict['message']}", f"meshdojo get {conflict['kind'].lower()} --name {name}")
    if not found["conflicts"]:
        yield Result(cat, OK, "no two policies of one kind tie at any workload")
    for problem in found.get("tokenProblems", []):
        yield Result(cat, WARN, problem, f"meshdojo get requestauthentications --name {name}")
    for problem in found.get("providerProblems", []):
        yield Result(cat, WARN, problem, f"meshdojo get extensionproviders --name {name}")
    for problem in found.get("gatewayProblems", []):
        yield Result(cat, WARN, problem, f"meshdojo get gateway --name {name}")
    for problem in found.get("serverProblems", []):  # Linkerd's Server and ServerAuthorization
        yield Result(cat, WARN, problem, f"meshdojo get server -A --name {name}; meshdojo describe deploy/NAME shows a pod's labels")
    for problem in found.get("routeProblems", []):  # what the route's status.parents says
        yield Result(cat, WARN, problem["message"], f"meshdojo get {problem.get('kind', 'httproute')}/{problem['name']} "
                                                    f"-n {problem['namespace']} -o yaml --name {name}")
    for item in found.get("ignored", []):  # on a cluster: taken by the API server, refused by the validator
        yield Result(cat, WARN, f"ignored until fixed: {item['message']}",
                     f"kubectl edit {item['kind'].lower()}/{item['name']} -n {item['namespace']} (meshdojo explain "
                     f"{item['kind'].lower()} describes each field)")
    for item in found.get("elsewhere", []):  # on a cluster that runs another implementation (Istio) too
        yield Result(cat, OK, f"Gateway {item['namespace']}/{item['name']}: its class {item['class']} belongs to {item['controller']} "
                              f"(GatewayClass {item['class']}), so meshdojo leaves it and its routes to that controller",
                     f"kubectl edit gateway/{item['name']} -n {item['namespace']} (gatewayClassName: meshdojo, for meshdojo's "
                     "gateways to serve it)")
    for problem in found.get("annotationProblems", []):
        yield Result(cat, WARN, problem, f"meshdojo annotate svc/NAME -n NAMESPACE KEY=VALUE --overwrite --name {name}  (or KEY- to remove it)")


def _validity(cat: str, what: str, not_after: dt.datetime, warn_within: dt.timedelta) -> Iterator[Result]:
    left = not_after - _now()
    if left <= dt.timedelta(0):
        yield Result(cat, FAIL, f"{what} expired on {not_after:%Y-%m-%d}", "meshdojo down, then meshdojo up --new-ca (or your own CA: --identity-*-file)")
    elif left < warn_within:
        yield Result(cat, WARN, f"{what} expires in {left.days} days ({not_after:%Y-%m-%d})", "rotate the CA soon")
    else:
        yield Result(cat, OK, f"{what} is valid for {left.days} more days")


def _proxy_certificate(cat: str, w: dict, issuer: x509.Certificate) -> Result:
    try:
        config = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{w['ports']['admin']}/config", timeout=3).read())
        ready = urllib.request.urlopen(f"http://127.0.0.1:{w['ports']['admin']}/ready", timeout=3).status == 200
    except OSError as exc:
        return Result(cat, FAIL, f"{w['name']}: proxy admin not reachable ({exc})", f"meshdojo logs {w['name']} --proxy")
    cert = config.get("certificate")
    if not ready or not cert:
        return Result(cat, FAIL, f"{w['name']}: proxy not ready", f"meshdojo logs {w['name']} --proxy")
    leaf = x509.load_pem_x509_certificate(cert["chainPEM"].encode())
    try:
        leaf.verify_directly_issued_by(issuer)
    except Exception:
        return Result(cat, FAIL, f"{w['name']}: certificate is not from this sandbox's CA", f"restart it: meshdojo kill {w['name']} --proxy")
    if leaf.not_valid_after_utc <= _now():
        return Result(cat, FAIL, f"{w['name']}: certificate expired", f"restart it: meshdojo kill {w['name']} --proxy")
    return Result(cat, OK, f"{w['name']}: proxy ready with a valid certificate from this CA ({config['identity']})")


def results(name: str, pre_only: bool, backend: str | None = None) -> list[Result]:
    """``backend`` kind or minikube adds what making that cluster needs (sandbox.kube.preflight)."""
    found = list(pre_checks())
    if backend in ("kind", "minikube"):
        from sandbox.kube.preflight import checks

        found += list(checks(backend, name))
    if not pre_only:
        from sandbox.backends import backend_for

        backend = backend_for(name)
        if backend.kind == "local":
            found += list(sandbox_checks(name))
        else:
            from sandbox.kube.doctor import checks as cluster_checks

            found += list(cluster_checks(backend))
    return found


def to_json(found: list[Result]) -> dict:
    verdicts = {OK: "ok", WARN: "warning", FAIL: "failed"}
    return {"ok": not any(r.verdict == FAIL for r in found),
            "checks": [{"category": r.category, "verdict": verdicts[r.verdict], "message": r.message, "hint": r.hint} for r in found]}


def run(name: str, pre_only: bool, emit: Callable[[str], None] = print, backend: str | None = None) -> bool:
    found = results(name, pre_only, backend)
    category = None
    for r in found:
        if r.category != category:
            category = r.category
            emit(f"\n{category}\n{'-' * len(category)}")
        emit(f"{r.verdict} {r.message}")
        if r.hint:
            emit(f"    see: {r.hint}")
    failed = any(r.verdict == FAIL for r in found)
    emit(f"\nStatus check results are {FAIL if failed else OK}")
    return not failed

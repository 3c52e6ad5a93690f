"""``load``: a fortio/hey-like load generator, through a workload's sidecar or a gateway."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sandbox.backends import backend_for
from sandbox.cli.common import add_name, fail
from sandbox.cli.jwt import claim


def _load(args: argparse.Namespace) -> int:
    from controlplane import loadgen
    from controlplane.durations import InvalidDuration, parse_duration
    from controlplane.routeschema import METHODS
    from sandbox import local, resources
    from sandbox.cpapi import ApiError

    if args.connections < 1 or args.connections > 256:
        return fail("-c: from 1 to 256 connections")
    try:
        duration = parse_duration(args.duration) if args.duration else None
    except InvalidDuration as exc:
        return fail(f"-d: {exc}")
    requests = args.requests if args.requests is not None else (None if duration else 100)
    if args.method not in METHODS:
        return fail(f"-X {args.method}: expected one of {', '.join(METHODS)}, e.g. -X POST")
    path = args.path if args.path.startswith("/") else "/" + args.path
    try:
        headers = {k.strip(): v.strip() for k, v in (h.split(":", 1) for h in args.header or [])}
    except ValueError:
        return fail("-H: expected NAME:VALUE, e.g. -H 'end-user: jason'")
    if (args.https is None) != (args.cacert is None):
        return fail("--https and --cacert go together: the gateway's host name, and the CA that signed its certificate "
                    "(e.g. --https bookinfo.example.com --cacert example.com.crt)")
    https = None
    if args.https is not None:
        if args.source is not None:
            return fail("--https: to a gateway's HTTPS listener from outside the mesh; leave out --from")
        try:
            https = {"serverName": args.https, "caPEM": args.cacert.read_text()}
        except (OSError, UnicodeDecodeError) as exc:
            return fail(f"--cacert {args.cacert}: cannot read it ({exc}); give the CA certificate (PEM), e.g. example.com.crt")
        if "BEGIN CERTIFICATE" not in https["caPEM"]:
            return fail(f"--cacert {args.cacert}: no PEM certificate in it; give the CA that signed the gateway's certificate")
        problem = client_certificate(https, args.cert, args.key)
        if problem is not None:
            return fail(problem)
    elif args.cert is not None or args.key is not None:
        return fail("--cert and --key are a client certificate for a gateway's mutual TLS listener: use them with --https and --cacert")
    if args.jwt_claims and not args.jwt:
        return fail("--jwt-claim: give the token's user with --jwt too, e.g. --jwt alice --jwt-claim groups=group1")
    if args.jwt and any(k.lower() == "authorization" for k in headers):
        return fail("--jwt sends an Authorization header itself: leave out -H 'Authorization: ...'")
    try:
        if args.jwt:  # a token from the sandbox's own issuer, as `meshdojo jwt SUBJECT` prints it
            token = resources.api_for(args.name).call("POST", "/v1/jwt", {"subject": args.jwt, "claims": dict(args.jwt_claims or [])})
            headers["Authorization"] = f"Bearer {token['token']}"
        if backend_for(args.name).kind != "local":
            numbers, target = in_cluster(args.name, args.target, path, args.source, args.namespace,
                                         {"connections": args.connections, "requests": requests, "duration": args.duration,
                                          "qps": args.qps, "headers": headers, "method": args.method, **({"https": https} if https else {})})
        else:
            target = load_target(args.name, args.target, path, args.source, args.namespace, https)
            numbers = loadgen.summary(asyncio.run(loadgen.run(target, args.connections, requests, duration, args.qps, headers,
                                                              method=args.method)))
    except (ApiError, resources.ResourceError, local.SandboxError, ValueError) as exc:
        return fail(str(exc))
    print(json.dumps(numbers, indent=2) if args.output == "json" else loadgen.render(numbers, target, args.method))
    return 0


def client_certificate(https: dict[str, str], cert: Path | None, key: Path | None) -> str | None:
    """Adds ``--cert``/``--key`` (curl's and fortio's) to ``https``, checked to belong together;
    or what is wrong with them."""
    from controlplane.tlssecrets import SecretError, tls_secret

    if cert is None and key is None:
        return None
    if cert is None or key is None:
        return "--cert and --key go together: the client certificate and its key (e.g. --cert client.example.com.crt --key client.example.com.key)"
    try:
        https["certPEM"], https["keyPEM"] = cert.read_text(), key.read_text()
        tls_secret("-", "client", https["certPEM"], https["keyPEM"], "load --https", names=(f"--cert {cert}", f"--key {key}"))
    except (OSError, UnicodeDecodeError) as exc:
        return f"--cert/--key: cannot read them ({exc}); give the PEM files openssl wrote"
    except SecretError as exc:
        return str(exc)
    return None


def _target(target: str, source: str | None) -> tuple[bool, str]:
    """(is it a URL outside the mesh, the service's name): ``svc/NAME``, or a URL with ``--from``."""
    outside = target.lower().startswith("http://")  # a host outside the mesh: egress, through --from's sidecar
    kind, _, service = target.partition("/")
    if not outside and (kind not in ("svc", "service") or not service):
        raise ValueError(f"{target!r}: expected svc/NAME (e.g. 'meshdojo load svc/emoji --from deploy/web') or a URL "
                         f"outside the mesh (e.g. 'meshdojo load http://127.0.0.1:9000/ --from deploy/web')")
    if outside and source is None:
        raise ValueError(f"{target}: a host outside the mesh is called from a workload: add --from deploy/NAME (e.g. --from deploy/web)")
    return outside, service


def _running(name: str) -> dict[str, Any]:
    from sandbox import local

    st = backend_for(name).status()
    if st is None:
        raise local.SandboxError(f"sandbox {name!r} is not running; start it with 'meshdojo up --name {name}'")
    return st


def _sender(st: dict[str, Any], source: str, usable: Callable[[dict[str, Any]], bool], missing: str) -> dict[str, Any]:
    """The instance of ``--from deploy/NAME`` that sends: meshed, and ``usable`` (``missing``
    says what is not there when none is)."""
    from sandbox import local

    src_kind, _, deployment = source.partition("/")
    if src_kind not in ("deploy", "deployment") or not deployment:
        raise ValueError(f"--from {source!r}: expected deploy/NAME")
    src_ns, src = local.find_deployment(st, deployment, None)
    found = next((w for w in st["workloads"] if w["deployment"] == src and w["namespace"] == src_ns and w["meshed"] and usable(w)), None)
    if found is None:
        raise ValueError(f"deploy/{src} has no {missing} (is it meshed? 'meshdojo inject {src}')")
    return found


def in_cluster(name: str, target: str, path: str, source: str | None, namespace: str | None, how: dict[str, Any]):
    """On a cluster the generator runs in the control plane's pod (``POST /v1/load``), sending to
    the demo's gateway pod: the learner's machine reaches no pod. (summary, target) as run."""
    from controlplane.loadgen import Target
    from controlplane.loadspec import MAX_SECONDS
    from sandbox import resources
    from sandbox.kube.gateways import DEMO_GATEWAYS, name_of

    _outside, service = _target(target, source)
    if source is not None:  # a workload's identity: its own sidecar sends, inside its pod (asked by the control plane)
        return _from_pod(name, target, service, path, source, namespace, how)
    demo = next((d for d, (ns, svc, _port, _title) in DEMO_GATEWAYS.items() if svc == service
                 and namespace in (None, ns)), None)
    if demo is None:
        raise ValueError(f"svc/{service} is not behind a demo's gateway; on a cluster meshdojo load sends through one "
                         f"({', '.join('svc/' + v[1] for v in DEMO_GATEWAYS.values())})")
    gateway_ns = DEMO_GATEWAYS[demo][0]
    answer = resources.api_for(name).call("POST", "/v1/load", {"namespace": gateway_ns, "service": name_of(demo), "path": path, **how},
                                          timeout=MAX_SECONDS + 30)
    return answer["summary"], Target(answer["url"], None, answer["via"])


def _from_pod(name: str, target: str, service: str, path: str, source: str, namespace: str | None, how: dict[str, Any]):
    """``--from deploy/X`` on a cluster: one of X's ready, meshed pods sends through its own sidecar."""
    from controlplane.loadgen import Target
    from controlplane.loadspec import MAX_SECONDS
    from sandbox import resources

    pod = _sender(_running(name), source, lambda w: w["ready"], "ready pod with a sidecar to send from")
    url = _url(name, target, service, path, namespace)
    answer = resources.api_for(name).call("POST", "/v1/load", {"from": {"namespace": pod["namespace"], "pod": pod["name"]}, "url": url,
                                                               **how}, timeout=MAX_SECONDS + 30)
    return answer["summary"], Target(answer["url"], None, answer["via"])


def _url(name: str, target: str, service: str, path: str, namespace: str | None) -> str:
    """What the app would ask its sidecar for: a URL outside the mesh as given, or the service's."""
    from sandbox import resources

    if target.lower().startswith("http://"):
        in_url = "/" in target[len("http://"):]
        if in_url and path != "/":
            raise ValueError(f"{target}: give the path in the URL or after it, not both")
        return target if in_url else target + path
    ns = resources.service_namespace(name, service, namespace)
    port = next((s["ports"][0] for s in resources.api_for(name).call("GET", "/v1/services")["services"]
                 if s["name"] == service and s["namespace"] == ns and s["ports"]), 80)
    return f"http://{service}.{ns}:{port}{path}"


def load_target(name: str, target: str, path: str, source: str | None, namespace: str | None,
                https: dict[str, str] | None = None):
    """Where the requests go and how: ``svc/NAME`` through ``--from deploy/X``'s sidecar, or a
    demo's ingress gateway when ``--from`` is left out and the service is behind one (with
    ``https``, its TLS port: the server name sent and the CA trusted)."""
    from controlplane.loadgen import Target
    from sandbox import resources

    outside, service = _target(target, source)
    st = _running(name)
    if not outside:  # an unknown or ambiguous service is named before anything is sent
        resources.service_namespace(name, service, namespace)
    if source is None:
        gateway = next((g for g in st.get("gateways", []) if g["service"] == service and g.get("url")), None)
        if gateway is None:
            raise ValueError(f"svc/{service} is not behind a gateway: send the load from a workload, e.g. --from deploy/web")
        if https is not None:
            if not gateway.get("https"):
                raise ValueError(f"the {gateway['demo']} ingress gateway has no TLS port yet (meshdojo status shows it once it runs)")
            return Target(gateway["https"].rstrip("/") + path, None, f"the {gateway['demo']} ingress gateway over TLS as "
                          f"{https['serverName']}" + (" with a client certificate" if "certPEM" in https else ""),
                          https["serverName"], https["caPEM"], (https["certPEM"], https["keyPEM"]) if "certPEM" in https else None)
        return Target(gateway["url"].rstrip("/") + path, None, f"the {gateway['demo']} ingress gateway")
    instance = _sender(st, source, lambda w: bool(w["ports"].get("outbound")), "running sidecar to send through")
    via = f"http://127.0.0.1:{instance['ports']['outbound']}"
    url = _url(name, target, service, path, namespace)
    if outside:
        return Target(url, via, f"{instance['name']}'s sidecar, out of the mesh")
    return Target(url, via, f"{instance['name']}'s sidecar (identity {instance['identity']})")


def register(sub) -> None:
    load = sub.add_parser("load", help="send load to a service, like fortio or hey: latency histogram and codes (e.g. "
                                       "'meshdojo load svc/emoji /api/list --from deploy/web -c 3 -n 30')")
    load.add_argument("target", help="svc/NAME, or a URL outside the mesh (http://HOST[:PORT]/PATH, with --from)")
    load.add_argument("path", nargs="?", default="/", help="the path to request (default /)")
    load.add_argument("--from", dest="source", metavar="deploy/NAME",
                      help="send through this workload's sidecar, with its identity (default: the demo's gateway)")
    load.add_argument("-c", dest="connections", type=int, default=4, help="connections sending at once (default 4)")
    load.add_argument("-n", dest="requests", type=int, help="requests in all (default 100, unless -d)")
    load.add_argument("-d", dest="duration", metavar="DURATION", help="send for this long instead, e.g. 10s")
    load.add_argument("--qps", type=float, default=0.0, help="requests per second in all (default 0: as fast as answered)")
    load.add_argument("-H", "--header", action="append", metavar="NAME:VALUE", help="a header to send (repeatable)")
    load.add_argument("-X", "--method", default="GET", type=str.upper, metavar="METHOD",
                      help="each request's method, without a body (curl's -X, hey's -m; default GET), e.g. -X POST")
    load.add_argument("--jwt", metavar="SUBJECT", help="send a token for this user from the sandbox's issuer "
                                                       "(as -H \"Authorization: Bearer $(meshdojo jwt SUBJECT)\")")
    load.add_argument("--jwt-claim", dest="jwt_claims", action="append", type=claim, metavar="KEY=VALUE",
                      help="a claim of that token (repeatable), e.g. groups=group1,group2")
    load.add_argument("--https", metavar="HOST", help="through the gateway's TLS port (its Gateways' HTTPS listeners), "
                                                      "as HOST (SNI and Host), as curl --resolve HOST:PORT:127.0.0.1 does")
    load.add_argument("--cacert", type=Path, metavar="FILE", help="with --https: the CA that signed the gateway's certificate (PEM)")
    load.add_argument("--cert", type=Path, metavar="FILE", help="with --https: a client certificate (PEM), for a listener whose "
                                                                "tls-terminate-mode is MUTUAL (curl's --cert)")
    load.add_argument("--key", type=Path, metavar="FILE", help="with --cert: its private key (PEM, unencrypted)")
    load.add_argument("-o", "--output", choices=["text", "json"], default="text")
    load.add_argument("--namespace", dest="namespace", help="the service's namespace (needed only when ambiguous)")
    load.set_defaults(handler=_load)
    add_name(load)
    # (-n is the request count here, as in hey; the namespace is --namespace)

"""``stat``, ``routes``, ``edges``, ``authz``, ``identity``, ``describe``, ``proxy-status``, ``tap``, ``top``, ``wire`` and ``attack``: seeing the mesh."""

from __future__ import annotations

import argparse
import json
import sys

from sandbox.cli.common import add_name, add_namespace, fail, print_table


def _wire(args: argparse.Namespace) -> int:
    from sandbox import local, netcli, resources
    from sandbox.cpapi import ApiError

    try:
        seen = netcli.wire(args.name, args.source, args.target, args.namespace, args.timeout)
    except (ApiError, resources.ResourceError, local.SandboxError, ValueError) as exc:
        return fail(str(exc))
    if args.output == "json":
        print(json.dumps(seen, indent=2))
    else:
        print("\n".join(netcli.render_wire(seen)))
    return 0 if seen["connections"] else 1


def _observe(args: argparse.Namespace) -> int:
    from sandbox import observe, resources
    from sandbox.cpapi import ApiError

    try:
        if args.command == "stat":
            rows = observe.stat(args.name, args.target, args.namespace, args.window)
            table = observe.stat_table(rows, args.output == "wide")
        elif args.command == "routes":
            rows = observe.routes(args.name, args.target, args.namespace, args.source, args.window)
            table = observe.routes_table(rows, args.output == "wide")
        elif args.command == "authz":
            data = observe.authz(args.name, args.target, args.namespace, args.window)
            if args.output == "json":
                print(json.dumps(data, indent=2))
                return 0
            print(f"deploy/{data['deployment']} in {data['namespace']}: {data['inbound_rps']:.2f} requests/s inbound over the last "
                  f"{args.window}")
            if not data["rows"] and data.get("listed", True):
                print("No AuthorizationPolicy applies, and no decision was counted: every caller is let in "
                      "(meshdojo explain authz, then lessons/07-authorization.md)")
                return 0
            if not data["rows"]:  # an ingress gateway: not a Service's endpoint, so its policies are not listed in advance
                print(f"No decision counted yet. The policies that select deploy/{data['deployment']} by label show here once "
                      f"they decide a request; 'meshdojo describe deploy/{data['deployment']}' lists the ones in force.")
                return 0
            print_table(observe.authz_table(data))
            return 0
        elif args.command == "edges":
            rows = observe.edges(args.name, args.namespace, args.window)
            table = observe.edges_table(rows, args.output == "wide")
        else:
            data = observe.identities(args.name)
            if args.output == "json":
                print(json.dumps(data, indent=2))
                return 0
            print(f"trust anchor: {data['trust_anchor']['subject']}, valid until {data['trust_anchor']['notAfter']}")
            print(f"issuer:       {data['issuer']['subject']}, valid until {data['issuer']['notAfter']}")
            table = [("WORKLOAD", "IDENTITY", "SERIAL", "NOT_AFTER", "ROTATES_IN", "ROTATIONS", "MODE")]
            for w in data["workloads"]:
                table.append((w["workload"], w["identity"], (w.get("serial") or "-")[:12], (w.get("not_after") or "-")[:19],
                              observe.human_duration(w["rotation_in_seconds"]) if w.get("rotation_in_seconds") is not None else "-",
                              str(w.get("rotations", "-")), _mode(w)))
            print_table(table)
            return 0
    except ApiError as exc:
        hint = " (see 'meshdojo status' for what runs)" if exc.status == 404 else ""
        return fail(f"{exc.body.get('error') or exc}{hint}")
    except (resources.ResourceError, ValueError) as exc:
        return fail(str(exc))
    if args.output == "json":
        print(json.dumps(rows, indent=2))
    elif len(table) == 1:
        print("No traffic yet in this window (try a longer --window, or wait for the load generators).")
    else:
        print_table(table)
    return 0


def _attack(args: argparse.Namespace) -> int:
    from controlplane.intruder import outcome_json
    from sandbox import attack, resources
    from sandbox.cpapi import ApiError

    kind, _, service = args.target.partition("/")
    if kind not in ("svc", "service") or not service:
        return fail(f"{args.target!r}: expected svc/NAME, e.g. 'meshdojo attack svc/web'")
    try:
        results = attack.attack_service(args.name, service, args.namespace)
    except (resources.ResourceError, ApiError, ValueError, OSError) as exc:
        return fail(str(exc))
    breached = any(o.verdict == "let through" for hit in results for o in hit.outcomes)
    if args.output == "json":
        print(json.dumps([{"endpoint": hit.endpoint, "address": hit.address, "port": hit.port, "meshed": hit.meshed,
                           "attempts": [outcome_json(o) for o in hit.outcomes]} for hit in results], indent=2))
        return 1 if breached else 0
    for hit in results:
        where = "its sidecar's inbound port" if hit.meshed else "the app itself (no sidecar)"
        print(f"intruder -> {service} endpoint {hit.endpoint} at {hit.address}:{hit.port} ({where})")
        for outcome in hit.outcomes:
            mark = {"refused": "√", "denied": "√", "let through": "‼", "no tls": "·"}[outcome.verdict]
            label = "plaintext, no certificate" if outcome.attempt == "plaintext" else "TLS with a foreign CA's certificate"
            print(f"  {mark} {label}: {outcome.verdict.upper()} — {outcome.detail}")
            print(f"      {outcome.lesson}")
    if breached:
        print(f"\nthe intruder got through (exit status 1): make {service} meshed and STRICT "
              f"('meshdojo inject', or apply a MeshTLS with mode STRICT)", file=sys.stderr)
    return 1 if breached else 0


def _describe(args: argparse.Namespace) -> int:
    from sandbox import describe, local
    from sandbox.backends import backend_for
    from sandbox.resources import ResourceError

    try:
        st = backend_for(args.name).status()
        if st is None:
            return fail(f"sandbox {args.name!r} is not running: start it with 'meshdojo up'")
        found = describe.gather(args.name, describe.instances(st, args.target, args.namespace))
    except (local.SandboxError, ValueError, ResourceError) as exc:
        return fail(str(exc))
    if args.output == "json":
        print(json.dumps(found, indent=2))
    else:
        print("\n\n".join("\n".join(describe.lines(entry)) for entry in found))
    return 0


def _proxy_metrics(args: argparse.Namespace) -> int:
    """Each instance's sidecar metrics page, as ``linkerd diagnostics proxy-metrics`` prints it."""
    from sandbox import describe, local
    from sandbox.backends import backend_for
    from sandbox.cpapi import ApiError
    from sandbox.observe import sidecar_metrics
    from sandbox.resources import ResourceError, api_for

    try:
        st = backend_for(args.name).status()
        if st is None:
            return fail(f"sandbox {args.name!r} is not running: start it with 'meshdojo up'")
        rows = describe.instances(st, args.target, args.namespace)
        unmeshed = [w["name"] for w in rows if not w["meshed"]]
        if unmeshed:
            return fail(f"{', '.join(unmeshed)} has no sidecar, so no proxy metrics: 'meshdojo inject {rows[0]['deployment']}' "
                        "gives it one")
        api = api_for(args.name)
        for i, w in enumerate(rows, 1):
            print(f"#\n# POD {w['name']} ({i} of {len(rows)})\n#")
            print(sidecar_metrics(api, w), end="")
    except (local.SandboxError, ValueError, ResourceError, ApiError, OSError) as exc:
        return fail(str(exc))
    return 0


def _endpoints(args: argparse.Namespace) -> int:
    """A service's endpoints as discovery hands them to the sidecars, as ``linkerd diagnostics endpoints``."""
    from sandbox import diagnostics
    from sandbox.cpapi import ApiError
    from sandbox.resources import ResourceError, api_for, service_namespace

    try:
        namespace, service = diagnostics.service_named(args.target, args.namespace)
        namespace = namespace or service_namespace(args.name, service, None)
        table = diagnostics.rows(api_for(args.name).call("GET", "/v1/services")["services"], namespace, service)
    except (ValueError, ResourceError, ApiError) as exc:
        return fail(str(exc))
    if args.output == "json":
        print(json.dumps([dict(zip((h.lower() for h in table[0]), row, strict=True)) for row in table[1:]], indent=2))
    elif len(table) == 1:
        print("No endpoints found.")
    else:
        print_table(table)
    return 0


def _proxy_status(args: argparse.Namespace) -> int:
    from sandbox import local, proxystatus
    from sandbox.backends import backend_for
    from sandbox.cpapi import ApiError
    from sandbox.observe import sidecar_config
    from sandbox.resources import ResourceError, api_for

    try:
        st = backend_for(args.name).status()
        if st is None:
            return fail(f"sandbox {args.name!r} is not running: start it with 'meshdojo up'")
        api = api_for(args.name)
        found = proxystatus.gather(api, st, lambda w: sidecar_config(api, w), args.namespace)
    except (local.SandboxError, ApiError, ResourceError, ValueError) as exc:
        return fail(str(exc))
    if args.output == "json":
        print(json.dumps(found, indent=2))
        return 0
    if not found:
        print("no sidecars here" + (f" in namespace {args.namespace}" if args.namespace else ""))
        return 0
    print(f"control plane: policy snapshot v{found[0]['controlPlaneVersion']}\n")
    print_table(proxystatus.table(found))
    behind = [r for r in found if r["policies"] != proxystatus.SYNCED or r["endpoints"] != proxystatus.SYNCED]
    if behind:
        print(f"\n{len(behind)} of {len(found)} sidecars are not in step with the control plane: "
              f"'meshdojo logs NAME --proxy' says why (a lost watch reconnects by itself within seconds)", file=sys.stderr)
    return 0


def _tap(args: argparse.Namespace) -> int:
    from sandbox import local, tapcli

    try:
        tapcli.run(args.name, args.target, args.namespace, args.to, args.path, args.method, args.output == "json",
                   emit=lambda line: print(line, flush=True), note=lambda line: print(line, file=sys.stderr, flush=True))
    except BrokenPipeError:
        raise  # our reader left (`| head`): main() ends quietly
    except (local.SandboxError, ValueError, OSError) as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        return 0
    return 0


def _top(args: argparse.Namespace) -> int:
    from sandbox import local, top

    try:
        if args.output == "json" and args.duration is None:
            return fail("-o json needs --duration (the table is printed once, when it ends)")
        result = top.run(args.name, args.target, args.namespace, args.duration, emit=lambda text: print(text, flush=True))
    except BrokenPipeError:
        raise  # our reader left (`| head`): main() ends quietly
    except (local.SandboxError, ValueError, OSError) as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        return 0
    print(json.dumps(top.rows_json(result), indent=2) if args.output == "json" else top.render(result))
    return 0


def register(sub) -> None:
    wire = sub.add_parser("wire", help="what an eavesdropper between two workloads sees: TLS records, or readable HTTP")
    wire.add_argument("source", metavar="deploy/A", help="the client deployment")
    wire.add_argument("target", metavar="deploy/B", help="the server deployment")
    wire.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for a connection on the edge (default 10)")
    wire.add_argument("-o", "--output", choices=["text", "json"], default="text")
    wire.set_defaults(handler=_wire)
    stat = sub.add_parser("stat", help="golden metrics per deployment or service, like 'linkerd viz stat'")
    stat.add_argument("target", nargs="?", help="deploy, deploy/NAME, svc or svc/NAME (default: deploy)")
    routes = sub.add_parser("routes", help="per route of a service: EFFECTIVE (what callers saw) vs ACTUAL (every attempt)")
    routes.add_argument("target", help="svc/NAME")
    routes.add_argument("--from", dest="source", metavar="deploy/NAME", help="only this client's requests")
    edges = sub.add_parser("edges", help="who talks to whom, and whether it is mutual TLS, like 'linkerd viz edges'")
    authz = sub.add_parser("authz", help="which AuthorizationPolicy decided a deployment's inbound requests, and how often it "
                                         "allowed or denied them, like 'linkerd viz authz' (e.g. 'meshdojo authz deploy/emoji')")
    authz.add_argument("target", help="deploy/NAME")
    ident = sub.add_parser("identity", aliases=["certs"], help="every workload's SPIFFE ID and certificate, with rotation countdowns")
    for p in (stat, edges, routes, authz):
        p.add_argument("-o", "--output", choices=["table", "wide", "json"] if p is not authz else ["table", "json"], default="table")
        p.add_argument("-t", "--window", default="1m", help="time window (default 1m; 10s for 'live')")
    ident.add_argument("-o", "--output", choices=["table", "json"], default="table")
    for p in (stat, edges, routes, ident, authz):
        p.set_defaults(handler=_observe)
    describe = sub.add_parser("describe", help="one workload as its sidecar sees it: identity, mutual TLS, the policies in force "
                                               "there and at its callers, like 'istioctl x describe pod' (e.g. 'meshdojo describe deploy/web')")
    describe.add_argument("target", help="deploy/NAME (each instance) or pod/NAME (one)")
    describe.add_argument("-o", "--output", choices=["text", "json"], default="text")
    describe.set_defaults(handler=_describe)
    diagnostics = sub.add_parser("diagnostics", help="the mesh's raw state, like 'linkerd diagnostics': 'meshdojo diagnostics "
                                                     "proxy-metrics deploy/web', 'meshdojo diagnostics endpoints svc/emoji'")
    what = diagnostics.add_subparsers(dest="diagnostic", metavar="DIAGNOSTIC", required=True)
    metrics = what.add_parser("proxy-metrics", help="each instance's sidecar Prometheus page (Linkerd's metric names)")
    metrics.add_argument("target", help="deploy/NAME (each instance) or pod/NAME (one)")
    metrics.set_defaults(handler=_proxy_metrics)
    endpoints = what.add_parser("endpoints", help="a service's endpoints as discovery hands them to the sidecars, with the "
                                                  "identity each is checked against")
    endpoints.add_argument("target", help="svc/NAME, or an authority as Linkerd takes it: emoji.emojivoto.svc.cluster.local:8080")
    endpoints.add_argument("-o", "--output", choices=["table", "json"], default="table")
    endpoints.set_defaults(handler=_endpoints)
    status = sub.add_parser("proxy-status", aliases=["ps"], help="has every sidecar got the control plane's latest policies and "
                                                                  "endpoints? SYNCED or STALE, like 'istioctl proxy-status'")
    status.add_argument("-o", "--output", choices=["table", "json"], default="table")
    status.set_defaults(handler=_proxy_status)
    tap = sub.add_parser("tap", help="live requests of a deployment and each one's fate, like 'linkerd viz tap'")
    tap.add_argument("target", help="deploy/NAME")
    tap.add_argument("--to", help="only requests to this destination (e.g. deploy/emoji or svc/emoji)")
    tap.add_argument("--path", help="only paths starting with this")
    tap.add_argument("--method", help="only this method")
    tap.add_argument("-o", "--output", choices=["text", "json"], default="text")
    tap.set_defaults(handler=_tap)
    top = sub.add_parser("top", help="a live table of a deployment's traffic by source, destination, method and path")
    top.add_argument("target", help="deploy/NAME")
    top.add_argument("--duration", type=float, help="stop after this many seconds and print the table (default: run until Ctrl-C)")
    top.add_argument("-o", "--output", choices=["table", "json"], default="table")
    top.set_defaults(handler=_top)
    attack = sub.add_parser("attack", help="an intruder tries a service in plaintext and with a foreign CA: what gets through?")
    attack.add_argument("target", help="svc/NAME")
    attack.add_argument("-o", "--output", choices=["text", "json"], default="text")
    attack.set_defaults(handler=_attack)
    for p in (wire, stat, edges, routes, authz, attack, tap, top, describe, status, metrics, endpoints):
        add_namespace(p)
    for p in (wire, stat, edges, routes, authz, ident, attack, tap, top, describe, status, metrics, endpoints):
        add_name(p)


def _mode(row: dict) -> str:
    """STRICT or PERMISSIVE, and Linkerd's default inbound policy when it is not the default."""
    if not row.get("mode"):
        return row.get("error", "-")
    policy = row.get("default_inbound_policy")
    return row["mode"] if policy in (None, "all-unauthenticated") else f"{row['mode']}, default {policy}"

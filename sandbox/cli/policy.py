"""``apply``, ``get`` and ``delete``: policy resources, and a learner's own workloads (Deployment, Service ...)."""

from __future__ import annotations

import argparse
import json
import sys

from sandbox.cli.common import add_name, add_namespace, fail, print_table
from sandbox.cli.secret import SECRET_KINDS, delete_secret, get_secrets


def _apply(args: argparse.Namespace) -> int:
    from sandbox import resources
    from sandbox.cpapi import ApiError

    try:
        result = resources.apply(args.name, args.filename, args.namespace)
    except ApiError as exc:
        lines = [f"{e['source']}: document {e['index']}: {e['field']}: {e['message']}" for e in exc.body.get("errors", [])]
        return fail("\n".join([str(exc), *lines]))
    except (resources.ResourceError, ValueError) as exc:
        return fail(str(exc))
    for item in result["applied"]:
        where = "" if item["namespace"] == "-" else f" (namespace {item['namespace']})"
        print(f"{item['kind'].lower()}/{item['name']} {item['action']}{where}")
    for warning in result["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _get(args: argparse.Namespace) -> int:
    import yaml

    from sandbox import resources
    from sandbox.cpapi import ApiError

    try:
        kind, resource = resources.kind_and_name(args.kind, args.resource)
        if kind is not None and kind.lower() in SECRET_KINDS:  # TLS Secrets: names, hosts and expiry, never a key
            return get_secrets(args.name, args.namespace, args.output)
        items = resources.get(args.name, kind, resource, args.namespace)
        conflicts = resources.conflicts(args.name)
    except (resources.ResourceError, ApiError, ValueError) as exc:
        return fail(str(exc))
    for conflict in conflicts:
        print(f"warning: conflict: {conflict['message']}", file=sys.stderr)
    objects = [{**i["document"], **({"status": i["status"]} if i.get("status") else {})} for i in items]  # as kubectl shows them
    if args.output == "json":
        print(json.dumps(objects, indent=2))
    elif args.output == "yaml":
        print(yaml.safe_dump_all(objects, sort_keys=False), end="")
    elif not items:
        print(f"No {args.kind + ' ' if args.kind else ''}resources found.")
    elif all(i["document"].get("kind") == "Gateway" and i["document"].get("apiVersion", "").startswith("gateway.networking.k8s.io/")
             for i in items):  # as kubectl get gateway: address, programmed (Gateway API's: Istio's has no status)
        print_table(_gateway_rows(args.name, items))
    else:
        from sandbox.resourcetable import table

        print_table(table(items))
    return 0


def _gateway_rows(sandbox: str, gateways: list[dict]) -> list[tuple[str, ...]]:
    from sandbox import gatewaystatus, resources
    from sandbox.backends import backend_for

    routes = resources.get(sandbox, "HTTPRoute", None, None)
    return gatewaystatus.rows(gateways, routes, gatewaystatus.served(backend_for(sandbox).status()))


def _delete(args: argparse.Namespace) -> int:
    from sandbox import resources
    from sandbox.cpapi import ApiError

    try:
        if args.filename:
            lines, missing = resources.delete_files(args.name, args.filename)
            if lines:
                print("\n".join(lines))
            if missing:
                return fail("\n".join(missing) + "\n(nothing else was changed by these; 'meshdojo get' shows what is there)")
            return 0
        elif args.kind and (named := resources.kind_and_name(args.kind, args.resource))[1]:
            if named[0].lower() in SECRET_KINDS:
                return delete_secret(args.name, named[1], args.namespace)
            lines = resources.delete(args.name, *named, args.namespace)
        else:
            return fail("say what to delete: 'meshdojo delete -f FILE', 'meshdojo delete KIND NAME' or 'meshdojo delete KIND/NAME'")
    except (resources.ResourceError, ApiError, ValueError) as exc:
        return fail(str(exc))
    print("\n".join(lines))
    return 0


def _explain(args: argparse.Namespace) -> int:
    from sandbox.explain import ExplainError, explain

    try:
        print(explain(args.target, args.recursive), end="")
    except ExplainError as exc:
        return fail(str(exc))
    return 0


def register(sub) -> None:
    apply = sub.add_parser("apply", help="apply policy resources from YAML files or directories (all or nothing)")
    apply.add_argument("-f", "--filename", action="append", required=True, help="a file or directory (repeatable)")
    apply.set_defaults(handler=_apply)
    get = sub.add_parser("get", help="list policy resources, e.g. 'meshdojo get faultinjection' or 'get httproute/NAME -o yaml' "
                                     "(every kind without one)")
    get.add_argument("kind", nargs="?", help="HTTPRoute, FaultInjection, RetryBudget, CircuitBreaker, AuthorizationPolicy, MeshTLS, "
                                              "RateLimit, ServiceEntry, Sidecar or Telemetry (any case, plural or short: fault, "
                                              "route, authz, se), or secrets (TLS Secrets: hosts and expiry, never a key); "
                                              "every kind when left out")
    get.add_argument("resource", nargs="?", help="one resource's name (or write KIND/NAME, as kubectl takes it)")
    get.add_argument("-o", "--output", choices=["table", "yaml", "json"], default="table")
    get.set_defaults(handler=_get)
    delete = sub.add_parser("delete", help="delete policy resources: -f FILE, or KIND NAME (or KIND/NAME)")
    delete.add_argument("kind", nargs="?", help="the kind, as for 'get'")
    delete.add_argument("resource", nargs="?", help="the resource's name")
    delete.add_argument("-f", "--filename", action="append", help="delete what a file (or directory) describes")
    delete.set_defaults(handler=_delete)
    explain = sub.add_parser("explain", help="a policy kind's fields, as kubectl explain: 'meshdojo explain httproute.spec.rules' "
                                             "(no sandbox needed)")
    explain.add_argument("target", metavar="KIND[.FIELD...]", help="a kind (any spelling get takes), then a path of fields")
    explain.add_argument("--recursive", action="store_true", help="every field below, as a tree")
    explain.set_defaults(handler=_explain)
    for p in (apply, get, delete):
        add_namespace(p, every=p is get)
        add_name(p)

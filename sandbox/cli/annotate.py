"""``meshdojo annotate svc/NAME KEY=VALUE ... KEY-``: Linkerd's annotations on a Service, as
``kubectl annotate`` sets them (Linkerd's retries, timeouts and circuit-breaking tasks do it
that way). On a cluster the Service is patched through the API server; in the local sandbox the
control plane's registry is the Service. Either way the values are checked first, and nothing is
written when one is wrong."""

from __future__ import annotations

import argparse
import sys

from controlplane.policy import parent_kind
from sandbox.cli.common import add_name, add_namespace, fail


class ChangeError(ValueError):
    pass


def service_name(text: str) -> str:
    """``svc/reviews``, ``service/reviews`` (kubectl's spelling) or plain ``reviews``."""
    kind, slash, rest = text.partition("/")
    if slash and kind not in ("svc", "service", "services"):
        raise argparse.ArgumentTypeError(f"annotate works on Services (svc/NAME), not {kind!r}")
    return rest if slash else text


def changed(current: dict[str, str], changes: list[str], overwrite: bool) -> tuple[dict[str, str], list[str]]:
    """``current`` after ``KEY=VALUE`` and ``KEY-`` changes, with kubectl's rules (a value that
    is already there changes only with ``overwrite``), and the keys asked to go that were not there."""
    from controlplane.serviceannotations import PREFIXES

    result, absent = dict(current), []
    for change in changes:
        key, eq, value = change.partition("=")
        removing = not eq and change.endswith("-")
        key = key[:-1] if removing else key
        if not key or not (eq or removing):
            raise ChangeError(f"{change!r} is not KEY=VALUE or KEY- (e.g. retry.linkerd.io/http=5xx, or retry.linkerd.io/http-)")
        if not key.startswith(PREFIXES):
            raise ChangeError(f"{key!r} is not one of Linkerd's annotations ({', '.join(p + '...' for p in PREFIXES)}); "
                              "meshdojo reads only those on a Service (for others on a cluster: kubectl annotate)")
        if removing:
            if result.pop(key, None) is None:
                absent.append(key)
        elif key in result and result[key] != value and not overwrite:
            raise ChangeError(f"--overwrite is false but {key!r} already has a value ({result[key]}); add --overwrite to change it")
        else:
            result[key] = value
    return result, absent


def _find(services: list[dict], name: str, namespace: str | None) -> dict:
    found = [s for s in services if s["name"] == name and (namespace is None or s["namespace"] == namespace)]
    if not found:
        known = ", ".join(sorted({s["name"] for s in services})) or "none"
        raise ChangeError(f"no service {name!r}{f' in namespace {namespace}' if namespace else ''}; known: {known}")
    if len(found) > 1:
        raise ChangeError(f"{name!r} is ambiguous: {', '.join(s['namespace'] + '/' + name for s in found)}; add -n NAMESPACE")
    return found[0]


def _annotate(args: argparse.Namespace) -> int:
    from controlplane.serviceannotations import AnnotationError, read
    from sandbox import local
    from sandbox.backends import backend_for
    from sandbox.cpapi import ApiError

    try:
        backend = backend_for(args.name)
        api = backend.operator_api()
        service = _find(api.call("GET", "/v1/services")["services"], args.service, args.namespace)
        namespace, current = service["namespace"], service.get("annotations", {})
        if not args.changes:  # like `kubectl annotate --list`
            for key, value in sorted(current.items()):
                print(f"{key}={value}")
            if not current:
                print(f"service {namespace}/{args.service} has no Linkerd annotations", file=sys.stderr)
            return 0
        wanted, absent = changed(current, args.changes, args.overwrite)
        given = read(namespace, args.service, wanted)
        for key in absent:
            print(f"note: annotation {key!r} not found", file=sys.stderr)
        if wanted != current:
            backend.annotate_service(namespace, args.service, wanted, current)
            _wait_until_seen(api, namespace, args.service, wanted)
        routes = _routes_of(api, namespace, args.service) if given.shapes_routes else []
    except AnnotationError as exc:
        return fail(f"{exc}\nnothing was changed; Linkerd's reference: https://linkerd.io/2/reference/retries/ "
                    "and https://linkerd.io/2/reference/circuit-breaking/")
    except (ApiError, ChangeError, local.SandboxError, ValueError) as exc:
        return fail(str(exc))
    print(f"service/{args.service} annotated")
    if meaning := given.describe():
        print(f"every request a meshed client sends to {args.service}.{namespace}: " + "; ".join(meaning))
        if routes:
            print(f"note: HTTPRoute {', '.join(routes)} is attached to {args.service}: its rules keep their own retry and timeouts "
                  "(fields or annotations); these fill in what a rule leaves out")
        print(f"watch it: meshdojo routes svc/{args.service} -n {namespace}   (or tap a client: meshdojo tap deploy/NAME)")
    else:
        print(f"{args.service}.{namespace} has no retries, timeouts or failure accrual from annotations now")
    return 0


def _routes_of(api, namespace: str, service: str) -> list[str]:
    items = api.call("GET", f"/v1/policies?kind=HTTPRoute&namespace={namespace}")["items"]
    return [f"{namespace}/{i['document']['metadata']['name']}" for i in items
            if any(ref.get("name") == service and parent_kind(ref) == "Service" for ref in i["document"]["spec"].get("parentRefs", []))]


def _wait_until_seen(api, namespace: str, name: str, wanted: dict[str, str], timeout: float = 30.0) -> None:
    """On a cluster the control plane learns it from its watch: wait, so the next command sees it."""
    from sandbox.processes import WaitTimeout, wait_until

    def seen() -> bool:
        return any(s["namespace"] == namespace and s["name"] == name and s.get("annotations", {}) == wanted
                   for s in api.call("GET", "/v1/services")["services"])

    try:
        wait_until(seen, timeout, "the control plane to see the annotations", interval=0.1)
    except WaitTimeout:
        raise ChangeError(f"the Service was annotated, but the control plane has not seen it after {timeout:g}s: "
                          "see 'meshdojo check' and 'meshdojo logs controlplane'") from None


def register(sub) -> None:
    annotate = sub.add_parser(
        "annotate", help="set Linkerd's retry, timeout and circuit-breaking annotations on a Service, like kubectl annotate",
        description="Set Linkerd's annotations on a Service, as `kubectl annotate` does (on a cluster, it patches the "
                    "Service), e.g. `meshdojo annotate svc/emoji -n emojivoto retry.linkerd.io/http=5xx "
                    "retry.linkerd.io/limit=3`; KEY- removes one; no KEY lists them. Read: retry.linkerd.io/http, /limit, "
                    "/timeout; timeout.linkerd.io/request, /response; balancer.linkerd.io/failure-accrual=consecutive "
                    "and its -consecutive-max-failures, -min-penalty, -max-penalty, -jitter-ratio.")
    annotate.add_argument("service", type=service_name, help="the Service, e.g. svc/emoji")
    annotate.add_argument("changes", nargs="*", metavar="KEY=VALUE|KEY-", help="annotations to set, or (KEY-) to remove")
    annotate.add_argument("--overwrite", action="store_true", help="change a value that is already set (kubectl's rule)")
    annotate.set_defaults(handler=_annotate, positional_tail="changes")  # KEY=VALUE may follow -n NAMESPACE
    add_namespace(annotate)
    add_name(annotate)

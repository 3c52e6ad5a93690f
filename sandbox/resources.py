"""``meshdojo apply / get / delete / fault``: policy resources, through the operator API."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import yaml

from controlplane.foreignkinds import foreign_kind, foreign_kind_message
from controlplane.istioschema import ISTIO_GATEWAY, ISTIO_TWINS
from controlplane.kindnames import plural
from controlplane.linkerdschema import LINKERD_AUTHORIZATION_POLICY, LINKERD_HTTP_ROUTE
from controlplane.policy import KINDS, POLICY_API, canonical_kind, parent_kind
from controlplane.policyschema import internal_kind
from sandbox.cpapi import ApiError, OperatorApi

MAX_FILE_BYTES = 1024 * 1024


class ResourceError(RuntimeError):
    pass


def api_for(name: str) -> OperatorApi:
    from sandbox import local
    from sandbox.backends import backend_for

    try:
        return backend_for(name).operator_api()
    except local.SandboxError as exc:
        raise ResourceError(str(exc)) from None


def read_documents(paths: list[str]) -> list[dict[str, Any]]:
    """Every YAML document in the files (and *.yaml files of directories), with where it came from."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
        elif path.exists():
            files.append(path)
        else:
            raise ResourceError(f"{raw}: no such file or directory")
    documents = []
    for file in files:
        size = file.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ResourceError(f"{file}: {size / 1024 / 1024:.1f} MiB is more than a resource file may hold (1 MiB); "
                                "is it the right file?")
        raw = file.read_bytes()
        try:
            if b"\x00" in raw:
                raise UnicodeDecodeError("utf-8", raw, 0, 1, "NUL byte")
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ResourceError(f"{file}: not a text file (expected YAML in UTF-8; is it a binary?)") from None
        try:
            loaded = list(yaml.safe_load_all(text))
        except yaml.YAMLError as exc:
            raise ResourceError(f"{file}: not valid YAML: {exc}") from None
        documents += [{"source": str(file), "index": i, "document": d} for i, d in enumerate(loaded) if d is not None]
    if not documents:
        raise ResourceError(f"no documents in {', '.join(paths)}")
    return documents


def apply(name: str, paths: list[str], namespace: str | None) -> dict[str, Any]:
    """Policies go to the control plane; Deployments, Services, ServiceAccounts and Namespaces
    (a learner's own app) to the sandbox, which runs them. Both are checked before either is
    applied: nothing is half-applied."""
    from sandbox import applied
    from sandbox.backends import backend_for
    from sandbox.errors import SandboxError
    from sandbox.manifests import ManifestError

    documents = read_documents(paths)
    for item in documents:  # kubectl's -n: documents without a namespace take it
        doc = item["document"]
        if namespace and isinstance(doc, dict) and isinstance(doc.get("metadata"), dict) and doc.get("kind") != "Namespace":
            doc["metadata"].setdefault("namespace", namespace)
    secrets = checked_secrets([d for d in documents if is_secret(d["document"])], namespace)
    classes = checked_ingress_classes([d for d in documents if is_ingress_class(d["document"])])
    workloads = [d for d in documents if applied.is_workload(d["document"])]
    policies = [d for d in documents if not applied.is_workload(d["document"]) and not is_secret(d["document"])
                and not is_ingress_class(d["document"])]
    api = api_for(name)
    commit = None
    if workloads:
        try:
            commit = backend_for(name).apply_workloads(workloads)
        except (ManifestError, applied.AppliedError) as exc:
            raise ResourceError(f"{exc}\nnothing was applied: fix it and apply again") from None
        except SandboxError as exc:  # a cluster's refusal (its message says that nothing was applied)
            raise ResourceError(str(exc)) from None
    # the Secrets go along to be counted as there: the control plane then warns of no listener they make whole
    outcome = api.call("POST", "/v1/policies", {"documents": policies, "namespace": namespace or "default",
                                                "secrets": secrets}) if policies \
        else {"applied": [], "warnings": []}
    if secrets:  # after the policies, which the control plane may still refuse (checked already, they cannot be)
        try:
            stored = backend_for(name).apply_secrets(secrets)
        except SandboxError as exc:
            raise ResourceError(str(exc)) from None
        outcome["applied"] = [{"kind": k, "namespace": ns, "name": n, "action": action} for (k, ns, n), action in stored] \
            + outcome["applied"]
    outcome["applied"] = [{"kind": "IngressClass", "namespace": "-", "name": c, "action": SERVED_CLASS} for c in classes] \
        + outcome["applied"]
    if commit is not None:
        try:
            results = commit()  # the backend runs them (locally: the supervisor sees its file change; a cluster applies them)
        except SandboxError as exc:
            raise ResourceError(str(exc)) from None
        outcome["applied"] = [{"kind": k, "namespace": ns or "-", "name": n, "action": action} for (k, ns, n), action in results] \
            + outcome["applied"]
    return outcome


def is_secret(document: Any) -> bool:
    return isinstance(document, dict) and document.get("kind") == "Secret" and document.get("apiVersion") == "v1"


SERVED_CLASS = "served by meshdojo's gateways (nothing to store: they serve this class already)"


def is_ingress_class(document: Any) -> bool:
    return isinstance(document, dict) and document.get("kind") == "IngressClass" \
        and document.get("apiVersion") == "networking.k8s.io/v1"


def checked_ingress_classes(entries: list[dict[str, Any]]) -> list[str]:
    """The names of the IngressClasses in the files, each checked to be one meshdojo's gateways
    serve (Istio's task applies ``istio`` with Istio's controller before its Ingress). There is
    nothing to store: the gateways serve the classes istio and meshdojo whether or not one exists."""
    from controlplane.ingress import CONTROLLERS, INGRESS_CLASSES

    names = []
    for entry in entries:
        doc, where = entry["document"], f"{entry['source']}: document {entry['index']}"
        name = (doc.get("metadata") or {}).get("name")
        controller = (doc.get("spec") or {}).get("controller")
        if name not in INGRESS_CLASSES:
            raise ResourceError(f"{where}: metadata.name: {name!r}: meshdojo's gateways serve the Ingress classes "
                                f"{' and '.join(INGRESS_CLASSES)} — name the class istio, as Istio's task does\n"
                                "nothing was applied: fix it and apply again")
        if controller not in CONTROLLERS:
            raise ResourceError(f"{where}: spec.controller: {controller!r} is not meshdojo's gateways: expected "
                                f"{' or '.join(CONTROLLERS)}\nnothing was applied: fix it and apply again")
        names.append(name)
    return names


def checked_secrets(entries: list[dict[str, Any]], namespace: str | None) -> list[dict[str, Any]]:
    """The Secret documents, each checked as the gateway will load it (before anything is applied),
    with its namespace written in."""
    from controlplane.tlssecrets import SecretError, read_secret

    out = []
    for entry in entries:
        doc = entry["document"]
        try:
            secret = read_secret(doc, f"{entry['source']}: document {entry['index']}", namespace or "default")
        except SecretError as exc:
            raise ResourceError(f"{exc}\nnothing was applied: fix it and apply again") from None
        out.append({**doc, "metadata": {**doc["metadata"], "namespace": secret.namespace}})
    return out


def kind_of(kind: str) -> str:
    """Our kind that ``kind`` names; an error that helps when it names Istio's or nothing."""
    canonical = canonical_kind(kind)
    if canonical is not None:
        return canonical
    if foreign := foreign_kind(kind):
        raise ResourceError(foreign_kind_message(foreign))
    raise ResourceError(f"unknown kind {kind!r}; the kinds are {', '.join(KINDS)} (e.g. 'meshdojo get faultinjection')")


def kind_and_name(kind: str | None, resource: str | None) -> tuple[str | None, str | None]:
    """``KIND NAME`` or kubectl's ``KIND/NAME`` (``httproute/reviews``), as (kind, name)."""
    if kind is None or "/" not in kind:
        return kind, resource
    if resource is not None:
        raise ResourceError(f"{kind!r} names the resource already: write 'KIND/NAME' or 'KIND NAME', not both")
    kind, _, resource = kind.partition("/")
    if not kind or not resource:
        raise ResourceError("expected KIND/NAME, e.g. httproute/reviews")
    return kind, resource


def get(name: str, kind: str | None, resource: str | None, namespace: str | None) -> list[dict[str, Any]]:
    """Resources of ``kind`` (every kind when None; kubectl's ``vs,dr``: each kind's in turn)."""
    if kind and "," in kind:
        if resource:
            raise ResourceError(f"{kind!r} names several kinds: name one kind with a NAME, e.g. 'meshdojo get {kind.split(',')[0]} {resource}'")
        kinds = [kind_of(k) for k in kind.split(",") if k]  # every one checked before anything is asked
        return [item for k in dict.fromkeys(kinds) for item in get(name, k, None, namespace)]
    canonical = kind_of(kind) if kind else None
    if resource and canonical is None:
        raise ResourceError("say which kind: 'meshdojo get KIND NAME'")
    items = []
    for each in twins(kind, canonical):  # authorizationpolicies: ours and Istio's (security.istio.io), as a learner means
        query = "?" + "&".join(f"{k}={v}" for k, v in (("kind", each), ("namespace", namespace), ("name", resource)) if v)
        items += api_for(name).call("GET", "/v1/policies" + query)["items"]
    if resource and not items:
        raise ResourceError(f"no {canonical} named {resource!r}{f' in namespace {namespace}' if namespace else ''}")
    return items


# our kinds (and Gateway API's) -> Istio's kinds of the same name, which a bare name means too
NAMESAKES = {"Gateway": (ISTIO_GATEWAY,), **{ours: (twin,) for twin, ours in ISTIO_TWINS.items()}}


def twins(text: str | None, canonical: str | None) -> list[str | None]:
    """The kinds a kind's name means: our AuthorizationPolicy (ServiceEntry ...) by its bare names
    (``authz``, ``authorizationpolicies``) is Istio's of that name too, which has the same fields,
    and Gateway API's Gateway Istio's; with a group (``authorizationpolicies.security.istio.io``),
    the one named."""
    if text is None or "." in text or canonical not in NAMESAKES:
        return [canonical]
    return [canonical, *NAMESAKES[canonical]]


def conflicts(name: str) -> list[dict[str, Any]]:
    """Inbound policies of one kind that tie at one workload (see controlplane.selection)."""
    return api_for(name).call("GET", "/v1/policies?kind=-")["conflicts"]


def delete(name: str, kind: str, resource: str, namespace: str | None) -> list[str]:
    items = get(name, kind, resource, namespace)
    if len(items) > 1:
        found = ", ".join(f"{_kind(i['document'])} {i['document']['metadata'].get('namespace')}/{resource}" for i in items)
        raise ResourceError(f"{resource!r} is ambiguous: {found}; add -n NAMESPACE, or name the kind with its group "
                            f"(e.g. {plural(_kind(items[-1]['document']))}.{items[-1]['document']['apiVersion'].partition('/')[0]})")
    canonical, ns = _kind(items[0]["document"]), items[0]["document"]["metadata"].get("namespace", "default")
    api_for(name).call("DELETE", f"/v1/policies/{canonical}/{ns}/{resource}")
    return [f"{canonical} {ns}/{resource} deleted"]


def _kind(doc: dict[str, Any]) -> str:
    return internal_kind(str(doc.get("kind", "?")), str(doc.get("apiVersion", "")))


def delete_files(name: str, paths: list[str]) -> tuple[list[str], list[str]]:
    """Delete what the files describe: (what was deleted, what was not there or failed)."""
    from sandbox import applied
    from sandbox.backends import backend_for

    api = api_for(name)
    done, missing = [], []
    documents = read_documents(paths)
    workloads = [d["document"] for d in documents if applied.is_workload(d["document"])]
    if workloads:
        removed, absent = backend_for(name).delete_workloads(workloads)
        done += [f"{k} {ns + '/' if ns else ''}{n} deleted" for k, ns, n in removed]
        missing += [f"{k} {ns + '/' if ns else ''}{n}: not found" for k, ns, n in absent]
    for item in documents:
        doc = item["document"]
        if applied.is_workload(doc):
            continue
        if is_ingress_class(doc):  # never stored (see checked_ingress_classes)
            done.append(f"IngressClass {(doc.get('metadata') or {}).get('name')}: nothing to delete (meshdojo's gateways "
                        "serve it whether or not it exists)")
            continue
        kind, meta = internal_kind(str(doc.get("kind")), str(doc.get("apiVersion", ""))), doc.get("metadata") or {}
        ns = meta.get("namespace", "default")
        try:  # Linkerd's AuthorizationPolicy is its own kind, beside ours of the same name
            api.call("DELETE", f"/v1/policies/{kind}/{ns}/{meta.get('name')}")
            done.append(f"{kind} {ns}/{meta.get('name')} deleted")
        except ApiError as exc:
            missing.append(f"{kind} {ns}/{meta.get('name')}: {'not found' if exc.status == 404 else exc}")
    return done, missing


def service_namespace(name: str, service: str, namespace: str | None) -> str:
    services = api_for(name).call("GET", "/v1/services")["services"]
    found = sorted(s["namespace"] for s in services if s["name"] == service and (namespace is None or s["namespace"] == namespace))
    if not found:
        raise ResourceError(f"no service {service!r}{f' in namespace {namespace}' if namespace else ''}; "
                            f"known: {', '.join(sorted({s['name'] for s in services}))}")
    if len(found) > 1:
        raise ResourceError(f"service {service!r} is ambiguous: {', '.join(f'{ns}/{service}' for ns in found)}; add -n NAMESPACE")
    return found[0]


def fault_document(service: str, namespace: str, abort: int | None, percent: float, delay: str | None,
                   delay_percent: float, duration: str | None, instance: str | None = None) -> dict[str, Any]:
    """A FaultInjection on every instance of ``service``, or on one of them (a Pod target)."""
    spec: dict[str, Any] = {"targetRef": {"kind": "Pod", "name": instance} if instance else {"kind": "Service", "name": service}}
    if delay is not None:
        spec["delay"] = {"fixedDelay": delay, "percentage": {"value": delay_percent}}
    if abort is not None:
        spec["abort"] = {"httpStatus": abort, "percentage": {"value": percent}}
    if duration is not None:
        spec["duration"] = duration
    return {"apiVersion": POLICY_API, "kind": "FaultInjection",
            "metadata": {"name": f"{instance or service}-fault", "namespace": namespace}, "spec": spec}


def _target(spec: dict[str, Any]) -> str:
    if "envoyExtAuthzHttp" in spec or "zipkin" in spec:  # ExtensionProvider: mesh-wide, as Istio's meshConfig
        return "(mesh)"
    if isinstance(spec.get("http"), list) and isinstance(spec.get("hosts"), list):  # Istio's VirtualService: its Service,
        bound = [g for g in spec.get("gateways") or [] if g != "mesh"]                   # or on a Gateway the host it serves
        if bound:
            return f"gateway/{bound[0]} " + ",".join(map(str, spec["hosts"]))
        return ",".join(f"svc/{str(h).split('.')[0]}" for h in spec["hosts"])
    if isinstance(spec.get("servers"), list):  # Istio's Gateway: its servers, port and hosts
        return ",".join(f"{(s.get('port') or {}).get('number')} " + ",".join(map(str, s.get("hosts") or []))
                        for s in spec["servers"] if isinstance(s, dict))
    if isinstance(spec.get("host"), str):  # Istio's DestinationRule
        return f"svc/{spec['host'].split('.')[0]}"
    if isinstance(spec.get("hosts"), list):  # ServiceEntry
        return ",".join(map(str, spec["hosts"]))
    if isinstance(spec.get("targetRefs"), list):  # BackendTLSPolicy: ServiceEntries, and a port by name
        return ",".join(f"se/{r.get('name')}" + (f":{r['sectionName']}" if r.get("sectionName") else "")
                        for r in spec["targetRefs"] if isinstance(r, dict))
    if isinstance(spec.get("workloadSelector"), dict):  # Sidecar
        return ",".join(f"{k}={v}" for k, v in (spec["workloadSelector"].get("labels") or {}).items())
    if isinstance(spec.get("listeners"), list):  # Gateway: its listeners, name:port and host
        return ",".join(f"{item.get('name')}:{item.get('port')}" + (f" {item['hostname']}" if item.get("hostname") else "")
                        for item in spec["listeners"] if isinstance(item, dict))
    if isinstance(spec.get("podSelector"), dict):  # a Linkerd Server: its pods' labels and the port
        return f"{_selector(spec['podSelector'])}:{spec.get('port')}"
    if any(isinstance(spec.get(f), list) for f in ("identities", "identityRefs", "networks")):  # a Linkerd authentication
        return "-"
    if isinstance(spec.get("server"), dict):  # a Linkerd ServerAuthorization: its Server by name, or Servers by label
        server = spec["server"]
        return f"server/{server['name']}" if server.get("name") else f"servers {_selector(server.get('selector') or {})}"
    ref = spec.get("targetRef") or (spec.get("parentRefs") or [{}])[0]
    if isinstance(spec.get("selector"), dict):
        return ",".join(f"{k}={v}" for k, v in (spec["selector"].get("matchLabels") or {}).items()) or "(namespace)"
    short = {"Service": "svc", "Deployment": "deploy", "Pod": "pod", "ServiceAccount": "sa", "ServiceEntry": "se", "Gateway": "gateway",
             "Server": "server", "Namespace": "ns"}
    if not isinstance(ref, dict) or not ref.get("name"):
        return "(namespace)"
    kind = parent_kind(ref) if "parentRefs" in spec else ref.get("kind", "Service")  # a route's parent: Gateway API's default
    return f"{short.get(kind, kind)}/{ref['name']}" + (f":{ref['sectionName']}" if ref.get("sectionName") else "")


def _selector(selector: dict[str, Any]) -> str:
    """A Kubernetes label selector in kubectl's words: app=voting,tier notin (x)."""
    parts = [f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items()]
    parts += [f"{e.get('key')} {str(e.get('operator', '')).lower()} ({','.join(map(str, e.get('values') or []))})"
              for e in selector.get("matchExpressions") or [] if isinstance(e, dict)]
    return ",".join(parts) or "-"


def _linkerd_client(client: dict[str, Any]) -> str:
    """Who a ServerAuthorization lets in, in a few words."""
    mesh = client.get("meshTLS") if isinstance(client.get("meshTLS"), dict) else None
    if mesh is None:
        who = "anyone"
    elif mesh.get("serviceAccounts"):
        who = "meshed " + ",".join(f"sa/{a.get('name')}" for a in mesh["serviceAccounts"] if isinstance(a, dict))
    elif mesh.get("identities"):
        who = "meshed " + ",".join(map(str, mesh["identities"]))
    else:
        who = "any meshed caller"
    networks = [str(n.get("cidr")) for n in client.get("networks") or [] if isinstance(n, dict)]
    return who + (f" from {','.join(networks)}" if networks else "")


def _rate_limits(spec: dict[str, Any], namespace: str) -> str:
    """An HTTPLocalRateLimitPolicy's limits in a few words: total 10 rps, 4 rps per identity, 6 rps for sa/web."""
    def rps(part: Any) -> Any:
        return part.get("requestsPerSecond") if isinstance(part, dict) else None

    parts = [f"total {rps(spec.get('total'))} rps"] if rps(spec.get("total")) else []
    parts += [f"{rps(spec.get('identity'))} rps per identity"] if rps(spec.get("identity")) else []
    for override in (o for o in spec.get("overrides") or [] if isinstance(o, dict)):
        refs = [r for r in override.get("clientRefs") or [] if isinstance(r, dict)]
        names = [f"sa/{r.get('name')}" if r.get("namespace") in (None, "", namespace) else f"sa/{r.get('namespace')}/{r.get('name')}"
                 for r in refs]
        parts.append(f"{rps(override)} rps for {','.join(names)}")
    return ", ".join(parts) or "-"


def _ingress_hosts(spec: dict[str, Any]) -> str:
    """An Ingress's hosts, as kubectl's HOSTS column shows them (* for a rule of any host)."""
    return ",".join(str(rule.get("host") or "*") for rule in spec.get("rules") or [] if isinstance(rule, dict)) or "*"


def _detail(kind: str, spec: dict[str, Any], annotations: dict[str, Any] | None = None, namespace: str = "") -> str:
    kind = ISTIO_TWINS.get(kind, kind)  # Istio's AuthorizationPolicy (ServiceEntry ...) does what ours does
    on_service = any(isinstance(p, dict) and p.get("kind") == "Service" for p in spec.get("parentRefs") or [])
    if kind == "HTTPRoute" or (kind == LINKERD_HTTP_ROUTE and on_service):  # Linkerd's on a Service: Gateway API's, in its group
        rules = spec.get("rules") or [{}]
        hosts = f" for {', '.join(map(str, spec['hostnames']))}" if spec.get("hostnames") else ""
        return f"{len(rules)} rule{'s' if len(rules) != 1 else ''}{hosts}"
    if kind == "VirtualService":  # its rules, and the subsets they send to (a DestinationRule must define them)
        rules = [r for r in spec.get("http") or [] if isinstance(r, dict)]
        subsets = dict.fromkeys(str((d.get("destination") or {}).get("subset")) for r in rules for d in r.get("route") or []
                                if isinstance(d, dict) and (d.get("destination") or {}).get("subset"))
        return f"{len(rules)} rule{'s' if len(rules) != 1 else ''}" + (f", subsets {', '.join(subsets)}" if subsets else "")
    if kind == "DestinationRule":
        subsets = [str(s.get("name")) for s in spec.get("subsets") or [] if isinstance(s, dict)]
        policy = spec.get("trafficPolicy") if isinstance(spec.get("trafficPolicy"), dict) else {}
        said = ([f"subsets {', '.join(subsets)}"] if subsets else []) + [
            words for field, words in (("connectionPool", "connection pool"), ("outlierDetection", "outlier detection")) if field in policy]
        return ", ".join(said) or "-"
    if kind == "Gateway":
        return f"class {spec.get('gatewayClassName')}, served by the namespace's ingress gateway"
    if kind == ISTIO_GATEWAY:
        protocols = sorted({str((s.get("port") or {}).get("protocol")) for s in spec.get("servers") or [] if isinstance(s, dict)})
        return f"{'/'.join(protocols)}, served by the namespace's ingress gateway"
    if kind == "Ingress":  # as kubectl's PORTS: 80, and 443 with tls
        ports = "80, 443" if spec.get("tls") else "80"
        return f"class {spec.get('ingressClassName') or (annotations or {}).get('kubernetes.io/ingress.class')}, ports {ports}, " \
               "served by the namespace's ingress gateway"
    if kind == "AuthorizationPolicy":  # Istio's istio.io/dry-run: evaluated and reported, not enforced
        provider = spec.get("provider") if isinstance(spec.get("provider"), dict) else {}
        return (str(spec.get("action", "ALLOW")) + (f" by {provider.get('name')}" if provider else "")
                + (" (dry-run)" if (annotations or {}).get("istio.io/dry-run") == "true" else ""))
    if kind == "Server":  # Linkerd's: who may call it once it exists
        protocol = spec.get("proxyProtocol")
        return f"accessPolicy {spec.get('accessPolicy', 'deny')}" + (f", proxyProtocol {protocol} (served as HTTP/1.1)"
                                                                    if protocol not in (None, "unknown", "HTTP/1") else "")
    if kind == "ServerAuthorization":
        return _linkerd_client(spec.get("client") or {})
    if kind == LINKERD_HTTP_ROUTE:  # a Server's route: the requests it matches
        matches = [m for rule in spec.get("rules") or [] if isinstance(rule, dict) for m in rule.get("matches") or []
                   if isinstance(m, dict)]
        said = [" ".join(filter(None, (str(m.get("method") or ""), str((m.get("path") or {}).get("value") or ""))))
                for m in matches]
        return " or ".join(s or "everything" for s in said) or "everything"
    if kind == LINKERD_AUTHORIZATION_POLICY:  # every authentication it requires must let a caller in
        refs = [r for r in spec.get("requiredAuthenticationRefs") or [] if isinstance(r, dict)]
        return "requires " + " and ".join(f"{r.get('kind')} {r.get('name')}" for r in refs) if refs else "anyone"
    if kind == "MeshTLSAuthentication":
        refs = [f"{'ns' if r.get('kind') == 'Namespace' else 'sa'}/{r.get('name')}" for r in spec.get("identityRefs") or []
                if isinstance(r, dict)]
        return "meshed " + ",".join(refs or map(str, spec.get("identities") or []))
    if kind == "HTTPLocalRateLimitPolicy":  # Linkerd's limits, as linkerdratelimit's describe says them
        return _rate_limits(spec, namespace)
    if kind == "NetworkAuthentication":
        return "from " + ",".join(str(n.get("cidr")) for n in spec.get("networks") or [] if isinstance(n, dict))
    if kind == "BackendTLSPolicy":
        validation = spec.get("validation") if isinstance(spec.get("validation"), dict) else {}
        return f"TLS to {validation.get('hostname')} ({validation.get('wellKnownCACertificates', 'System')} CAs)"
    if kind == "ExtensionProvider":
        if isinstance(spec.get("zipkin"), dict):
            zipkin = spec["zipkin"]
            return f"zipkin http://{zipkin.get('service', '?')}:{zipkin.get('port', '?')}{zipkin.get('path', '/api/v2/spans')}"
        http = spec.get("envoyExtAuthzHttp") if isinstance(spec.get("envoyExtAuthzHttp"), dict) else {}
        return f"ext_authz http://{http.get('service', '?')}:{http.get('port', '?')}{http.get('pathPrefix', '')}"
    if kind == "MeshTLS":
        return str(spec.get("mode", ""))
    if kind == "PeerAuthentication":  # Istio's: UNSET leaves it to the namespace's, or the mesh's
        mode = str((spec.get("mtls") or {}).get("mode", "UNSET"))
        return mode + (" (as the level above)" if mode == "UNSET" else "")
    if kind == "Sidecar":
        return f"outbound {spec.get('outboundTrafficPolicy', {}).get('mode', '')}"
    if kind == "Telemetry":
        parts = []
        for key, say in (("tracing", lambda e: ", ".join(filter(None, (
                f"tracing {e['randomSamplingPercentage']}% sampled" if "randomSamplingPercentage" in e else "",
                f"spans to {e['providers'][0].get('name')}" if e.get("providers") else "")))),
                         ("accessLogging", lambda e: "access log " + ("off" if e.get("disabled") else "on"))):
            entries = spec.get(key)
            if isinstance(entries, list) and entries and isinstance(entries[0], dict):
                parts.append(say(entries[0]))
        return ", ".join(parts) or "-"
    if kind == "ServiceEntry":
        ports = ",".join(str(p.get("number")) for p in spec.get("ports") or [] if isinstance(p, dict))
        return f"{spec.get('resolution', 'NONE')}, port {ports}"
    return ", ".join(f"{k}={v}" for k, v in spec.items() if k not in ("targetRef", "parentRefs") and not isinstance(v, dict | list))[:60] or "-"


def detail(doc: dict[str, Any]) -> str:
    """What one resource does, in get's DETAIL words (a lesson's check may ask for them)."""
    kind = internal_kind(str(doc.get("kind", "?")), str(doc.get("apiVersion", "")))
    meta = doc.get("metadata") or {}
    return _detail(kind, doc.get("spec") or {}, meta.get("annotations"), meta.get("namespace", "default"))


def table(items: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """``meshdojo get``: fault columns for FaultInjection, a generic detail column for the rest."""
    faults = all(i["document"].get("kind") == "FaultInjection" for i in items)
    rows = [("NAMESPACE", "NAME", "TARGET", "DELAY", "ABORT", "EXPIRES IN") if faults
            else ("NAMESPACE", "KIND", "NAME", "TARGET", "DETAIL", "EXPIRES IN")]
    now = dt.datetime.now(dt.UTC).timestamp()
    for item in items:
        doc, exp = item["document"], item["expiresAt"]
        spec = doc.get("spec") or {}
        expires = f"{max(exp - now, 0):.0f}s" if exp else "-"
        if faults:
            delay, abort = spec.get("delay"), spec.get("abort")
            rows.append((
                doc["metadata"].get("namespace", "default"), doc["metadata"]["name"], _target(spec),
                f"{delay['fixedDelay']} {delay.get('percentage', {}).get('value', 100):g}%" if delay else "-",
                f"{abort['httpStatus']} {abort.get('percentage', {}).get('value', 100):g}%" if abort else "-", expires,
            ))
        else:
            kind = internal_kind(str(doc.get("kind", "?")), str(doc.get("apiVersion", "")))  # Linkerd's AuthorizationPolicy, by group
            target = _ingress_hosts(spec) if kind == "Ingress" else _target(spec)
            rows.append((doc["metadata"].get("namespace", "default"), kind, doc["metadata"]["name"], target, detail(doc), expires))
    return rows

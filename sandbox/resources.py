"""``meshdojo apply / get / delete / fault``: policy resources, through the operator API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from controlplane.foreignkinds import foreign_kind, foreign_kind_message
from controlplane.istioschema import ISTIO_GATEWAY, ISTIO_TWINS
from controlplane.kindnames import plural
from controlplane.policy import KINDS, POLICY_API, canonical_kind
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

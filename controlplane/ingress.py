"""Kubernetes' ``Ingress``, as Istio's *Kubernetes Ingress* task has Istio serve it.

An Ingress of class ``istio`` (or ``meshdojo``) is served by the ingress gateway of its
namespace, next to the Gateways there: each rule's host and paths become a route the gateway
matches requests against, on its HTTP port and — for the hosts of ``tls`` — on its TLS port
with the Secret's certificate. Paths are matched as Kubernetes says: ``Exact``, ``Prefix``
(whole segments), and ``ImplementationSpecific`` as Istio reads it (exact, or a prefix when it
ends in ``/*``); within a host, exact paths first, then the longest prefix — the order Istio
gives the routes it makes of an Ingress. A request that no rule matches goes to
``defaultBackend``, or gets 404.

An Ingress of another class, or with none, is another controller's: ``meshdojo apply`` says so,
and on a cluster the control plane leaves it alone.

Pure: reading a document (the schema already checked) into an :class:`IngressSpec`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controlplane.fields import FieldReader

INGRESS_CLASSES = ("istio", "meshdojo")  # the classes our gateways serve (Istio's controller: istio.io/ingress-controller)
CLASS_ANNOTATION = "kubernetes.io/ingress.class"  # the older way to name the class, which Istio still reads
CONTROLLERS = ("istio.io/ingress-controller", "meshdojo.dev/ingress-controller")  # an IngressClass's spec.controller


@dataclass(frozen=True, slots=True)
class IngressPath:
    path: str
    type: str  # Exact or PathPrefix (Gateway API's words, which the gateway's matcher reads)
    service: str


@dataclass(frozen=True, slots=True)
class IngressRule:
    host: str | None  # None: any host
    paths: tuple[IngressPath, ...]  # in the order they are matched: exact first, then the longest prefix


@dataclass(frozen=True, slots=True)
class IngressTls:
    hosts: tuple[str, ...]  # (): any host
    secret: str  # in the Ingress's namespace


@dataclass(frozen=True, slots=True)
class IngressSpec:
    class_name: str
    rules: tuple[IngressRule, ...]
    default_service: str | None  # where a request no rule matches goes; None: 404
    tls: tuple[IngressTls, ...]
    routes: tuple[Any, ...] = ()  # the routes the gateway serves (HTTPRoute-shaped Resources: controlplane/policy.py)


def class_of(spec: dict[str, Any], annotations: dict[str, Any]) -> str | None:
    """The class an Ingress names: ``spec.ingressClassName``, else Istio's older annotation."""
    name = spec.get("ingressClassName") or annotations.get(CLASS_ANNOTATION)
    return name if isinstance(name, str) else None


def is_ours(obj: dict[str, Any]) -> bool:
    """An Ingress object (as the API server has it) that meshdojo's gateways serve."""
    return class_of(obj.get("spec") or {}, (obj.get("metadata") or {}).get("annotations") or {}) in INGRESS_CLASSES


def path_of(path: str, path_type: str) -> tuple[str, str]:
    """(value, Gateway API match type) of one Ingress path. ``ImplementationSpecific`` is Istio's:
    a path ending in ``/*`` (or ``.*``) is a prefix, anything else exact."""
    if path_type == "Prefix":
        return path, "PathPrefix"
    if path_type == "ImplementationSpecific" and path.endswith(("/*", ".*")):
        return path[:-2] or "/", "PathPrefix"
    return path, "Exact"


def match_order(path: IngressPath) -> tuple[int, int]:
    """Exact paths first, then prefixes, the longer first (a stable sort keeps the written order)."""
    return (0 if path.type == "Exact" else 1, -len(path.path))


def read(r: FieldReader, spec: dict[str, Any], annotations: dict[str, Any]) -> IngressSpec:
    """An Ingress's spec, its shape already checked: its class, rules and TLS."""
    class_name = class_of(spec, annotations)
    if class_name is None:
        raise r.fail("spec.ingressClassName", "no class: which controller serves this Ingress is not said — set "
                                              "ingressClassName: istio (as Istio's task does) for meshdojo's gateways")
    if class_name not in INGRESS_CLASSES:
        field = "spec.ingressClassName" if spec.get("ingressClassName") else f"metadata.annotations.{CLASS_ANNOTATION}"
        raise r.fail(field, f"{class_name!r} is another controller's class: meshdojo's gateways serve "
                            f"{' or '.join(INGRESS_CLASSES)}")
    if "ingressClassName" in spec and annotations.get(CLASS_ANNOTATION) not in (None, spec["ingressClassName"]):
        raise r.fail(f"metadata.annotations.{CLASS_ANNOTATION}", f"{annotations[CLASS_ANNOTATION]!r} contradicts "
                                                                f"spec.ingressClassName {spec['ingressClassName']!r}: keep one")
    rules = []
    for i, rule in enumerate(spec.get("rules", [])):
        if "http" not in rule:
            raise r.fail(f"spec.rules[{i}].http", "a rule without http.paths routes nothing: give its paths")
        paths = []
        for item in rule["http"]["paths"]:  # a resource backend is refused by the schema: only service is a field
            value, kind = path_of(item["path"], item["pathType"])
            paths.append(IngressPath(value, kind, item["backend"]["service"]["name"]))
        rules.append(IngressRule(rule.get("host"), tuple(sorted(paths, key=match_order))))
    default = spec.get("defaultBackend", {}).get("service", {}).get("name")
    if not rules and default is None:
        raise r.fail("spec", "neither rules nor defaultBackend: this Ingress would let nothing in")
    tls = tuple(IngressTls(tuple(item.get("hosts", ())), item["secretName"]) for item in spec.get("tls", []))
    return IngressSpec(class_name, tuple(rules), default, tls)

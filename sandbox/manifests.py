"""Reading demo manifests (Kubernetes YAML) for the local backend.

The local backend interprets a documented subset: names, namespace, labels, replicas,
container command/env/ports, service account, annotations, Service ports, selectors and
Linkerd's annotations (controlplane.serviceannotations). The
documents are parsed once into frozen values; anything outside the subset, a wrong type or a
missing command is an error naming the file, the document and the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from controlplane import accesslogannotation, inboundpolicy, serviceannotations
from controlplane.fields import FieldReader
from controlplane.podannotations import AnnotationError

INJECT_ANNOTATION = "meshdojo.dev/inject"
IGNORED = frozenset({"image", "imagePullPolicy", "resources", "readinessProbe", "livenessProbe"})  # meaningful only in Kubernetes


class ManifestError(ValueError):
    def __init__(self, path: Path, index: int, field_path: str, message: str) -> None:
        super().__init__(f"{path}: document {index}: {field_path}: {message}")


@dataclass(frozen=True)
class Container:
    command: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    port: int | None
    port_name: str = ""  # the containerPort's name (a Linkerd Server may name the port so)


@dataclass(frozen=True)
class Deployment:
    name: str
    namespace: str
    labels: dict[str, str] = field(hash=False)
    replicas: int
    service_account: str
    inject: bool
    container: Container
    source: Path = field(compare=False)
    default_inbound_policy: str | None = None  # Linkerd's annotation, on the pod template or its Namespace
    access_log: str | None = None  # Linkerd's config.linkerd.io/access-log (apache, json), the same way


@dataclass(frozen=True)
class Service:
    name: str
    namespace: str
    selector: dict[str, str] = field(hash=False)
    ports: tuple[tuple[int, int], ...]  # (port, targetPort)
    annotations: dict[str, str] = field(default_factory=dict, hash=False)  # its Linkerd annotations (retries, timeouts, failure accrual)


@dataclass(frozen=True)
class Demo:
    name: str
    directory: Path
    deployments: tuple[Deployment, ...]
    services: tuple[Service, ...]

    def services_for(self, deployment: Deployment) -> list[Service]:
        return [s for s in self.services if s.namespace == deployment.namespace
                and s.selector and all(deployment.labels.get(k) == v for k, v in s.selector.items())]


class _Doc(FieldReader):
    """One document being read, remembering where it is, for error messages."""

    unknown_hint = "the local backend reads"
    ignored = IGNORED

    def __init__(self, path: Path, index: int) -> None:
        self.path, self.index = path, index

    def fail(self, where: str, message: str) -> ManifestError:
        return ManifestError(self.path, self.index, where, message)

    def labels(self, value: Any, where: str) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise self.fail(where, "expected a mapping of strings to strings")
        return dict(value)


def load_demo(directory: Path) -> Demo:
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise ManifestError(directory, 0, "(directory)", "no *.yaml manifests here")
    entries = []
    for path in files:
        try:
            documents = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError as exc:
            raise ManifestError(path, 0, "(yaml)", f"not valid YAML: {exc}") from None
        entries += [(path, index, raw) for index, raw in enumerate(documents) if raw is not None]
    return read_documents(directory.name, directory, entries)


def read_documents(name: str, directory: Path, entries: list[tuple[Path, int, Any]]) -> Demo:
    """The Deployments and Services among ``(file, index, document)`` entries, as one Demo."""
    deployments: list[Deployment] = []
    services: list[Service] = []
    namespaces = _namespace_annotations(entries)
    for path, index, raw in entries:
        doc = _Doc(path, index)
        top = doc.obj(raw, "", {"apiVersion", "kind", "metadata", "spec"}, {"apiVersion", "kind", "metadata"})
        kind = top["kind"]
        meta = doc.obj(top["metadata"], "metadata", {"name", "namespace", "labels", "annotations"}, {"name"})
        name_ = doc.string(meta["name"], "metadata.name")
        namespace = doc.string(meta.get("namespace", "default"), "metadata.namespace")
        if kind == "Deployment":
            deployments.append(_deployment(doc, top, name_, namespace, doc.labels(meta.get("labels"), "metadata.labels"), directory,
                                           namespaces.get(namespace, {})))
        elif kind == "Service":
            services.append(_service(doc, top, name_, namespace, meta.get("annotations")))
        elif kind not in ("Namespace", "ServiceAccount"):
            raise doc.fail("kind", f"{kind!r} is not one the local backend reads (Deployment, Service, ServiceAccount, Namespace)")
    return Demo(name, directory, tuple(deployments), tuple(services))


def _namespace_annotations(entries: list[tuple[Path, int, Any]]) -> dict[str, dict[str, str]]:
    """The annotations of each Namespace among the entries (a pod's default inbound policy may
    come from its namespace, as in Linkerd); a wrong default inbound policy is refused here."""
    found: dict[str, dict[str, str]] = {}
    for path, index, raw in entries:
        if not (isinstance(raw, dict) and raw.get("kind") == "Namespace" and isinstance(raw.get("metadata"), dict)):
            continue
        doc = _Doc(path, index)
        annotations = doc.labels(raw["metadata"].get("annotations"), "metadata.annotations")
        try:
            for chosen in (inboundpolicy.chosen, accesslogannotation.chosen):
                chosen({}, annotations, namespace_field="metadata.annotations")
        except AnnotationError as exc:
            raise doc.fail(exc.field, exc.message) from None
        found[str(raw["metadata"].get("name"))] = annotations
    return found


def expand(arg: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` in a container's command and args: replaced by the container's
    variable; ``$$`` is a literal ``$``; a reference to an unknown variable stays as written."""
    out, i = [], 0
    while i < len(arg):
        if arg.startswith("$$", i):
            out.append("$")
            i += 2
        elif arg.startswith("$(", i) and (end := arg.find(")", i + 2)) != -1 and arg[i + 2:end] in env:
            out.append(env[arg[i + 2:end]])
            i = end + 1
        else:
            out.append(arg[i])
            i += 1
    return "".join(out)


def _deployment(doc: _Doc, top: dict, name: str, namespace: str, labels: dict[str, str], directory: Path,
                namespace_annotations: dict[str, str]) -> Deployment:
    spec = doc.obj(top.get("spec"), "spec", {"replicas", "selector", "template"}, {"template"})
    replicas = doc.integer(spec.get("replicas", 1), "spec.replicas", 0, 20)
    template = doc.obj(spec["template"], "spec.template", {"metadata", "spec"}, {"spec"})
    tmeta = doc.obj(template.get("metadata", {}), "spec.template.metadata", {"labels", "annotations"})
    pod_labels = doc.labels(tmeta.get("labels"), "spec.template.metadata.labels") or labels
    annotations = doc.labels(tmeta.get("annotations"), "spec.template.metadata.annotations")
    inject = annotations.get(INJECT_ANNOTATION, "disabled")
    if inject not in ("enabled", "disabled"):
        raise doc.fail(f"spec.template.metadata.annotations.{INJECT_ANNOTATION}", f"expected enabled or disabled, got {inject!r}")
    try:
        default_policy = inboundpolicy.chosen(annotations, namespace_annotations, "spec.template.metadata.annotations")
        access_log = accesslogannotation.chosen(annotations, namespace_annotations, "spec.template.metadata.annotations")
    except AnnotationError as exc:
        raise doc.fail(exc.field, exc.message) from None
    pod = doc.obj(template["spec"], "spec.template.spec", {"serviceAccountName", "containers"}, {"containers"})
    containers = pod["containers"]
    if not isinstance(containers, list) or len(containers) != 1:
        raise doc.fail("spec.template.spec.containers", "the local backend runs exactly one container per pod")
    where = "spec.template.spec.containers[0]"
    c = doc.obj(containers[0], where, {"name", "command", "args", "env", "ports"})
    command = c.get("command")
    if not isinstance(command, list) or not command or not all(isinstance(p, str) for p in command):
        raise doc.fail(f"{where}.command", "the local backend needs the command to run, as a list of strings")
    args = c.get("args", [])
    if not isinstance(args, list) or not all(isinstance(p, str) for p in args):
        raise doc.fail(f"{where}.args", "expected a list of strings")
    env = []
    for i, item in enumerate(c.get("env", []) or []):
        entry = doc.obj(item, f"{where}.env[{i}]", {"name", "value"}, {"name", "value"})
        env.append((doc.string(entry["name"], f"{where}.env[{i}].name"), _scalar(doc, entry["value"], f"{where}.env[{i}].value")))
    ports = c.get("ports", []) or []
    if not isinstance(ports, list) or len(ports) > 1:
        raise doc.fail(f"{where}.ports", "expected at most one port")
    port, port_name = None, ""
    if ports:
        p = doc.obj(ports[0], f"{where}.ports[0]", {"name", "containerPort", "protocol"}, {"containerPort"})
        port = doc.integer(p["containerPort"], f"{where}.ports[0].containerPort", 1, 65535)
        port_name = doc.string(p["name"], f"{where}.ports[0].name") if "name" in p else ""
    return Deployment(
        name=name, namespace=namespace, labels=pod_labels, replicas=replicas,
        service_account=doc.string(pod.get("serviceAccountName", "default"), "spec.template.spec.serviceAccountName"),
        inject=inject == "enabled", container=Container(tuple(command) + tuple(args), tuple(env), port, port_name), source=doc.path,
        default_inbound_policy=default_policy, access_log=access_log,
    )


def _service(doc: _Doc, top: dict, name: str, namespace: str, annotations: Any) -> Service:
    spec = doc.obj(top.get("spec"), "spec", {"selector", "ports", "type"}, {"ports"})
    linkerd = serviceannotations.linkerd_only(annotations)
    try:
        serviceannotations.read(namespace, name, linkerd)
    except serviceannotations.AnnotationError as exc:
        raise doc.fail(exc.field, exc.message) from None
    ports = []
    if not isinstance(spec["ports"], list) or not spec["ports"]:
        raise doc.fail("spec.ports", "expected a non-empty list")
    for i, raw in enumerate(spec["ports"]):
        p = doc.obj(raw, f"spec.ports[{i}]", {"name", "port", "targetPort", "protocol"}, {"port"})
        port = doc.integer(p["port"], f"spec.ports[{i}].port", 1, 65535)
        ports.append((port, doc.integer(p.get("targetPort", port), f"spec.ports[{i}].targetPort", 1, 65535)))
    return Service(name, namespace, doc.labels(spec.get("selector"), "spec.selector"), tuple(ports), linkerd)


def _scalar(doc: _Doc, value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise doc.fail(where, f"expected a string, got {value!r}")
    return str(value)

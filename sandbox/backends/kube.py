"""The Kubernetes backends: a kind or minikube cluster meshdojo makes, or a context the user has.

The same protocol as the local backend, on a cluster: ``up`` makes the cluster if it is ours to
make, loads the image, installs (CRDs, control plane) and applies the demos' own manifests;
``status`` reads Pods and Deployments; ``scale`` and ``inject`` patch the Deployment (the
injector's webhook adds the sidecar as the rollout makes new pods); ``kill`` deletes pods; the
operator API is reached through a port-forward (see :mod:`sandbox.kube.forward`). ``down``
deletes what the sandbox made and uninstalls, and never deletes a cluster it did not create.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from sandbox.backends import Status
from sandbox.backends.choice import BackendChoice
from sandbox.cpapi import OperatorApi
from sandbox.errors import SandboxError
from sandbox.kube import cluster, forward, providers
from sandbox.kube import workloads as kw
from sandbox.paths import SandboxPaths

STATE_FILE = "kube.json"  # the sandbox is up on its cluster: its demos, whether we made the cluster
DEMO_ROOT = Path(__file__).resolve().parents[2] / "demo-apps"
CONTROLPLANE_DEPLOYMENT = "meshdojo-controlplane"


class KubeBackend:
    def __init__(self, sandbox: str, choice: BackendChoice, provider: Any = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.sandbox, self.choice, self.kind = sandbox, choice, choice.kind
        self.paths = SandboxPaths.for_name(sandbox)
        self.provider = provider or providers.provider_for(choice.kind, sandbox, self.paths.root, choice.context)
        self.clock = clock
        self._client: Any = None

    # -- the cluster ------------------------------------------------------------------------------
    @property
    def context(self) -> str | None:
        return self.choice.context if self.kind == "context" else self.provider.context

    def client(self) -> Any:
        if self._client is None:
            try:
                self._client = cluster.connect(Path(self.choice.kubeconfig) if self.choice.kubeconfig else None, self.context)
            except cluster.ClusterError as exc:
                raise SandboxError(str(exc)) from None
        return self._client

    def _resource(self, api_version: str, kind: str) -> Any:
        return self.client().resources.get(api_version=api_version, kind=kind)

    def _state(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.paths.root / STATE_FILE).read_text())
        except (OSError, ValueError):
            return None

    def image(self) -> str:
        from sandbox.kube.image import image_ref

        return self.choice.image or image_ref()

    # -- lifecycle --------------------------------------------------------------------------------
    def up(self, demos: list[str], cert_lifetime: str, say: Callable[[str], None] = print,
           own_ca: Any = None, new_ca: bool = False) -> Status:
        from sandbox.kube import setup

        started = self.clock()

        def step(text: str) -> None:
            say(f"[{self.clock() - started:6.1f}s] {text}")

        for demo in demos:
            if not (DEMO_ROOT / demo / "manifests.yaml").exists():
                raise SandboxError(f"unknown demo {demo!r}; choose from emojivoto, bookinfo (e.g. --demo emojivoto)")
        made_cluster = False
        if self.provider.creates:
            if self.provider.exists():
                step(f"{self.kind} cluster {self.provider.name} exists: using it")
            else:
                step(f"creating {self.kind} cluster {self.provider.name} (a minute or two the first time)")
                self.provider.create()
                made_cluster = True
                self._save_state({"demos": demos, "made_cluster": True, "namespaces": []})  # from now on `down` deletes it
            self._load_image(step)
        image = self.image()
        step(f"installing meshdojo ({image}) into context {self.context or '(current)'}")
        try:
            client = self.client()
            setup.install(client, image, webhook_url=self.choice.webhook_url, cert_lifetime=cert_lifetime, pki=own_ca,
                          say=lambda _line: None)
            documents = self._demo_documents(demos, image)
            step(f"applying the demos' manifests: {', '.join(demos)} ({len(documents)} objects)")
            cluster.apply(client, documents)
        except cluster.ClusterError as exc:
            raise SandboxError(str(exc)) from None
        kept = self._state() or {}
        self._save_state({"demos": demos, "made_cluster": made_cluster or kept.get("made_cluster", False),
                          "namespaces": kw.namespaces_of(documents), "image": image})
        step("waiting for the pods to be ready")
        st = self.wait_until(lambda s: s["ready"], timeout=300)
        step(f"ready: {len(st['workloads'])} pods ({sum(w['meshed'] for w in st['workloads'])} meshed)")
        return st

    def _load_image(self, step: Callable[[str], None]) -> None:
        archive = Path(self.choice.image_archive) if self.choice.image_archive else None
        if archive is not None:
            step(f"loading the image archive {archive} into the cluster")
            self.provider.load_image(archive=archive)
            return
        from sandbox.kube import image as images

        image = self.image()
        try:
            engine = images.engine()
            if not engine.images.list(name=image):
                raise SandboxError(f"the image {image} is not built yet: run `meshdojo images build` "
                                   "(or pass --image-archive FILE from `meshdojo images save`)")
        except images.ImageError as exc:
            raise SandboxError(str(exc)) from None
        step(f"loading {image} into the cluster")
        self.provider.load_image(image=image)

    def _demo_documents(self, demos: list[str], image: str) -> list[dict[str, Any]]:
        """The demos' own manifests, then each one's ingress gateway."""
        from sandbox.kube import gateways

        documents = []
        for demo in demos:
            path = DEMO_ROOT / demo / "manifests.yaml"
            documents += [d for d in yaml.safe_load_all(path.read_text()) if d]
        for demo in demos:
            documents += gateways.manifests(demo, image, published=self.provider.creates)
        return kw.for_cluster(documents, self.sandbox, image)

    def _save_state(self, state: dict[str, Any]) -> None:
        from controlplane.statefiles import write_json

        self.paths.root.mkdir(parents=True, exist_ok=True)
        write_json(self.paths.root / STATE_FILE, state)

    def down(self, timeout: float = 180.0) -> bool:
        state = self._state()
        if state is None:
            return False
        forward.stop(self.paths.root)
        if state.get("made_cluster") and self.provider.creates:
            self.provider.delete()  # the cluster and everything on it
        else:
            from kubernetes.dynamic.exceptions import DynamicApiError, NotFoundError

            try:
                client = self.client()
                namespaces = self._resource("v1", "Namespace")
                mine = [n["metadata"]["name"] for n in
                        namespaces.get(label_selector=f"{kw.SANDBOX_LABEL}={self.sandbox}").to_dict()["items"]]
                for name in mine:
                    try:
                        namespaces.delete(name=name)
                    except NotFoundError:  # gone meanwhile (a second `down`, or kubectl)
                        pass
                cluster.uninstall(client, timeout)
                deadline = self.clock() + timeout
                while namespaces.get(label_selector=f"{kw.SANDBOX_LABEL}={self.sandbox}").to_dict()["items"]:
                    if self.clock() > deadline:
                        raise SandboxError(f"the sandbox's namespaces are still there after {timeout:g}s "
                                           f"(kubectl get ns -l {kw.SANDBOX_LABEL}={self.sandbox})")
                    time.sleep(0.2)  # the namespace controller empties them; polling a handful of objects
            except cluster.ClusterError as exc:
                raise SandboxError(str(exc)) from None
            except DynamicApiError as exc:  # the sandbox's record is kept: `down` again finishes the job
                raise SandboxError(f"the API server refused while taking the sandbox down: {cluster.reason(exc)} "
                                   "(run `meshdojo down` again; it goes on where this one stopped)") from None
        (self.paths.root / STATE_FILE).unlink(missing_ok=True)
        return True

    def status(self) -> Status | None:
        state = self._state()
        if state is None:
            return None
        try:
            return self._status(state)
        except cluster.ClusterError as exc:
            raise SandboxError(str(exc)) from None

    def _status(self, state: dict[str, Any]) -> Status:
        namespaces = {n["metadata"]["name"]: n for n in self._resource("v1", "Namespace").get(
            label_selector=f"{kw.SANDBOX_LABEL}={self.sandbox}").to_dict()["items"]}
        pods_api, deployments_api = self._resource("v1", "Pod"), self._resource("apps/v1", "Deployment")
        pods, deployments = [], []
        for ns in namespaces:
            pods += pods_api.get(namespace=ns).to_dict()["items"]
            deployments += deployments_api.get(namespace=ns).to_dict()["items"]
        from sandbox.kube import gateways

        st = kw.status_document(self.sandbox, self.choice.describe(), state.get("demos", []), pods, deployments, namespaces,
                                self._controlplane())
        st["gateways"] = gateways.entries(state.get("demos", []), published=self.provider.creates)
        return st

    def _controlplane(self) -> dict[str, Any]:
        from kubernetes.dynamic.exceptions import NotFoundError

        from controlplane.injector import CONTROLPLANE_NAMESPACE

        try:
            dep = self._resource("apps/v1", "Deployment").get(name=CONTROLPLANE_DEPLOYMENT, namespace=CONTROLPLANE_NAMESPACE).to_dict()
        except NotFoundError:
            return {"pid": None, "api": None, "mesh": None, "ready": False, "restarts": 0}
        ready = int((dep.get("status") or {}).get("readyReplicas") or 0) >= 1
        if self.choice.controlplane_url:  # a control plane outside the cluster: ready when it answers
            ready = _answers(self.choice.controlplane_url)
        return {"pid": None, "api": self.choice.controlplane_url or f"svc/{CONTROLPLANE_DEPLOYMENT} (port-forward)",
                "mesh": None, "ready": ready, "restarts": 0}

    def carried_over(self) -> list[str]:
        return []  # the cluster keeps its own state: scaling, injection and policies are still there

    def forget(self) -> None:
        (self.paths.root / STATE_FILE).unlink(missing_ok=True)

    # -- workloads --------------------------------------------------------------------------------
    def _running(self) -> Status:
        st = self.status()
        if st is None:
            raise SandboxError(f"sandbox {self.sandbox!r} is not up; start it with 'meshdojo up --name {self.sandbox} "
                               f"--backend {self.choice.describe()}'")
        return st

    def _find(self, deployment: str, namespace: str | None) -> tuple[str, str]:
        from sandbox.local import find_deployment

        return find_deployment(self._running(), deployment, namespace)

    def scale(self, deployment: str, namespace: str | None, replicas: int) -> tuple[str, str]:
        ns, dep = self._find(deployment, namespace)
        self._resource("apps/v1", "Deployment").patch(name=dep, namespace=ns, body={"spec": {"replicas": replicas}},
                                                      content_type="application/merge-patch+json")
        return ns, dep

    def set_injected(self, deployment: str, namespace: str | None, inject: bool) -> tuple[str, str]:
        """Annotate the pod template (as `kubectl annotate` + rollout would): the change rolls the
        Deployment, and the webhook injects (or not) each new pod."""
        from controlplane.injector import INJECT_ANNOTATION

        ns, dep = self._find(deployment, namespace)
        body = {"spec": {"template": {"metadata": {"annotations": {INJECT_ANNOTATION: "enabled" if inject else "disabled"}}}}}
        self._resource("apps/v1", "Deployment").patch(name=dep, namespace=ns, body=body, content_type="application/merge-patch+json")
        return ns, dep

    def wait_until(self, predicate: Callable[[Status], bool], timeout: float = 120.0) -> Status:
        deadline = self.clock() + timeout
        while True:
            st = self._running()
            if predicate(st):
                return st
            if self.clock() > deadline:
                waiting = sorted({f"{w['namespace']}/{w['name']} ({w['phase']})" for w in st["workloads"] if not w["ready"]})
                raise SandboxError(f"not done after {timeout:g}s{': not ready: ' + ', '.join(waiting[:6]) if waiting else ''}; "
                                   f"see 'meshdojo status --name {self.sandbox}' and `kubectl get pods -A`")
            time.sleep(0.25)  # polling the API server: a rollout takes seconds

    def _pods_of(self, target: str, namespace: str | None) -> list[dict[str, Any]]:
        st = self._running()
        mine = [w for w in st["workloads"] if w["name"] == target and namespace in (None, w["namespace"])]
        if not mine:
            ns, dep = self._find(target, namespace)
            mine = [w for w in st["workloads"] if w["deployment"] == dep and w["namespace"] == ns]
        return mine

    def kill(self, target: str, namespace: str | None, proxy: bool = False) -> list[str]:
        """Delete the pods (the Deployment makes new ones): a cluster's way of a crash."""
        from controlplane.injector import CONTROLPLANE_NAMESPACE

        if proxy:
            raise SandboxError("on a cluster the sidecar restarts with its pod: `meshdojo kill deploy/NAME` deletes the pods "
                               "(their Deployment makes new ones); `kubectl exec POD -c meshdojo-proxy -- kill 1` restarts "
                               "only the sidecar container")
        if target == "controlplane":
            pods = [{"name": p["metadata"]["name"], "namespace": CONTROLPLANE_NAMESPACE} for p in self._resource("v1", "Pod").get(
                namespace=CONTROLPLANE_NAMESPACE, label_selector=f"app={CONTROLPLANE_DEPLOYMENT}").to_dict()["items"]]
        else:
            pods = self._pods_of(target, namespace)
        if not pods:
            raise SandboxError(f"no pods of {target!r} right now (see 'meshdojo status --name {self.sandbox}')")
        for pod in pods:
            self._resource("v1", "Pod").delete(name=pod["name"], namespace=pod["namespace"])
        return [f"{pod['namespace']}/{pod['name']}" for pod in pods]

    def annotate_service(self, namespace: str, name: str, annotations: dict[str, str], before: dict[str, str]) -> None:
        """Patch the Service's Linkerd annotations from ``before`` to ``annotations`` (as ``kubectl
        annotate`` would: other annotations are left alone); the control plane sees it through its watch."""
        from kubernetes.client.rest import ApiException

        patch: dict[str, str | None] = {k: v for k, v in annotations.items() if before.get(k) != v}
        patch.update({k: None for k in before if k not in annotations})  # a merge patch's null removes the key
        try:
            self._resource("v1", "Service").patch(name=name, namespace=namespace, body={"metadata": {"annotations": patch}},
                                                  content_type="application/merge-patch+json")
        except ApiException as exc:
            raise SandboxError(f"the API server refused to annotate service {namespace}/{name}: {exc.status} {exc.reason}") from None

    def has_sidecar(self, target: str, namespace: str | None) -> bool:
        return any(w["meshed"] for w in self._pods_of(target, namespace))

    def log_file(self, target: str, namespace: str | None, proxy: bool) -> Path:
        raise SandboxError("a cluster's logs are the pods' (meshdojo reads them through the API server)")

    def logs(self, target: str, namespace: str | None, proxy: bool, follow: bool = False) -> Iterator[str]:
        """The pods' log (the app container's, or the sidecar's with ``proxy``), as ``kubectl logs``."""
        from kubernetes import client as k8s
        from kubernetes.client.rest import ApiException

        from controlplane.injector import PROXY_CONTAINER

        pods = self._pods_of(target, namespace)
        if not pods:
            raise SandboxError(f"no pods of {target!r} right now")
        core = k8s.CoreV1Api(self.client().client)
        for pod in pods:
            spec = self._resource("v1", "Pod").get(name=pod["name"], namespace=pod["namespace"]).to_dict()["spec"]
            apps = [c["name"] for c in spec["containers"] if c["name"] != PROXY_CONTAINER]
            container = PROXY_CONTAINER if proxy else apps[0]
            if len(pods) > 1:
                yield f"==> {pod['namespace']}/{pod['name']} ({container}) <==\n"
            try:
                if follow and len(pods) == 1:
                    stream = core.read_namespaced_pod_log(pod["name"], pod["namespace"], container=container, follow=True,
                                                          _preload_content=False)
                    for chunk in stream.stream():
                        yield chunk.decode(errors="replace")
                else:
                    yield core.read_namespaced_pod_log(pod["name"], pod["namespace"], container=container)
            except ApiException as exc:
                raise SandboxError(f"the API server gives no log for {pod['namespace']}/{pod['name']} ({container}): "
                                   f"{exc.status} {exc.reason}") from None

    # -- manifests --------------------------------------------------------------------------------
    def apply_workloads(self, entries: list[dict[str, Any]]) -> Callable[[], list[tuple[tuple[str, str, str], str]]]:
        """Checked now by the API server (a dry run: nothing stored); the commit applies them."""
        documents = kw.for_cluster([e["document"] for e in entries], self.sandbox, self.image())
        existing = {n["metadata"]["name"] for n in self._resource("v1", "Namespace").get().to_dict()["items"]}
        for entry, doc in zip(entries, documents, strict=True):
            if doc.get("kind") != "Namespace" and doc["metadata"].get("namespace", "default") not in existing:
                continue  # its namespace comes with this file: the API server cannot dry-run it before that
            try:
                cluster.apply(self.client(), [doc], dry_run=True)
            except cluster.ClusterError as exc:
                raise SandboxError(f"{entry['source']}: document {entry['index']}: {exc}\nnothing was applied: fix it and "
                                   "apply again") from None
        state = self._state() or {}

        def commit() -> list[tuple[tuple[str, str, str], str]]:
            try:
                cluster.apply(self.client(), documents)
            except cluster.ClusterError as exc:
                raise SandboxError(str(exc)) from None
            self._save_state({**state, "namespaces": sorted({*state.get("namespaces", []), *kw.namespaces_of(documents)})})
            return [((d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]), "serverside-applied") for d in documents]

        return commit

    def apply_secrets(self, documents: list[dict[str, Any]]) -> list[tuple[tuple[str, str, str], str]]:
        """Into the cluster (all checked by a dry run first), where the control plane reads the ones a Gateway names."""
        try:
            cluster.apply(self.client(), documents, dry_run=True)
            cluster.apply(self.client(), documents)
        except cluster.ClusterError as exc:
            raise SandboxError(str(exc)) from None
        return [(("Secret", d["metadata"].get("namespace", "default"), d["metadata"]["name"]), "serverside-applied") for d in documents]

    def delete_secret(self, namespace: str, name: str) -> bool:
        from kubernetes.dynamic.exceptions import NotFoundError

        try:
            self._resource("v1", "Secret").delete(name=name, namespace=namespace)
        except NotFoundError:
            return False
        return True

    def delete_workloads(self, documents: list[dict[str, Any]]) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
        from kubernetes.dynamic.exceptions import NotFoundError

        removed, absent = [], []
        for doc in documents:
            meta = doc.get("metadata") or {}
            key = (doc["kind"], meta.get("namespace", "") if doc["kind"] != "Namespace" else "", meta["name"])
            try:
                self._resource(doc["apiVersion"], doc["kind"]).delete(name=meta["name"], namespace=key[1] or None)
                removed.append(key)
            except NotFoundError:
                absent.append(key)
        return removed, absent

    # -- the control plane ------------------------------------------------------------------------
    def operator_api(self) -> OperatorApi:
        from controlplane.injector import CONTROLPLANE_NAMESPACE
        from sandbox.kube.install import API_PORT

        self._running()
        token = cluster.existing_operator_token(self.client())
        if token is None:
            raise SandboxError("the cluster has no meshdojo operator token (installed by an older meshdojo?): "
                               "run `meshdojo up` again, which installs it")
        if self.choice.controlplane_url:
            return OperatorApi(self.choice.controlplane_url, token)
        argv = forward.kubectl_argv(self.choice.kubeconfig, self.context, CONTROLPLANE_NAMESPACE, CONTROLPLANE_DEPLOYMENT, API_PORT)
        return OperatorApi(f"http://127.0.0.1:{forward.ensure(self.paths.root, argv)}", token)


def _answers(url: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(url.rstrip("/") + "/v1/health", timeout=2)
        return True
    except urllib.error.HTTPError as exc:
        return exc.code == 401  # it is there; it wants the token
    except OSError:
        return False

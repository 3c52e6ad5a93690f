"""Starting the test cluster: etcd -> kube-apiserver -> controller-manager, scheduler -> kwok and
two fake nodes, every one a process on 127.0.0.1 in a temporary folder, as controller-runtime's
envtest does for the first two.

Each process runs in its own process group with PDEATHSIG (sandbox.processes.spawn), so
nothing outlives the test run even when pytest is SIGKILLed. Every wait is a condition with a
deadline; a component that exits early fails the start with the end of its log.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sandbox.processes import spawn, stop_groups, wait_until
from tests.k8senv import pki, stages
from tests.k8senv.nodelogs import NodeLogs

HERE = Path(__file__).resolve().parent
NODES = ("kwok-node-0", "kwok-node-1")
FENCE_METRIC = "4242"


@dataclass(frozen=True)
class Networks:
    """A cluster's made-up networks. Each test worker (``make test`` runs two) has a cluster of its
    own, on networks of its own: ``lane`` N takes 10.(244+N).0.0/16 for pods and 10.(96+N).0.0/16
    for Services, so two workers' pods that run for real (tests/k8senv/pods.py) never share an
    address or a route. While the cluster runs these answer "no route" at once on this machine
    instead of leaving it through the default route (a running pod's subnet gets a better route)."""

    lane: int = 0

    @classmethod
    def for_this_worker(cls) -> Networks:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")  # gw0, gw1, ... under pytest-xdist
        return cls(int(worker[2:]) if worker[2:].isdigit() else 0)

    @property
    def pods(self) -> str:
        return f"10.{244 + self.lane}.0.0/16"

    @property
    def services(self) -> str:
        return f"10.{96 + self.lane}.0.0/16"

    @property
    def nodes(self) -> str:  # kwok's default node addresses (ours answer on 127.0.0.1: node_manifest)
        return f"10.0.{self.lane}.0/24"

    @property
    def fenced(self) -> tuple[str, ...]:
        return (self.pods, self.services, self.nodes)
ISSUER = "https://kubernetes.default.svc.cluster.local"
CONTROLLERS = (  # what a cluster without kubelets needs: workloads, endpoints, service accounts, cleanup
    "deployment-controller", "replicaset-controller", "statefulset-controller", "daemonset-controller", "job-controller",
    "endpointslice-controller", "endpoints-controller", "serviceaccount-controller", "namespace-controller",
    "garbage-collector-controller", "pod-garbage-collector-controller", "root-ca-certificate-publisher-controller",
    "clusterrole-aggregation-controller",
    "node-lifecycle-controller",  # lifts the not-ready taint every new node is created with
)


class ClusterError(RuntimeError):
    pass


def binaries() -> Path:
    """The cache's bin folder for the versions pinned in tests/k8senv/go.mod (built or not)."""
    out = subprocess.run([str(HERE / "build"), "--print-bin"], capture_output=True, text=True)
    if out.returncode != 0:
        raise ClusterError(out.stderr.strip() or "tests/k8senv/build --print-bin failed")
    return Path(out.stdout.strip())


def missing_binaries() -> list[str]:
    try:
        folder = binaries()
    except (ClusterError, OSError):
        return ["go (to read tests/k8senv/go.mod)"]
    return [name for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok")
            if not (folder / name).is_file()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def kubeconfig(server: str, ca: Path, cert: Path, key: Path, user: str = "user") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Config", "current-context": "meshdojo-test",
            "clusters": [{"name": "meshdojo-test", "cluster": {"server": server, "certificate-authority": str(ca)}}],
            "users": [{"name": user, "user": {"client-certificate": str(cert), "client-key": str(key)}}],
            "contexts": [{"name": "meshdojo-test", "context": {"cluster": "meshdojo-test", "user": user}}]}


def write_private(path: Path, text: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return path


@dataclass
class Cluster:
    """A running test cluster. ``kubeconfig`` is the admin's (0600); ``client()`` an official
    ``kubernetes`` ApiClient for it; ``kubectl(...)`` runs the kubectl we built."""

    root: Path
    bin: Path
    version: str = ""
    server: str = ""
    kubeconfig: Path = field(default_factory=Path)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    started_in: float = 0.0
    node_logs: NodeLogs | None = None  # the nodes' kubelet API: container logs the pod runner registers
    networks: Networks = field(default_factory=Networks.for_this_worker)

    def log(self, component: str) -> Path:
        return self.root / "logs" / f"{component}.log"

    # -- start ---------------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> Cluster:
        began = time.monotonic()
        deadline = began + timeout
        fence(self.networks, True)
        files = pki.write_pki(self.root / "pki")
        self.version = subprocess.run([str(self.bin / "kube-apiserver"), "--version"], capture_output=True, text=True,
                                      check=True).stdout.split()[-1]
        etcd_url = self._start_etcd(deadline)
        port = free_port()
        self.server = f"https://127.0.0.1:{port}"
        configs = {}
        for component in pki.CLIENTS:
            config = kubeconfig(self.server, files["ca.crt"], files[f"{component}.crt"], files[f"{component}.key"], component)
            configs[component] = write_private(self.root / f"{component}.kubeconfig", yaml.safe_dump(config))
        self.kubeconfig = configs["admin"]
        self._spawn("kube-apiserver", [
            "--etcd-servers", etcd_url, "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
            "--secure-port", str(port), "--cert-dir", str(self.root / "apiserver-certs"),
            "--tls-cert-file", str(files["apiserver.crt"]), "--tls-private-key-file", str(files["apiserver.key"]),
            "--client-ca-file", str(files["ca.crt"]), "--authorization-mode", "Node,RBAC",
            "--service-account-issuer", ISSUER, "--service-account-key-file", str(files["sa.pub"]),
            "--service-account-signing-key-file", str(files["sa.key"]), "--api-audiences", ISSUER,
            "--service-cluster-ip-range", self.networks.services, "--allow-privileged", "--profiling=false",
            "--enable-priority-and-fairness=false", "--event-ttl", "10m",
            "--endpoint-reconciler-type", "none",  # the kubernetes Service would point at 127.0.0.1, which it refuses
            # the nodes' kubelet API is tests/k8senv/nodelogs.py on 127.0.0.1 (container logs), verified both ways
            "--kubelet-preferred-address-types", "InternalIP", "--kubelet-certificate-authority", str(files["ca.crt"]),
            "--kubelet-client-certificate", str(files["apiserver-kubelet-client.crt"]),
            "--kubelet-client-key", str(files["apiserver-kubelet-client.key"]),
        ])
        wait_until(lambda: self._alive("kube-apiserver") and self._readyz(), max(deadline - time.monotonic(), 1),
                   "the API server's /readyz")
        self._spawn("kube-controller-manager", [
            "--kubeconfig", str(configs["controller-manager"]), "--leader-elect=false", "--bind-address", "127.0.0.1",
            "--secure-port", "0", "--controllers", ",".join(CONTROLLERS),
            "--service-account-private-key-file", str(files["sa.key"]), "--root-ca-file", str(files["ca.crt"]),
            "--use-service-account-credentials=true", "--node-monitor-grace-period", "60s",
            "--concurrent-deployment-syncs", "5", "--concurrent-replicaset-syncs", "5", "--concurrent-service-endpoint-syncs", "5",
        ])
        self._spawn("kube-scheduler", ["--kubeconfig", str(configs["scheduler"]), "--leader-elect=false",
                                       "--bind-address", "127.0.0.1", "--secure-port", "0"])
        kwok_config = self.root / "kwok.yaml"
        kwok_config.write_text(yaml.safe_dump_all(stages.all_stages(self.version)))
        self._spawn("kwok", ["--kubeconfig", str(configs["kwok"]), "--config", str(kwok_config), "--cidr", self.networks.pods,
                             "--manage-all-nodes=false", "--manage-nodes-with-annotation-selector", "kwok.x-k8s.io/node=fake"])
        self.node_logs = NodeLogs(files["kubelet.crt"], files["kubelet.key"], files["ca.crt"]).start()
        for node in NODES:
            self.create(node_manifest(node, self.version, "127.0.0.1", self.node_logs.port))
        wait_until(lambda: self._all_alive() and self._nodes_ready(), max(deadline - time.monotonic(), 1), "two Ready kwok nodes")
        wait_until(lambda: self._default_service_account(), max(deadline - time.monotonic(), 1), "the default ServiceAccount")
        self.started_in = time.monotonic() - began
        return self

    def _start_etcd(self, deadline: float) -> str:
        client, peer = free_port(), free_port()
        url = f"http://127.0.0.1:{client}"
        self._spawn("etcd", [
            "--name", "test", "--data-dir", str(self.root / "etcd"), "--listen-client-urls", url, "--advertise-client-urls", url,
            "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"test=http://127.0.0.1:{peer}", "--unsafe-no-fsync", "--log-level", "warn",
            "--quota-backend-bytes", str(2 * 1024**3),
        ])

        def healthy() -> bool:
            self._alive("etcd")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=1) as rsp:
                    return json.loads(rsp.read()).get("health") == "true"
            except (OSError, ValueError):
                return False

        wait_until(healthy, max(deadline - time.monotonic(), 1), "etcd's /health")
        return url

    def _spawn(self, component: str, args: list[str]) -> None:
        self.procs[component] = spawn([str(self.bin / component), *args], self.log(component))

    def _alive(self, component: str) -> bool:
        proc = self.procs[component]
        if proc.poll() is not None:
            tail = self.log(component).read_text(errors="replace").strip().splitlines()[-15:]
            raise ClusterError(f"{component} exited with {proc.returncode}:\n" + "\n".join(tail))
        return True

    def _all_alive(self) -> bool:
        return all(self._alive(name) for name in self.procs)

    # -- talking to it -------------------------------------------------------------------
    def _ssl(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.root / "pki" / "ca.crt"))
        ctx.load_cert_chain(str(self.root / "pki" / "admin.crt"), str(self.root / "pki" / "admin.key"))
        return ctx

    def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.server + path, data=data, method=method, headers={"Content-Type": content_type})
        try:
            with urllib.request.urlopen(req, timeout=10, context=self._ssl()) as rsp:
                return rsp.status, json.loads(rsp.read() or b"null")
        except urllib.error.HTTPError as err:
            raw = err.read()
            try:
                return err.code, json.loads(raw)
            except ValueError:
                return err.code, raw.decode(errors="replace")

    def _readyz(self) -> bool:
        try:
            req = urllib.request.Request(self.server + "/readyz")
            with urllib.request.urlopen(req, timeout=2, context=self._ssl()) as rsp:
                return rsp.status == 200
        except (OSError, urllib.error.HTTPError):
            return False

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        kind = manifest["kind"]
        path = {"Node": "/api/v1/nodes"}.get(kind)
        if path is None:
            raise ValueError(f"create() only makes the fixture's own objects, not {kind}")
        status, body = self.request("POST", path, manifest)
        if status not in (200, 201, 409):
            raise ClusterError(f"creating {kind} {manifest['metadata']['name']}: {status} {body}")
        return body

    def _nodes_ready(self) -> bool:
        status, body = self.request("GET", "/api/v1/nodes")
        if status != 200:
            return False
        ready = {n["metadata"]["name"] for n in body["items"]
                 if any(c["type"] == "Ready" and c["status"] == "True" for c in n.get("status", {}).get("conditions", []))}
        return set(NODES) <= ready

    def _default_service_account(self) -> bool:
        status, _ = self.request("GET", "/api/v1/namespaces/default/serviceaccounts/default")
        return status == 200

    def client(self):
        """An ApiClient of the official ``kubernetes`` package, as the admin."""
        from kubernetes import config

        return config.new_client_from_config(str(self.kubeconfig))

    def kubectl(self, *args: str, input: str | None = None, check: bool = True, kubeconfig: Path | None = None
                ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(self.bin / "kubectl"), "--kubeconfig", str(kubeconfig or self.kubeconfig), *args],
                              input=input, capture_output=True, text=True, timeout=60)
        if check and proc.returncode != 0:
            raise ClusterError(f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    # -- stop ----------------------------------------------------------------------------
    def stop(self) -> None:
        order = ["kwok", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"]
        for group in (order[:3], order[3:4], order[4:]):
            stop_groups([self.procs[name] for name in group if name in self.procs], grace=5)
        self.procs.clear()
        if self.node_logs is not None:
            self.node_logs.close()
        fence(self.networks, False)


def fence(networks: Networks, up: bool) -> None:
    """Unreachable routes for the cluster's networks (root only; elsewhere a no-op: nothing is sent
    there unless a test sends it)."""
    if os.geteuid() != 0:
        return
    for cidr in networks.fenced:
        subprocess.run(["ip", "route", "replace" if up else "del", "unreachable", cidr, "metric", FENCE_METRIC],
                       capture_output=True, timeout=10)


def node_manifest(name: str, version: str, address: str, kubelet_port: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0",
                                                       "meshdojo.dev/node-ip": address,
                                                       "meshdojo.dev/kubelet-port": str(kubelet_port)},
                         "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                                    "type": "kwok"}},
            "spec": {}, "status": {"nodeInfo": {"kubeletVersion": version}}}

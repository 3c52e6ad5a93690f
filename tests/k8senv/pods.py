"""Pods that really run: what a kubelet does, for kwok's pods, in network namespaces.

kwok makes pods Running and Ready with an IP from its CIDR, but runs nothing. For the tests that
need real traffic on the cluster (tap, network faults, the wire view, the intruder), this runs a
pod's containers the way a kubelet would, from the pod as the API server stores it (so exactly
what the injector wrote):

    network      one namespace per pod with the pod's IP on its eth0; every pod's eth0 and one
                 veth of the host are ports of a bridge that lives in a namespace of its own (no
                 host firewall rule applies there: Docker's FORWARD DROP does not get in the way).
                 The host end holds ``host_ip`` (the pod CIDR's last usable address, never given
                 to a pod): the control plane beside the cluster listens
                 there, and the API server's Service name for it resolves there (the pod's
                 /etc/hosts, through ``ip netns exec``'s /etc/netns/<name>/ files)
    containers   init containers with ``restartPolicy: Always`` (native sidecars) first, then the
                 containers; command + args with ``$(VAR)`` expanded, env values and the
                 downward API's fieldRefs; the image is this checkout (its virtualenv first on
                 PATH, the image's WORKDIR ``demo-apps``)
    following    ``follow(namespaces)``: a thread that, like a kubelet's sync loop, starts each new
                 pod once kwok gave it an IP, stops each deleted one, and reports readiness: kwok
                 says Ready before anything runs, so the runner sets it back to not ready and
                 then to Ready when the containers' readinessProbes pass (the sidecar's /ready)
    volumes      projected ServiceAccount tokens (a TokenRequest bound to the pod, as the kubelet
                 asks for), ConfigMaps and the downward API's labels, mounted in a private mount
                 namespace per container (with a /run of its own) at the paths it expects

Everything is in ``ip`` and ``unshare`` (iproute2, util-linux) and needs root, as the tests that
use it say. Names carry this process's pid, so a run killed with SIGKILL is cleaned up by the next.
"""

from __future__ import annotations

import datetime as dt
import http.client
import ipaddress
import itertools
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.processes import pid_alive, spawn, stop_groups, wait_until

ROOT = Path(__file__).resolve().parents[2]
PREFIX_LEN = 16
PREFIX = "mdjt"
FOLLOW_EVERY = 0.2  # seconds between two looks at the API server's pods and the probes
START_ATTEMPTS = 3  # a pod whose start fails with an OSError this often is an error, not a hiccup
_NETWORKS = itertools.count(1)  # several pod networks in one test process, one after another


class PodNetError(RuntimeError):
    pass


def host_address(pod_cidr: str) -> str:
    """The address the host takes on the pod network: the CIDR's last usable one (kwok hands out
    pod IPs from the start)."""
    network = ipaddress.ip_network(pod_cidr)
    assert network.prefixlen == PREFIX_LEN, pod_cidr
    return str(network.broadcast_address - 1)


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def usable() -> str | None:
    """None when pods can run here; else why not."""
    if os.geteuid() != 0:
        return "running pods needs root (network namespaces)"
    missing = [tool for tool in ("ip", "unshare", "mount") if shutil.which(tool) is None]
    return f"running pods needs {', '.join(missing)}" if missing else None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise PodNetError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def remove_stale() -> None:
    """Namespaces of runs whose process is gone (a SIGKILLed test run)."""
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        found = re.fullmatch(rf"{PREFIX}(\d+)-\w+", name)
        if found and not pid_alive(int(found.group(1))):
            _ip("netns", "del", name, check=False)
            shutil.rmtree(f"/etc/netns/{name}", ignore_errors=True)


# -- what a container runs: pure functions of the pod ------------------------------------------

def _field(pod: dict[str, Any], path: str) -> str:
    meta, spec, status = pod["metadata"], pod["spec"], pod.get("status", {})
    known = {"metadata.name": meta["name"], "metadata.namespace": meta["namespace"], "metadata.uid": meta.get("uid", ""),
             "spec.serviceAccountName": spec.get("serviceAccountName", "default"), "spec.nodeName": spec.get("nodeName", ""),
             "status.podIP": status.get("podIP", "")}
    if path not in known:
        raise PodNetError(f"fieldRef {path} is not one this pod runner knows")
    return known[path]


def _expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)``: a defined variable is replaced, ``$$`` escapes, anything else stays."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), text)


def container_env(pod: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for var in container.get("env") or []:
        if "value" in var:
            env[var["name"]] = _expand(str(var["value"]), env)
        elif "fieldRef" in (var.get("valueFrom") or {}):
            env[var["name"]] = _field(pod, var["valueFrom"]["fieldRef"]["fieldPath"])
        else:
            raise PodNetError(f"env {var['name']}: only values and fieldRefs are supported by this pod runner")
    return env


def container_argv(container: dict[str, Any], env: dict[str, str]) -> list[str]:
    argv = [*(container.get("command") or []), *(container.get("args") or [])]
    if not argv:
        raise PodNetError(f"container {container['name']}: no command (the image's default is not known here)")
    return [_expand(a, env) for a in argv]


def labels_file(labels: dict[str, str]) -> str:
    """The downward API's format: one ``key="value"`` per line, sorted."""
    return "".join(f"{k}={json.dumps(v)}\n" for k, v in sorted(labels.items()))


@dataclass
class RunningPod:
    name: str
    namespace: str
    ip: str
    netns: str
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)  # container -> process
    probes: tuple[Probe, ...] = ()
    containers: tuple[str, ...] = ()  # the names the status reports readiness for
    ready: bool = False  # what this runner last reported for it


@dataclass(frozen=True)
class Probe:
    """A container's readinessProbe: ``path`` for httpGet, None for tcpSocket."""
    container: str
    port: int
    path: str | None


def readiness_probes(pod: dict[str, Any]) -> tuple[Probe, ...]:
    """Every container's readinessProbe (sidecars included), named ports resolved. A container
    without one is ready once it runs, as the kubelet has it."""
    spec = pod["spec"]
    out = []
    for container in [*(spec.get("initContainers") or []), *spec["containers"]]:
        probe = container.get("readinessProbe")
        if not probe:
            continue
        action = probe.get("httpGet") or probe.get("tcpSocket")
        if action is None:
            raise PodNetError(f"container {container['name']}: only httpGet and tcpSocket readiness probes here")
        port = action["port"]
        if isinstance(port, str):
            port = next(p["containerPort"] for p in container.get("ports") or [] if p.get("name") == port)
        out.append(Probe(container["name"], int(port), action.get("path", "/") if "httpGet" in probe else None))
    return tuple(out)


def container_names(pod: dict[str, Any]) -> tuple[str, ...]:
    return tuple(c["name"] for c in pod["spec"]["containers"])


def ready_patch(containers: tuple[str, ...], ready: bool, now: str) -> dict[str, Any]:
    """The pod status a kubelet reports when its readiness changes (a strategic merge patch);
    ``containers``: the pod's containers' names."""
    flag = "True" if ready else "False"
    return {"status": {
        "conditions": [{"type": kind, "status": flag, "lastTransitionTime": now} for kind in ("ContainersReady", "Ready")],
        "containerStatuses": [{"name": name, "ready": ready} for name in containers]}}


def patch_status(api_client: Any, namespace: str, name: str, body: dict[str, Any]) -> None:
    """A kubelet's status update (strategic merge: the other conditions stay)."""
    from kubernetes import client

    client.CoreV1Api(api_client).patch_namespaced_pod_status(name, namespace, body,
                                                             _content_type="application/strategic-merge-patch+json")


def probe_passes(probe: Probe, ip: str) -> bool:
    try:
        if probe.path is None:
            socket.create_connection((ip, probe.port), timeout=0.5).close()
            return True
        connection = http.client.HTTPConnection(ip, probe.port, timeout=0.5)
        try:
            connection.request("GET", probe.path)
            return 200 <= connection.getresponse().status < 400
        finally:
            connection.close()
    except OSError:
        return False


class PodNetwork:
    """The bridge, its host end and the pods run on it; ``close()`` removes all of it."""

    def __init__(self, root: Path, api_client: Any, pod_cidr: str, hosts: dict[str, str | None],
                 log_files: dict[tuple[str, str, str], Path] | None = None) -> None:
        """``hosts``: names every pod's /etc/hosts resolves (to ``host_ip`` when the value is None)."""
        self.root = root
        self.host_ip = host_address(pod_cidr)
        self._log_files = log_files if log_files is not None else {}  # the nodes' log server reads these
        self._api = api_client
        self._hosts = {name: address or self.host_ip for name, address in hosts.items()}  # for every pod's /etc/hosts
        self._id = f"{PREFIX}{os.getpid()}"
        k = next(_NETWORKS)
        self._net = f"{self._id}-net{k}"
        self._pod_prefix = f"{self._id}-n{k}p"
        self._host_if = f"mdjh{os.getpid() % 10**6}n{k}"
        self.pods: dict[str, RunningPod] = {}
        self._count = 0
        self._follower: threading.Thread | None = None
        self._stop_following = threading.Event()
        self.errors: list[str] = []  # pods the follower could not run, for the test to assert on
        self.hiccups: list[str] = []  # API calls and pod starts that failed once (retried by the next round)
        self._start_failures: dict[str, int] = {}  # pod -> OSErrors while starting it

    def __enter__(self) -> PodNetwork:
        remove_stale()
        # the kernel takes a deleted namespace's interfaces down in the background: the previous
        # network's host end may still hold the host address for a moment
        wait_until(lambda: not _ip("-o", "addr", "show", "to", self.host_ip).stdout.strip(), 20, f"{self.host_ip} to be free")
        try:
            _ip("netns", "add", self._net)
            _ip("-n", self._net, "link", "add", "br0", "type", "bridge")
            _ip("-n", self._net, "link", "set", "br0", "up")
            _ip("link", "add", self._host_if, "type", "veth", "peer", "name", "host", "netns", self._net)
            _ip("-n", self._net, "link", "set", "host", "master", "br0", "up")
            _ip("addr", "add", f"{self.host_ip}/{PREFIX_LEN}", "dev", self._host_if)
            _ip("link", "set", self._host_if, "up")
        except Exception:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- pods ---------------------------------------------------------------------------------
    def run(self, pod: dict[str, Any]) -> RunningPod:
        """Start the pod's containers (sidecars first) in a namespace with its IP."""
        meta = pod["metadata"]
        key = f"{meta['namespace']}/{meta['name']}"
        ip = pod.get("status", {}).get("podIP")
        if not ip:
            raise PodNetError(f"pod {key} has no IP yet")
        self._count += 1
        running = RunningPod(meta["name"], meta["namespace"], ip, f"{self._pod_prefix}{self._count}",
                             probes=readiness_probes(pod), containers=container_names(pod))
        self.pods[key] = running
        self._plumb(running)
        volumes = self._volumes(pod, self.root / running.netns)
        sidecars = [c for c in pod["spec"].get("initContainers") or [] if c.get("restartPolicy") == "Always"]
        for container in [*sidecars, *pod["spec"]["containers"]]:
            running.procs[container["name"]] = self._start(pod, running, container, volumes)
            self._log_files[(running.namespace, running.name, container["name"])] = self.root / running.netns / f"{container['name']}.log"
        return running

    def stop(self, running: RunningPod) -> None:
        stop_groups(list(running.procs.values()))
        _ip("netns", "del", running.netns, check=False)
        shutil.rmtree(f"/etc/netns/{running.netns}", ignore_errors=True)
        self.pods.pop(f"{running.namespace}/{running.name}", None)

    def follow(self, namespaces: set[str]) -> None:
        """Keep the namespaces' pods running as the API server changes them (as a kubelet does):
        a new pod with an IP starts, a deleted one stops — an inject, a scale or a kill rolls."""
        self._follower = threading.Thread(target=self._follow, args=(namespaces,), name="pod-follower", daemon=True)
        self._follower.start()

    def _follow(self, namespaces: set[str]) -> None:
        while not self._stop_following.wait(FOLLOW_EVERY):  # a kubelet's sync loop, shortened
            try:
                self.sync(namespaces)
                self.report_readiness()
            except Exception as exc:  # the API server busy or restarting: the next round tries again
                self.hiccups.append(f"{type(exc).__name__}: {exc}")

    def sync(self, namespaces: set[str]) -> None:
        """Run what the API server has and is not running; stop what it no longer has."""
        wanted = {f"{p['metadata']['namespace']}/{p['metadata']['name']}": p
                  for ns in sorted(namespaces) for p in pods_of(self._api, ns)}
        for key in [k for k in self.pods if k.split("/")[0] in namespaces and k not in wanted]:
            self.stop(self.pods[key])
        for key, pod in wanted.items():
            if key not in self.pods and self._start_failures.get(key, 0) < START_ATTEMPTS and pod.get("status", {}).get("podIP"):
                try:
                    # kwok said Ready before anything ran: not until the probes pass, as a kubelet has it
                    patch_status(self._api, pod["metadata"]["namespace"], pod["metadata"]["name"],
                                 ready_patch(container_names(pod), False, now_rfc3339()))
                    self.run(pod)
                except PodNetError as exc:  # what this runner cannot do: another round would not help
                    self.errors.append(f"{key}: {exc}")
                except OSError as exc:
                    self._undo(key, exc)

    def _undo(self, key: str, exc: OSError) -> None:
        """A pod that failed to start on an ``OSError``: a spawn can fail once (EFAULT from a fork
        while other threads are busy was seen in CI), so stop what was half made and let the next
        round start it again; a pod that keeps failing is an error."""
        failures = self._start_failures[key] = self._start_failures.get(key, 0) + 1
        if key in self.pods:
            self.stop(self.pods[key])
        if failures >= START_ATTEMPTS:
            self.errors.append(f"{key}: {exc} ({failures} attempts)")
        else:
            self.hiccups.append(f"{key}: {exc} (attempt {failures}, retried)")

    def report_readiness(self) -> None:
        """Each pod not yet reported ready whose containers run and whose probes pass: Ready."""
        for running in [p for p in list(self.pods.values()) if not p.ready]:
            started = all(proc.poll() is None for proc in running.procs.values())
            if started and all(probe_passes(probe, running.ip) for probe in running.probes):
                patch_status(self._api, running.namespace, running.name, ready_patch(running.containers, True, now_rfc3339()))
                running.ready = True


    def close(self) -> None:
        self._stop_following.set()
        if self._follower is not None:
            self._follower.join(timeout=30)
        for running in list(self.pods.values()):
            self.stop(running)
        _ip("netns", "del", self._net, check=False)  # takes the bridge and both ends of the host's veth

    def log(self, pod: str, container: str) -> str:
        running = next(p for key, p in self.pods.items() if key.endswith(f"/{pod}"))
        path = self.root / running.netns / f"{container}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _plumb(self, pod: RunningPod) -> None:
        ns, peer = pod.netns, f"{pod.netns.rsplit('-', 1)[1]}-{os.getpid() % 10**6}"
        _ip("netns", "add", ns)
        _ip("-n", self._net, "link", "add", peer, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _ip("-n", self._net, "link", "set", peer, "master", "br0", "up")
        _ip("-n", ns, "addr", "add", f"{pod.ip}/{PREFIX_LEN}", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        etc = Path("/etc/netns") / ns
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "hosts").write_text("127.0.0.1 localhost\n" + "".join(f"{a} {n}\n" for n, a in self._hosts.items()))

    # -- volumes and containers ------------------------------------------------------------------
    def _volumes(self, pod: dict[str, Any], where: Path) -> dict[str, Path]:
        """Each volume of the pod as a directory (name -> path)."""
        from kubernetes import client

        meta, spec = pod["metadata"], pod["spec"]
        core = client.CoreV1Api(self._api)
        made: dict[str, Path] = {}
        for volume in spec.get("volumes") or []:
            path = where / "volumes" / volume["name"]
            path.mkdir(parents=True, exist_ok=True)
            if "projected" in volume:
                for source in volume["projected"]["sources"]:
                    sat = source.get("serviceAccountToken")
                    if sat is None:
                        continue
                    request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(
                        audiences=[sat["audience"]] if sat.get("audience") else [],
                        expiration_seconds=sat.get("expirationSeconds", 3600),
                        bound_object_ref=client.V1BoundObjectReference(kind="Pod", api_version="v1", name=meta["name"],
                                                                        uid=meta["uid"])))
                    token = core.create_namespaced_service_account_token(spec.get("serviceAccountName", "default"),
                                                                         meta["namespace"], request)
                    (path / sat["path"]).write_text(token.status.token)
            elif "configMap" in volume:
                data = core.read_namespaced_config_map(volume["configMap"]["name"], meta["namespace"]).data or {}
                for key, value in data.items():
                    (path / key).write_text(value)
            elif "downwardAPI" in volume:
                for item in volume["downwardAPI"]["items"]:
                    if item["fieldRef"]["fieldPath"] != "metadata.labels":
                        raise PodNetError(f"downwardAPI {item['fieldRef']['fieldPath']} is not supported by this pod runner")
                    (path / item["path"]).write_text(labels_file(meta.get("labels") or {}))
            elif "emptyDir" not in volume:
                raise PodNetError(f"volume {volume['name']}: only projected tokens, ConfigMaps, downwardAPI and emptyDir here")
            made[volume["name"]] = path
        return made

    def _start(self, pod: dict[str, Any], running: RunningPod, container: dict[str, Any],
               volumes: dict[str, Path]) -> subprocess.Popen[bytes]:
        env = container_env(pod, container)
        argv = container_argv(container, env)
        # a private mount namespace: this container's volumes at the paths it expects, nowhere else
        mounts = " && ".join(f"mkdir -p {shlex.quote(m['mountPath'])} && mount --bind {shlex.quote(str(volumes[m['name']]))} "
                             f"{shlex.quote(m['mountPath'])}" for m in container.get("volumeMounts") or [])
        # /run of its own (a container's is not the host's): mount points made there vanish with the container
        script = f"mount -t tmpfs -o mode=0755 tmpfs /run && {mounts + ' && ' if mounts else ''}exec \"$@\""
        full_env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(self.root),
                    "PYTHONUNBUFFERED": "1", "HOSTNAME": running.name, **env}
        return spawn(["ip", "netns", "exec", running.netns, "unshare", "--mount", "--propagation", "private",
                      "sh", "-c", script, "sh", *argv], self.root / running.netns / f"{container['name']}.log",
                     env=full_env, cwd=ROOT / "demo-apps")


def pods_of(api_client: Any, namespace: str) -> list[dict[str, Any]]:
    """The namespace's pods as the API server stores them (dicts in the API's own field names)."""
    from kubernetes import client

    raw = client.CoreV1Api(api_client).list_namespaced_pod(namespace, _preload_content=False)
    return [p for p in json.loads(raw.data)["items"] if not p["metadata"].get("deletionTimestamp")]


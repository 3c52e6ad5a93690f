"""The clusters meshdojo makes (kind, minikube) or uses (an existing context): their command
lines, and what their failures mean for the learner.

We own only the command lines, so this module is argv builders (pure), one runner (injected,
``subprocess.run`` by default) and :func:`hint_for`, which turns a tool's failure output into
the fix. Each provider: ``exists``, ``create``, ``delete``, ``load_image`` and the kubeconfig
context it leaves.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sandbox.errors import SandboxError

# kind's node image, pinned (kind's own release notes list the digests); MESHDOJO_KIND_NODE_IMAGE overrides
KIND_NODE_IMAGE = "kindest/node:v1.33.1"
MINIKUBE_MEMORY_MB = 4096
# the demos' ingress gateways: a NodePort on the node, published on the host (kind's extraPortMappings, minikube's --ports)
GATEWAY_PORTS = {"emojivoto": (30080, 8080), "bookinfo": (30980, 9080)}
GATEWAY_TLS_PORTS = {"emojivoto": (30443, 8443), "bookinfo": (30943, 9443)}  # their TLS ports: the Gateways' HTTPS listeners


def published_ports() -> list[tuple[int, int]]:
    """(node port, host port) of every port the cluster config publishes on the host."""
    return [*GATEWAY_PORTS.values(), *GATEWAY_TLS_PORTS.values()]


@dataclass(frozen=True)
class Ran:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return f"{self.stdout}\n{self.stderr}"


Runner = Callable[[list[str], float], Ran]


def run_command(argv: list[str], timeout: float) -> Ran:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        return Ran(argv, 127, "", f"{argv[0]}: executable file not found in $PATH")
    except subprocess.TimeoutExpired as exc:
        return Ran(argv, 124, str(exc.stdout or ""), f"{argv[0]} did not finish within {timeout:g} s")
    return Ran(argv, done.returncode, done.stdout, done.stderr)


class ProviderError(SandboxError):
    """A cluster tool failed; the message is the fix (and the tool's last words)."""


def cluster_name(sandbox: str) -> str:
    return f"meshdojo-{sandbox}"


def hint_for(tool: str, name: str, ran: Ran) -> str:
    """What a failed ``kind``/``minikube``/``docker`` run means, and what to do."""
    out = ran.output
    low = out.lower()
    last = "\n".join(f"  {line}" for line in out.strip().splitlines()[-4:])
    if ran.returncode == 127 or "executable file not found" in low or "command not found" in low:
        install = {"kind": "https://kind.sigs.k8s.io/docs/user/quick-start/#installation",
                   "minikube": "https://minikube.sigs.k8s.io/docs/start/", "kubectl": "https://kubernetes.io/docs/tasks/tools/"}
        return f"{tool} is not installed (or not on PATH): install it ({install.get(tool, tool)}), or use --backend local"
    if "already exist for a cluster with the name" in low or ("already exists" in low and tool == "kind"):
        return (f"a kind cluster named {name} exists already: `meshdojo up --backend context=kind-{name}` installs into it, "
                f"or delete it first: kind delete cluster --name {name}")
    if any(s in low for s in ("cannot connect to the docker daemon", "failed to connect to the docker api",
                              "provider_docker_not_running", "docker_not_running", "is the docker daemon running",
                              "drv_not_healthy", "permission denied while trying to connect to the docker")):
        return (f"{tool} cannot reach Docker: start the Docker engine (Docker Desktop, or `sudo systemctl start docker`), "
                "and check `docker info` works for your user\n" + last)
    if any(s in low for s in ("rsrc_insufficient", "out of memory", "oomkilled", "exit status 137", "not enough memory",
                              "requested memory allocation")):
        return (f"{tool}: Docker has too little memory for a cluster: give Docker at least {MINIKUBE_MEMORY_MB // 1024} GB "
                "(Docker Desktop → Settings → Resources) and close what you can, or use --backend local\n" + last)
    if any(s in low for s in ("failed to pull image", "error pulling image", "pull access denied", "manifest unknown",
                              "unable to find image", "i/o timeout", "no such host")):
        return (f"{tool} could not pull an image (no registry reachable?): `docker pull` it where one is reachable, or use "
                "--backend local\n" + last)
    if "port is already allocated" in low or "address already in use" in low:
        return (f"{tool}: a host port the demos' gateways use is taken ({', '.join(str(h) for _, h in published_ports())}); "
                "stop what listens there (`ss -ltnp`)\n" + last)
    return f"{tool} failed (exit status {ran.returncode}):\n{last}"


# -- kind -----------------------------------------------------------------------------------------

def kind_config(name: str) -> dict[str, Any]:
    """One control-plane node; the gateways' NodePorts published on the host's ports."""
    return {
        "kind": "Cluster", "apiVersion": "kind.x-k8s.io/v1alpha4", "name": name,
        "nodes": [{"role": "control-plane",
                   "extraPortMappings": [{"containerPort": node, "hostPort": host, "listenAddress": "127.0.0.1", "protocol": "TCP"}
                                         for node, host in published_ports()]}],
    }


@dataclass
class Kind:
    name: str
    workdir: Path
    run: Runner = run_command
    node_image: str = os.environ.get("MESHDOJO_KIND_NODE_IMAGE", KIND_NODE_IMAGE)
    creates = True

    @property
    def context(self) -> str:
        return f"kind-{self.name}"

    def _check(self, ran: Ran) -> Ran:
        if ran.returncode != 0:
            raise ProviderError(hint_for("kind", self.name, ran))
        return ran

    def exists(self) -> bool:
        ran = self._check(self.run(["kind", "get", "clusters"], 60))
        return self.name in ran.stdout.split()

    def create_argv(self, config: Path) -> list[str]:
        return ["kind", "create", "cluster", "--name", self.name, "--config", str(config), "--image", self.node_image, "--wait", "120s"]

    def create(self) -> None:
        config = self.workdir / "kind-config.yaml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(yaml.safe_dump(kind_config(self.name), sort_keys=False))
        self._check(self.run(self.create_argv(config), 600))

    def delete(self) -> None:
        self._check(self.run(["kind", "delete", "cluster", "--name", self.name], 300))

    def load_argv(self, image: str | None = None, archive: Path | None = None) -> list[str]:
        if archive is not None:
            return ["kind", "load", "image-archive", str(archive), "--name", self.name]
        return ["kind", "load", "docker-image", str(image), "--name", self.name]

    def load_image(self, image: str | None = None, archive: Path | None = None) -> None:
        self._check(self.run(self.load_argv(image, archive), 600))


# -- minikube -------------------------------------------------------------------------------------

@dataclass
class Minikube:
    name: str
    workdir: Path
    run: Runner = run_command
    memory_mb: int = MINIKUBE_MEMORY_MB
    creates = True

    @property
    def context(self) -> str:
        return self.name

    def _check(self, ran: Ran) -> Ran:
        if ran.returncode != 0:
            raise ProviderError(hint_for("minikube", self.name, ran))
        return ran

    def exists(self) -> bool:
        ran = self.run(["minikube", "profile", "list", "-o", "json"], 60)
        if ran.returncode != 0 and "no minikube profile was found" in ran.output.lower():
            return False
        self._check(ran)
        try:
            profiles = json.loads(ran.stdout or "{}")
        except ValueError:
            return False
        return any(p.get("Name") == self.name for group in ("valid", "invalid") for p in profiles.get(group) or [])

    def create_argv(self) -> list[str]:
        ports = [f"--ports=127.0.0.1:{host}:{node}" for node, host in published_ports()]
        return ["minikube", "start", "-p", self.name, "--driver=docker", f"--memory={self.memory_mb}", "--wait=all", *ports]

    def create(self) -> None:
        self._check(self.run(self.create_argv(), 900))

    def delete(self) -> None:
        self._check(self.run(["minikube", "delete", "-p", self.name], 300))

    def load_argv(self, image: str | None = None, archive: Path | None = None) -> list[str]:
        return ["minikube", "-p", self.name, "image", "load", str(archive if archive is not None else image)]

    def load_image(self, image: str | None = None, archive: Path | None = None) -> None:
        self._check(self.run(self.load_argv(image, archive), 600))


# -- an existing cluster --------------------------------------------------------------------------

@dataclass
class ExistingContext:
    """A cluster the user already has: meshdojo installs into it and never deletes it."""

    context_name: str | None
    creates = False

    @property
    def context(self) -> str | None:
        return self.context_name

    def exists(self) -> bool:
        return True

    def create(self) -> None:  # pragma: no cover - never called: it exists
        raise ProviderError("meshdojo does not create clusters for --backend context")

    def delete(self) -> None:
        raise ProviderError("meshdojo never deletes a cluster it did not create")

    def load_image(self, image: str | None = None, archive: Path | None = None) -> None:
        """Nothing to do: the cluster pulls the image (a registry it reaches) or already has it."""


def provider_for(kind: str, sandbox: str, workdir: Path, context: str | None, run: Runner = run_command) -> Kind | Minikube | ExistingContext:
    if kind == "kind":
        return Kind(cluster_name(sandbox), workdir, run)
    if kind == "minikube":
        return Minikube(cluster_name(sandbox), workdir, run)
    return ExistingContext(context)

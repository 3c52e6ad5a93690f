"""The seam between what a learner asks for (the CLI, the terminal UI) and where the mesh runs.

One protocol, :class:`Backend`; :func:`backend_for` gives the one a sandbox uses (the choice is
remembered per sandbox: :mod:`sandbox.backends.choice`). ``local`` (plain processes, the embedded
default) is :class:`~sandbox.backends.local.LocalBackend`; the Kubernetes backends (kind,
minikube, an existing context) are :class:`~sandbox.backends.kube.KubeBackend`. The UI and the
CLI never reach past it for lifecycle, workloads or the operator API's address.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from sandbox.backends.choice import BackendChoice, resolve
from sandbox.cpapi import OperatorApi

Status = dict[str, Any]  # what `meshdojo status -o json` prints: workloads, deployments, control plane, gateways


class Backend(Protocol):
    kind: str  # "local", "kind", "minikube", "context"
    sandbox: str  # the sandbox's name (--name)

    # -- lifecycle
    def up(self, demos: list[str], cert_lifetime: str, say: Callable[[str], None] = print,
           own_ca: Any = None, new_ca: bool = False) -> Status: ...  # own_ca: the learner's CA, a checked sandbox.kube.install.Pki
    def down(self) -> bool: ...
    def status(self) -> Status | None: ...
    def carried_over(self) -> list[str]: ...
    def forget(self) -> None: ...

    # -- workloads
    def scale(self, deployment: str, namespace: str | None, replicas: int) -> tuple[str, str]: ...
    def set_injected(self, deployment: str, namespace: str | None, inject: bool) -> tuple[str, str]: ...
    def wait_until(self, predicate: Callable[[Status], bool], timeout: float = 60.0) -> Status: ...
    def kill(self, target: str, namespace: str | None, proxy: bool = False) -> list[Any]: ...  # pids, or pods deleted
    def has_sidecar(self, target: str, namespace: str | None) -> bool: ...
    def log_file(self, target: str, namespace: str | None, proxy: bool) -> Path: ...

    # -- manifests: a learner's own Deployments, Services, ServiceAccounts and Namespaces
    def apply_workloads(self, entries: list[dict[str, Any]]) -> Callable[[], list[tuple[tuple[str, str, str], str]]]: ...
    def delete_workloads(self, documents: list[dict[str, Any]]) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]: ...

    # -- TLS Secrets (a Gateway's HTTPS listeners): checked already (controlplane.tlssecrets.read_secret)
    def apply_secrets(self, documents: list[dict[str, Any]]) -> list[tuple[tuple[str, str, str], str]]: ...
    def delete_secret(self, namespace: str, name: str) -> bool: ...

    # -- the control plane
    def operator_api(self) -> OperatorApi: ...


def backend_for(sandbox: str, choice: BackendChoice | None = None) -> Backend:
    """The backend of sandbox ``sandbox``: ``choice``, else the one it remembers (or
    ``$MESHDOJO_BACKEND``, else local)."""
    from sandbox.paths import SandboxPaths

    choice = choice or resolve(SandboxPaths.for_name(sandbox).root, None)
    if choice.kind == "local":
        from sandbox.backends.local import LocalBackend

        return LocalBackend(sandbox)
    from sandbox.backends.kube import KubeBackend

    return KubeBackend(sandbox, choice)

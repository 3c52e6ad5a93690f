"""The seam between what a learner asks for (the CLI, the terminal UI) and where the mesh runs.

One protocol, :class:`Backend`; :func:`backend_for` gives the one a sandbox uses. ``local``
(plain processes, the embedded default) is :class:`~sandbox.backends.local.LocalBackend`; the
Kubernetes backends (kind, minikube, an existing context) implement the same protocol. The UI
and the CLI never reach past it for lifecycle, workloads or the operator API's address.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from sandbox.cpapi import OperatorApi

Status = dict[str, Any]  # what `meshdojo status -o json` prints: workloads, deployments, control plane, gateways
BACKENDS = ("local",)


class BackendError(RuntimeError):
    """Something the learner can act on; the message says how."""


class Backend(Protocol):
    kind: str  # "local", ...
    sandbox: str  # the sandbox's name (--name)

    # -- lifecycle
    def up(self, demos: list[str], cert_lifetime: str) -> Status: ...
    def down(self) -> bool: ...
    def status(self) -> Status | None: ...
    def carried_over(self) -> list[str]: ...
    def forget(self) -> None: ...

    # -- workloads
    def scale(self, deployment: str, namespace: str | None, replicas: int) -> tuple[str, str]: ...
    def set_injected(self, deployment: str, namespace: str | None, inject: bool) -> tuple[str, str]: ...
    def wait_until(self, predicate: Callable[[Status], bool], timeout: float = 60.0) -> Status: ...
    def kill(self, target: str, namespace: str | None, proxy: bool = False) -> list[int]: ...
    def has_sidecar(self, target: str, namespace: str | None) -> bool: ...
    def log_file(self, target: str, namespace: str | None, proxy: bool) -> Path: ...

    # -- manifests: a learner's own Deployments, Services, ServiceAccounts and Namespaces
    def apply_workloads(self, entries: list[dict[str, Any]]) -> Callable[[], list[tuple[tuple[str, str, str], str]]]: ...
    def delete_workloads(self, documents: list[dict[str, Any]]) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]: ...

    # -- the control plane
    def operator_api(self) -> OperatorApi: ...


def backend_for(sandbox: str, kind: str = "local") -> Backend:
    """The backend of sandbox ``sandbox``."""
    if kind == "local":
        from sandbox.backends.local import LocalBackend

        return LocalBackend(sandbox)
    raise BackendError(f"unknown backend {kind!r}; choose from {', '.join(BACKENDS)}")

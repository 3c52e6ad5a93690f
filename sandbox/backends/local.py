"""The local backend: the mesh as plain processes under a supervisor (see docs/local-backend.md).

A thin adapter: the work is done by :mod:`sandbox.local` (starting and stopping the
supervisor, desired state, kill, logs) and :mod:`sandbox.applied` (a learner's own workloads),
whose behaviour is unchanged by the seam."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sandbox import applied, local
from sandbox.backends import Status
from sandbox.cpapi import OperatorApi
from sandbox.paths import SandboxPaths


class LocalBackend:
    kind = "local"

    def __init__(self, sandbox: str) -> None:
        self.sandbox = sandbox
        self.paths = SandboxPaths.for_name(sandbox)

    # -- lifecycle
    def up(self, demos: list[str], cert_lifetime: str, say: Callable[[str], None] = print,
           own_ca: Any = None, new_ca: bool = False) -> Status:
        return local.up(self.sandbox, demos, cert_lifetime, own_ca=own_ca, new_ca=new_ca)

    def down(self) -> bool:
        return local.down(self.sandbox)

    def status(self) -> Status | None:
        return local.status(self.sandbox)

    def carried_over(self) -> list[str]:
        return local.carried_over(self.sandbox)

    def forget(self) -> None:
        local.forget(self.sandbox)

    # -- workloads
    def scale(self, deployment: str, namespace: str | None, replicas: int) -> tuple[str, str]:
        return local.set_desired(self.sandbox, deployment, namespace, replicas=replicas)

    def set_injected(self, deployment: str, namespace: str | None, inject: bool) -> tuple[str, str]:
        return local.set_desired(self.sandbox, deployment, namespace, inject=inject)

    def wait_until(self, predicate: Callable[[Status], bool], timeout: float = 60.0) -> Status:
        return local.wait_ready(self.sandbox, predicate, timeout)

    def kill(self, target: str, namespace: str | None, proxy: bool = False) -> list[int]:
        return local.kill(self.sandbox, target, namespace, proxy)

    def has_sidecar(self, target: str, namespace: str | None) -> bool:
        return local.has_sidecar(self.sandbox, target, namespace)

    def log_file(self, target: str, namespace: str | None, proxy: bool) -> Path:
        return local.log_file(self.sandbox, target, namespace, proxy)

    # -- manifests
    def apply_workloads(self, entries: list[dict[str, Any]]) -> Callable[[], list[tuple[tuple[str, str, str], str]]]:
        """Validate now (raises ManifestError or AppliedError, naming file, document and field);
        the returned commit makes it so (the supervisor runs what the file now holds)."""
        merged, results = applied.merge(applied.load(self.paths.root), entries, local.demos_of(self.sandbox), self.paths.root)

        def commit() -> list[tuple[tuple[str, str, str], str]]:
            applied.save(self.paths.root, merged)
            return results

        return commit

    def delete_workloads(self, documents: list[dict[str, Any]]) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
        kept, removed, absent = applied.remove(applied.load(self.paths.root), documents)
        applied.save(self.paths.root, kept)
        return removed, absent

    def apply_secrets(self, documents: list[dict[str, Any]]) -> list[tuple[tuple[str, str, str], str]]:
        """To the control plane, which keeps them (0600) and gives each to its namespace's gateway."""
        api = self.operator_api()
        out = []
        for doc in documents:
            answer = api.call("POST", "/v1/secrets", {"document": doc, "namespace": doc["metadata"].get("namespace", "default")})
            out.append((("Secret", answer["secret"]["namespace"], answer["secret"]["name"]), answer["action"]))
        return out

    def delete_secret(self, namespace: str, name: str) -> bool:
        from sandbox.cpapi import ApiError

        try:
            self.operator_api().call("DELETE", f"/v1/secrets/{namespace}/{name}")
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def annotate_service(self, namespace: str, name: str, annotations: dict[str, str], before: dict[str, str]) -> None:
        """Set a Service's Linkerd annotations to ``annotations`` (the registry is the Service here)."""
        self.operator_api().call("PUT", f"/v1/services/{namespace}/{name}/annotations", {"annotations": annotations})

    # -- the control plane
    def operator_api(self) -> OperatorApi:
        if local.status(self.sandbox) is None:
            raise local.SandboxError(f"sandbox {self.sandbox!r} is not running; start it with 'meshdojo up --name {self.sandbox}'")
        return OperatorApi.from_state(self.paths.controlplane)

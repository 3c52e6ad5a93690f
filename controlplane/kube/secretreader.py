"""The TLS Secrets a cluster's Gateways name, read one by one into the control plane's
SecretStore (controlplane/tlssecrets.py), which gives each to its namespace's gateway.

Least privilege: the control plane may ``get`` Secrets only in the namespaces where meshdojo
runs an ingress gateway (a Role there, sandbox/kube/gateways.py) — never list or watch them, and
never another namespace's. So it reads the named ones again when a Gateway changes, and every
``every`` seconds for a Secret created or rotated later (``kubectl create secret tls``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from controlplane.gatewayapi import SECRET_KINDS, secret_keys
from controlplane.policystore import PolicyStore
from controlplane.tlssecrets import Key, SecretError, SecretStore, TlsSecret, read_secret

log = logging.getLogger("meshdojo.controlplane.kube.secrets")
REREAD_SECONDS = 5.0


def wanted(policies: PolicyStore) -> set[Key]:
    """(namespace, name) of every Secret a Gateway's HTTPS listener, or an Ingress's tls, names."""
    return secret_keys(r for kind in SECRET_KINDS for r, _ in policies.list(kind))


def from_object(obj: dict[str, Any]) -> TlsSecret:
    """A Secret as the API server returns it (``data`` base64), checked as the gateway will load
    it: the same forms as a Secret applied locally (``kubectl create secret tls``, or ``generic``
    with tls.crt, tls.key and ca.crt for mutual TLS, as Istio's task makes it)."""
    meta = obj.get("metadata") or {}
    return read_secret({**obj, "kind": "Secret"}, "cluster", meta.get("namespace") or "default")


class ClusterSecrets:
    def __init__(self, api_client: Any, policies: PolicyStore, store: SecretStore, on_change: Callable[[], None],
                 every: float = REREAD_SECONDS) -> None:
        self._api = api_client
        self._on_change = on_change
        self._policies = policies
        self._store = store
        self._every = every
        self._poked = asyncio.Event()
        self._said: dict[Key, str] = {}  # what was last said of each Secret that could not be served: said once
        self._task: asyncio.Task | None = None

    def poke(self) -> None:
        """A Gateway changed: read the Secrets now."""
        self._poked.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="kube:secrets")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        while True:
            self._poked.clear()
            try:
                version = self._store.version
                self._store.replace(await asyncio.to_thread(self.read))
                if self._store.version != version:  # the Gateways' listeners' ResolvedRefs may have changed
                    self._on_change()
            except Exception as exc:  # the API server away for a moment: keep what was read, try again
                log.warning("could not read the Gateways' TLS Secrets: %s", exc)
            try:
                await asyncio.wait_for(self._poked.wait(), self._every)
            except TimeoutError:
                pass

    def read(self) -> dict[Key, TlsSecret]:
        from kubernetes import client

        core = client.CoreV1Api(self._api)
        found = {}
        for namespace, name in sorted(wanted(self._policies)):
            try:
                obj = self._api.sanitize_for_serialization(core.read_namespaced_secret(name, namespace))
                found[(namespace, name)] = from_object(obj)
                self._said.pop((namespace, name), None)
            except client.ApiException as exc:
                if exc.status not in (403, 404):
                    raise
                why = ("not there (yet)" if exc.status == 404 else
                       f"not readable: meshdojo reads Secrets only in the namespaces of its ingress gateways (403 in {namespace})")
                self._say((namespace, name), f"Secret {namespace}/{name}, which a Gateway names, is {why}")
            except SecretError as exc:
                self._say((namespace, name), f"cannot serve {exc}")
        return found

    def _say(self, key: Key, message: str) -> None:
        if self._said.get(key) != message:
            log.warning("%s", message)
        self._said[key] = message

"""Running the control plane: both listeners, the state files, and clean shutdown."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
from pathlib import Path

from aiohttp import web

from controlplane import ca, castore
from controlplane.api import build_api
from controlplane.config import ControlPlaneConfig
from controlplane.identity import IdentityService, utcnow
from controlplane.jwks import JwksResolver
from controlplane.jwtissuer import DemoIssuer
from controlplane.meshapi import build_mesh_api
from controlplane.policystore import PolicyStore
from controlplane.registry import Registry
from controlplane.relay import RelayManager
from controlplane.scraper import Telemetry
from controlplane.spiffe import LOCAL_CONTROLPLANE
from controlplane.sslcontext import server_context
from controlplane.statefiles import private_dir, read_json, write_json, write_private
from controlplane.tlssecrets import SecretStore

log = logging.getLogger("meshdojo.controlplane")
STATE_FILE = "controlplane.json"
REGISTRY_FILE = "registry.json"
POLICIES_FILE = "policies.json"
NETFAULTS_FILE = "netfaults.json"
SECRETS_FILE = "tls-secrets.json"  # 0600, as every state file: it holds private keys
ADMIN_TOKEN_FILE = "admin-token"


def load_or_create_admin_token(state_dir: Path) -> str:
    path = state_dir / ADMIN_TOKEN_FILE
    if path.exists():
        os.chmod(path, 0o600)
        return path.read_text().strip()
    token = secrets.token_urlsafe(32)
    write_private(path, token + "\n")
    return token


class ControlPlane:
    """The control plane as an object: ``await start()``, use the ports, ``await stop()``."""

    def __init__(self, config: ControlPlaneConfig) -> None:
        self.config = config
        self.registry = Registry(on_change=self._save_registry)
        self._registry_file = config.state_dir / REGISTRY_FILE
        self.policies = PolicyStore(on_change=self._save_policies, selectors=self.registry.selectors, annotations=self.registry.annotations)
        self.issuer = DemoIssuer()  # the sandbox's own JWT issuer (meshdojo jwt)
        self.jwks = JwksResolver(self.policies, self.issuer)  # RequestAuthentication keys, for the sidecars
        self.policies.keys = self.jwks.snapshot
        self._resolver: asyncio.Task | None = None
        self._pushed: tuple = ({}, {})  # the services' (selectors, annotations) the last snapshot had
        self._policies_file = config.state_dir / POLICIES_FILE
        self.secrets = SecretStore(on_change=self._save_secrets)  # the TLS Secrets of Gateways' HTTPS listeners
        self._secrets_file = config.state_dir / SECRETS_FILE
        self._expiry: asyncio.Task | None = None
        self.telemetry = Telemetry()
        self.relays = RelayManager(self.registry, self.telemetry.deployment_of, on_change=self._save_netfaults,
                                   listen=config.host, advertised=config.relay_address)
        self.registry.redirector = self.relays.redirect
        self._netfaults_file = config.state_dir / NETFAULTS_FILE
        self._scraper: asyncio.Task | None = None
        self._runners: list[web.AppRunner] = []
        self.api_port = 0
        self.mesh_port = 0
        self.kube = None  # Kubernetes mode (controlplane.kube.mode.KubernetesMode): the cluster is the source of truth
        if config.kubernetes is not None:
            from controlplane.kube.mode import KubernetesMode

            self.kube = KubernetesMode(config.kubernetes, self.registry, self.policies, self.telemetry, self.secrets)
        self.own_identity = self.kube.identity if self.kube is not None else LOCAL_CONTROLPLANE

    async def start(self) -> None:
        state_dir = private_dir(self.config.state_dir)
        if self.kube is None and self._registry_file.exists():  # a restarted control plane serves what it served before
            try:
                self.registry.load_json(read_json(self._registry_file))
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("ignoring unreadable %s (%s): services must be registered again", self._registry_file, exc)
        if self.kube is None and self._policies_file.exists():
            try:
                self.policies.restore(read_json(self._policies_file))
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("ignoring unreadable %s (%s): policies must be applied again", self._policies_file, exc)
        if self.kube is None and self._secrets_file.exists():
            try:
                self.secrets.restore(read_json(self._secrets_file))
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("ignoring unreadable %s (%s): TLS Secrets must be created again", self._secrets_file, exc)
        if self._netfaults_file.exists():
            try:
                self.relays.restore(read_json(self._netfaults_file))
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("ignoring unreadable %s (%s): network faults are gone", self._netfaults_file, exc)
        await self.relays.reconcile()
        if self.kube is not None:  # the issuer from its Secret; identities from TokenReviews; the rest from watches
            material = await self.kube.material()
            self.identity = IdentityService(material, self.config.leaf_lifetime, authenticate=self.kube.reviewer.authenticate)
            await self.kube.start(material, self.config.host)
        else:
            material = castore.load_or_create(state_dir, utcnow())
            self.identity = IdentityService(material, self.config.leaf_lifetime)
        # in a cluster, the token install keeps in a Secret (so `meshdojo` on the user's machine can read it)
        admin_token = (await self.kube.operator_token() if self.kube is not None else None) or load_or_create_admin_token(state_dir)
        write_private(state_dir / ADMIN_TOKEN_FILE, admin_token + "\n")  # 0600, where every mode keeps it

        api = web.AppRunner(build_api(self.registry, self.identity, admin_token, self.policies, self.telemetry, self.relays,
                                         self.own_identity, self.issuer, self.kube.statuses.shown if self.kube is not None else None,
                                         self.secrets, secrets_writable=self.kube is None),
                                 access_log=None, handle_signals=False)
        mesh = web.AppRunner(build_mesh_api(self.registry, self.identity, self.policies, self.secrets), access_log=None, handle_signals=False)
        for runner in (api, mesh):
            await runner.setup()
            self._runners.append(runner)
        api_site = web.TCPSite(api, self.config.host, self.config.api_port)
        mesh_site = web.TCPSite(mesh, self.config.host, self.config.mesh_port, ssl_context=self._mesh_tls(material))
        await api_site.start()
        await mesh_site.start()
        self.api_port = _bound_port(api_site)
        self.mesh_port = _bound_port(mesh_site)
        write_json(
            state_dir / STATE_FILE,
            {
                "pid": os.getpid(),
                "api": f"http://{self.config.host}:{self.api_port}",
                "mesh": f"https://{self.config.host}:{self.mesh_port}",
                "apiPort": self.api_port,
                "meshPort": self.mesh_port,
                "trustAnchor": str(state_dir / "ca" / "trust-anchor.crt"),
                "identity": self.own_identity.uri,
                **({"webhookPort": self.kube.webhook_port} if self.kube is not None else {}),
            },
        )
        self._expiry = asyncio.get_running_loop().create_task(self._expire_policies(), name="policies:expire")
        self._scraper = asyncio.get_running_loop().create_task(self.telemetry.scrape_forever(), name="telemetry:scrape")
        self._resolver = asyncio.get_running_loop().create_task(self.jwks.run(), name="jwks:resolve")
        log.info("control plane ready: api=%s:%d mesh=%s:%d", self.config.host, self.api_port, self.config.host, self.mesh_port)

    def _mesh_tls(self, material: castore.CaMaterial):
        """A serving certificate for the control plane itself, made fresh at every start."""
        key = ca.new_key()
        now = utcnow()
        leaf = ca.sign_workload(
            ca.make_csr(self.own_identity, key),
            self.own_identity,
            material.issuer,
            now,
            material.issuer.certificate.not_valid_after_utc - now,
        )
        return server_context(
            material.anchor_pem, ca.cert_pem(leaf) + material.issuer_pem, ca.key_pem(key), require_client_cert=False
        )

    async def _expire_policies(self) -> None:
        """Resources with a ``duration`` remove themselves (auto-revert of time-boxed faults)."""
        while True:
            await asyncio.sleep(0.25)
            expired = self.policies.expire()
            for kind, ns, name in expired:
                log.info("%s %s/%s expired and was removed", kind, ns, name)
            if expired and self.kube is not None:
                await self.kube.forget_expired(expired)
            for name in await self.relays.expire():
                log.info("network fault %s expired and was removed", name)

    def _save_secrets(self, store: SecretStore) -> None:
        if self.kube is None:  # in Kubernetes mode the cluster keeps them
            write_json(self._secrets_file, store.to_json())

    def _save_policies(self, store: PolicyStore) -> None:
        self.jwks.poke()  # a RequestAuthentication may name keys to fetch
        if self.kube is None:  # in Kubernetes mode the cluster keeps them
            write_json(self._policies_file, store.to_json())

    def _save_registry(self, registry: Registry) -> None:
        if self.kube is None:  # in Kubernetes mode the cluster keeps them
            write_json(self._registry_file, registry.to_json())
        seen = (registry.selectors(), registry.annotations())
        if seen != self._pushed:  # policies follow a service's selector, and its Linkerd annotations
            self._pushed = seen
            self.policies.refresh()
            for note in self.policies.effective()[1]:
                log.warning("%s", note)
        if self._runners:  # serving: relays follow endpoint changes
            self.relays.poke()

    def _save_netfaults(self, relays: RelayManager) -> None:
        write_json(self._netfaults_file, relays.to_json())

    async def stop(self) -> None:
        for task in (self._expiry, self._scraper, self._resolver):
            if task is not None:
                task.cancel()
        if self.kube is not None:
            await self.kube.stop()
        await self.relays.close()
        self.registry.close_watches()  # long-lived streams would otherwise hold the shutdown
        self.policies.close_watches()
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()


def _bound_port(site: web.TCPSite) -> int:
    server = site._server  # aiohttp keeps the asyncio server here; its socket tells the port chosen
    assert server is not None and server.sockets
    return server.sockets[0].getsockname()[1]


async def serve(config: ControlPlaneConfig) -> None:
    plane = ControlPlane(config)
    await plane.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("control plane stopping")
    await plane.stop()



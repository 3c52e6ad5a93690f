"""The control plane's Kubernetes mode, assembled: one object the server starts and stops."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

from aiohttp import web

from controlplane import routestatus
from controlplane.castore import CaMaterial, StartupError
from controlplane.config import KubernetesSettings
from controlplane.gatewayapi import service_name
from controlplane.injector import InjectConfig, native_sidecars_supported
from controlplane.istioschema import ISTIO_GATEWAY, with_twins
from controlplane.kube import gatewayservices, gatewaystatus
from controlplane.kube.castore import load_material, load_operator_token
from controlplane.kube.discovery import KubeDiscovery
from controlplane.kube.gatewayservices import GatewayServices
from controlplane.kube.policies import KubePolicies, route_parent
from controlplane.kube.secretreader import ClusterSecrets
from controlplane.kube.statuswriter import StatusWriter
from controlplane.kube.tokenreview import TokenReviewer
from controlplane.kube.trustanchor import TrustAnchorPublisher
from controlplane.kube.webhook import build_webhook, tls_context
from controlplane.policystore import PolicyStore
from controlplane.registry import Registry
from controlplane.spiffe import SpiffeId
from controlplane.statusbook import Target, rfc3339_now
from controlplane.tlssecrets import SecretStore

log = logging.getLogger("meshdojo.controlplane.kube")
SERVICE_ACCOUNT = "meshdojo-controlplane"


def api_client(settings: KubernetesSettings) -> Any:
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    try:
        if settings.kubeconfig is not None:
            return config.new_client_from_config(str(settings.kubeconfig), context=settings.context)
        config.load_incluster_config()
    except (ConfigException, OSError) as exc:
        where = settings.kubeconfig or "the pod's ServiceAccount (in-cluster)"
        raise StartupError(f"no Kubernetes credentials from {where}: {exc}; give --kubeconfig FILE") from None
    return client.ApiClient()


class KubernetesMode:
    def __init__(self, settings: KubernetesSettings, registry: Registry, policies: PolicyStore, telemetry: Any,
                 secrets: SecretStore) -> None:
        self.settings = settings
        self.identity = SpiffeId(settings.namespace, SERVICE_ACCOUNT)
        self.api = api_client(settings)
        self.registry, self.policies = registry, policies
        registry.source = "the Kubernetes cluster"
        self.discovery = KubeDiscovery(self.api, registry, telemetry)
        self.kube_policies = KubePolicies(self.api, policies)
        policies.cluster = self.kube_policies
        self.statuses = StatusWriter(self.api, self._statuses, rfc3339_now)
        self.kube_policies.on_change.append(self._policies_changed)
        self.secrets = secrets
        self.secret_reader = ClusterSecrets(self.api, policies, secrets, self.statuses.update)  # the Gateways' TLS Secrets
        # a Service per Gateway, named as Istio names its own (bookinfo-gateway-istio), selecting the namespace's gateway
        self.gateway_services = GatewayServices(self.kube_policies.dynamic_client, self._gateway_services)
        self.discovery.on_change.append(self._services_changed)
        self.reviewer = TokenReviewer(self.api)
        self.anchors: TrustAnchorPublisher | None = None
        self._webhook: web.AppRunner | None = None
        self.webhook_port = 0

    def _policies_changed(self, kind: str) -> None:
        if kind in ("Gateway", "HTTPRoute", *with_twins("ServiceEntry")):
            self.statuses.update()
        if kind in ("Gateway", ISTIO_GATEWAY, "Ingress"):  # the Secrets its HTTPS listeners (servers, an Ingress's tls) name
            self.secret_reader.poke()
        if kind == "Gateway":  # and its Service
            self.gateway_services.update()

    def _services_changed(self) -> None:
        self.statuses.update()
        self.gateway_services.update()  # an ingress gateway's Service appeared: the Gateways of its namespace get theirs

    def _gateway_services(self) -> dict[tuple[str, str], dict]:
        def uid_of(namespace: str, name: str) -> str | None:
            return ((self.kube_policies.object("Gateway", namespace, name) or {}).get("metadata") or {}).get("uid")

        return gatewayservices.desired([r for r, _ in self.policies.list("Gateway")], uid_of,
                                       gatewayservices.gateway_selectors(self.discovery.services))

    def _gateway_address(self, gateway: Any) -> str | None:
        name = service_name(gateway.name, gateway.spec.class_name)
        return f"{name}.{gateway.namespace}.svc.cluster.local" if (gateway.namespace, name) in self.discovery.services else None

    def _statuses(self, now: str) -> dict[Target, dict]:
        """The Gateways' statuses and our entries in the HTTPRoutes' status.parents, from the
        policies, their generations, the Services and the ingress gateways' pods."""
        def has_endpoints(namespace: str, name: str) -> bool:
            service = self.registry.get(namespace, name)
            return service is not None and bool(service.endpoints)

        resources = [r for r, _ in self.policies.list()]
        generations = {kind: self.kube_policies.generations(kind) for kind in ("Gateway", "HTTPRoute")}
        gateways = gatewaystatus.desired(resources, generations["Gateway"],
                                         gatewaystatus.ingress_gateways(self.discovery.services, has_endpoints), now,
                                         self.secrets.get, self._gateway_address)
        routes = routestatus.desired(resources, generations["HTTPRoute"], self.registry.has, now, self.kube_policies.foreign_gateway)
        for kind, namespace, name, obj, why in self.kube_policies.ignored():  # refused by the validator: say why there
            generation = generations[kind].get((namespace, name), 1) if kind in generations else 1
            if kind == "Gateway":
                gateways[(namespace, name)] = gatewaystatus.refused(why, generation, now)
            elif kind == "HTTPRoute" and (parent := route_parent(obj)) is not None:
                routes[(namespace, name)] = routestatus.refused_entry(parent, why, generation, now)
        return {**{("gateways", *key): status for key, status in gateways.items()},
                **{("httproutes", *key): entry for key, entry in routes.items()}}

    async def material(self) -> CaMaterial:
        return await asyncio.to_thread(load_material, self.api, self.settings.namespace)

    async def operator_token(self) -> str | None:
        return await asyncio.to_thread(load_operator_token, self.api, self.settings.namespace)

    async def start(self, material: CaMaterial, host: str) -> None:
        from kubernetes import client

        try:
            version = await asyncio.to_thread(client.VersionApi(self.api).get_code)
        except Exception as exc:  # urllib3's and the client's errors alike: say where
            raise StartupError(f"cannot reach the Kubernetes API server at {self.api.configuration.host}: {exc}") from None
        self.anchors = TrustAnchorPublisher(self.api, material.anchor_pem)
        try:
            await asyncio.gather(self.discovery.start(), self.kube_policies.start(), self.anchors.start())
        except TimeoutError:
            raise StartupError("the first list of pods, services, endpoint slices, policies or namespaces took over 30 s "
                               "(is the control plane's ServiceAccount allowed to list them? kubectl auth can-i --list)") from None
        self.secret_reader.start()
        inject = InjectConfig(image=self.settings.proxy_image, native_sidecars=native_sidecars_supported(version.major, version.minor),
                              controlplane_identity=self.identity.uri)
        self._webhook = web.AppRunner(build_webhook(inject, self.anchors.namespace_meta), access_log=None, handle_signals=False)
        await self._webhook.setup()
        site = web.TCPSite(self._webhook, host, self.settings.webhook_port,
                           ssl_context=tls_context(material, (host, *self.settings.webhook_hosts), dt.datetime.now(dt.UTC)))
        await site.start()
        self.webhook_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        log.info("Kubernetes mode: API server %s %s.%s, %d services, webhook on %s:%d (native sidecars: %s)",
                 self.api.configuration.host, version.major, version.minor, len(self.registry.services()), host,
                 self.webhook_port, inject.native_sidecars)

    async def forget_expired(self, expired: list[tuple[str, str, str]]) -> None:
        """Resources whose ``duration`` is over are deleted from the cluster too."""
        for kind, ns, name in expired:
            await asyncio.to_thread(self.kube_policies.remove, kind, ns, name)

    async def stop(self) -> None:
        for part in (self.discovery, self.kube_policies, self.anchors, self.secret_reader):
            if part is not None:
                part.stop()
        if self._webhook is not None:
            await self._webhook.cleanup()

"""One sidecar proxy: identity, discovery, the outbound, inbound and admin listeners, and a
graceful drain on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import time
from typing import Any

from prometheus_client import disable_created_metrics

from controlplane.selection import Workload
from controlplane.statefiles import write_json
from proxy.acceptor import listening_socket
from proxy.accesslog import access_log, access_logger, chosen_format
from proxy.admin import build_admin
from proxy.config import ProxyConfig
from proxy.cpclient import ControlPlaneClient
from proxy.deadlines import Deadlines
from proxy.discovery import Discovery
from proxy.exchange import Handler, Peer
from proxy.gatewaytls import GatewayCertificates, GatewayTlsListener, client_certificate_header
from proxy.http1 import HttpConnection
from proxy.identity import WorkloadIdentity
from proxy.inbound import InboundListener, TlsMode, build_inbound_stack
from proxy.layers import FateLog, record_fate
from proxy.loadhere import LoadFromHere
from proxy.memory import malloc_trim, resident_bytes, return_freed_memory
from proxy.metrics import BreakerStates, ProxyMetrics
from proxy.outbound import build_internal_sender, build_outbound_stack
from proxy.policies import PolicyWatch
from proxy.pool import ConnectionPool
from proxy.requestid import request_id
from proxy.serve import ServerState, serve_connection
from proxy.tap import TapHub
from proxy.tasks import TaskSet
from proxy.tracing import SpanLog, trace_layer
from proxy.traffic import Breakers
from proxy.zipkin import SpanExporter

log = logging.getLogger("meshdojo.proxy")
disable_created_metrics()


class Proxy:
    def __init__(self, config: ProxyConfig) -> None:
        self.config = config
        self.tasks = TaskSet()
        self.metrics = ProxyMetrics()
        self.client = ControlPlaneClient(config.controlplane_url, config.controlplane_identity, self.metrics.tcp)
        self.identity = WorkloadIdentity(config.identity, config.trust_anchor_pem, self.client, config.bootstrap_token,
                                         self.metrics.identity, config.rotate_every)
        self.discovery = Discovery(self.client, self.identity, self.tasks, workload=config.workload)
        self.policies = PolicyWatch(self.client, self.identity, Workload(
            config.identity.namespace, config.identity.service_account, config.deployment, config.workload, dict(config.labels),
            gateway=config.gateway is not None, port=config.pod_port or config.inbound_port, port_name=config.pod_port_name))
        self.fates = FateLog()
        self.access = access_logger()
        self.tap = TapHub()
        self.workload = config.workload or config.identity.service_account
        self.spans = SpanLog(f"{config.identity.namespace}/{self.workload}", config.deployment)
        self.loads = LoadFromHere()  # requests sent from here as the app would (POST /load: meshdojo load --from on a cluster)
        self.breakers = Breakers(self.policies)
        self.certificates = (GatewayCertificates(self.client, self.identity, lambda: self.policies.gateway_tls)
                             if config.https_port is not None else None)  # a gateway's HTTPS listeners
        self.metrics.register(BreakerStates(self.breakers.states))
        self.mode = config.mode
        self.outbound_state = ServerState(idle_timeout=90.0)
        self.inbound_state = ServerState(idle_timeout=60.0)
        self.deadlines = Deadlines()
        self.outbound_pool = ConnectionPool(lambda: self.identity.client_ctx, self.metrics.tcp, "outbound", self.deadlines)
        self.app_pool = ConnectionPool(lambda: None, self.metrics.tcp, "inbound", self.deadlines)
        self.ports: dict[str, int] = {}
        self._outbound_server: asyncio.AbstractServer | None = None
        self._https: GatewayTlsListener | None = None
        self._inbound: InboundListener | None = None
        self._admin: InboundListener | None = None
        self.admin_state = ServerState(idle_timeout=60.0)
        self.started_at = time.time()

    @property
    def ready(self) -> bool:
        return self.identity.ready and bool(self.ports)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.tasks.supervise(self.deadlines.run, name="deadlines")
        if (trim := malloc_trim()) is not None:  # freed heap pages back to the system after a burst (proxy.memory)
            self.tasks.supervise(lambda: return_freed_memory(trim, resident_bytes, self.metrics.memory_returned.inc),
                                 name="memory:trim")
        # admin first, so /live answers while we bootstrap
        admin = build_admin(self.metrics, lambda: self.ready, self.describe, self.fates.entries, self.tap,
                            lambda: (self.config.tap_token, self.identity.tap_token), self.spans.entries, self.loads)
        # plaintext for probes and scrapes; mutual TLS (once we have a certificate) for /tap, /fates
        # and /spans from anywhere but this machine, so their tokens never cross a network in clear
        self._admin = InboundListener(admin, lambda: self.identity.server_ctx, lambda: TlsMode.PERMISSIVE, self.metrics,
                                      self.tasks, self.admin_state, self.deadlines, self.config.handshake_timeout, counted=False)
        admin_port = self._admin.listen(self.config.admin_address, self.config.admin_port)

        await self.identity.bootstrap(time.monotonic() + self.config.bootstrap_timeout)
        self.tasks.supervise(self.identity.rotate_forever, name="identity:rotate")
        self.tasks.supervise(self.policies.run, name="policies:watch")

        outbound = build_outbound_stack(self.discovery, self.outbound_pool, self.metrics, self.config.identity.uri,
                                        self.policies, self.fates, self.breakers, gateway=self.config.gateway,
                                        tap=self.tap, workload=self.workload, tasks=self.tasks,
                                        own_ports=lambda: set(self.ports.values()), spans=self.spans,
                                        write_access=self.access.info)
        # a Telemetry's zipkin provider: this sidecar's spans leave a batch a second, by a path of their own
        sender = build_internal_sender(self.discovery, self.outbound_pool, self.config.identity.uri, self.policies,
                                       lambda: set(self.ports.values()))
        exporter = SpanExporter(self.spans, self.policies.zipkin, self.policies.exporting, sender, self.config.identity.namespace,
                                lambda provider, outcome, n: self.metrics.spans_exported.labels(provider, outcome).inc(n))
        self.tasks.supervise(exporter.run, name="tracing:export")
        self.loads.outbound = outbound  # POST /load on the admin port: meshdojo load --from, on a cluster
        # bound here, as the inbound and admin listeners are: create_server(host, port) would resolve the address in
        # the event loop's thread pool first, and once a sidecar waited on that forever and never became ready
        listening = listening_socket(self.config.outbound_address, self.config.outbound_port)
        self._outbound_server = await loop.create_server(lambda: _Downstream(self, outbound, self.outbound_state), sock=listening)
        self.ports["outbound"] = self._outbound_server.sockets[0].getsockname()[1]
        if self.certificates is not None:  # a gateway's TLS port: the same request path, for the routes of HTTPS listeners
            self.tasks.supervise(self.certificates.run, name="gateway:certificates")
            self._https = GatewayTlsListener(self.certificates, lambda: _Downstream(self, outbound, self.outbound_state, https=True),
                                             lambda reason: self.metrics.gateway_tls_refused.labels(reason).inc(), self.tasks,
                                             self.config.handshake_timeout)
            self.ports["https"] = self._https.listen(self.config.outbound_address, self.config.https_port)

        inbound = record_fate(self.fates, self.tap, self.workload, direction="inbound")(build_inbound_stack(
            self.app_pool, self.config.app_port, self.metrics, self.policies, self.config.identity.namespace,
            default_policy=self.config.default_inbound_policy, outbound=outbound, pod_port=self.config.pod_port))
        linkerd = self.config.access_log
        inbound = access_log(lambda: chosen_format(self.policies.access_log, linkerd, "inbound"), self.access.info,
                             keep=lambda: self.policies.access_filter)(inbound)
        inbound = trace_layer("inbound", self.spans, self.policies.trace_sampling)(inbound)
        inbound = request_id(random.Random())(inbound)  # a caller without a sidecar sent none: one from here on
        self._inbound = InboundListener(inbound, lambda: self.identity.server_ctx, self.tls_mode, self.metrics,
                                        self.tasks, self.inbound_state, self.deadlines, self.config.handshake_timeout)
        self.ports["inbound"] = self._inbound.listen(self.config.inbound_address, self.config.inbound_port)
        self.ports["admin"] = admin_port
        if self.config.ports_file is not None:
            write_json(self.config.ports_file, {"pid": os.getpid(), **self.ports})
        log.info("proxy %s ready: outbound=%d inbound=%d admin=%d mode=%s", self.config.identity.uri,
                 self.ports["outbound"], self.ports["inbound"], self.ports["admin"], self.mode.value)

    def tls_mode(self) -> TlsMode:
        """MeshTLS policy for this workload if there is one, else the mode it was started with."""
        chosen = self.policies.tls_mode(self.config.pod_port or self.ports.get("inbound"))  # the port Services target
        return TlsMode(chosen.lower()) if chosen else self.mode

    def describe(self) -> dict[str, Any]:
        cert = self.identity.certificate
        zipkin = self.policies.zipkin()  # where this sidecar's spans go, if a Telemetry names a collector
        return {
            "identity": self.config.identity.uri,
            "workload": self.config.workload,
            "mode": self.tls_mode().value,
            "defaultInboundPolicy": self.config.default_inbound_policy,
            "gateway": self.config.gateway,
            "ports": self.ports,
            "appPort": self.config.app_port,
            "certificate": None if cert is None else {
                "serial": cert.serial, "notBefore": cert.not_before.isoformat(), "notAfter": cert.not_after.isoformat(),
                "refreshes": self.identity.refreshes, "chainPEM": cert.chain_pem,
            },
            "policies": {"version": self.policies.version, "updatedAt": self.policies.updated_at, "resources": self.policies.describe(),
                         "inbound": self.policies.described(),
                         "callers": self.policies.callers(), "calls": self.policies.shaping(self._called()),
                         "outbound": dict(zip(("mode", "by"), self.policies.outbound_mode(), strict=True)),
                         "gatewayRoutes": [{"route": f"{g.route.namespace}/{g.route.name}", "gateway": g.gateway,
                                            "kind": g.parent_kind, "hosts": list(g.hostnames), "protocol": g.protocol,
                                            "httpsRedirect": g.https_redirect}
                                           for g in self.policies.gateway_routes]
                         if self.config.gateway is not None else [],
                         "gatewayTls": [{"gateway": item.gateway, "kind": item.parent_kind, "hostname": item.hostname,
                                         "secret": item.secret, "mode": item.mode, "loaded": (item.secret, item.mode) in self.certificates.contexts}
                                        for item in self.policies.gateway_tls]
                         if self.certificates is not None else []},
            "labels": dict(self.config.labels),
            "deployment": self.config.deployment,
            "tap": {"subscribers": len(self.tap.subscribers), "dropped": self.tap.dropped_total},
            "tracing": {"samplingPercent": self.policies.trace_sampling(), "spansRecorded": self.spans.recorded,
                        "provider": None if zipkin is None else {"name": zipkin.name, "url": zipkin.url}},
            "accessLog": {**{direction: chosen_format(self.policies.access_log, self.config.access_log, direction)
                             for direction in ("inbound", "outbound")}, "filter": self.policies.access_filter_text},
            "discovery": {
                name: {
                    "service": s.service, "connected": s.connected, "unknown": s.unknown_since is not None,
                    "endpoints": [ep.to_json() for ep in s.endpoints.values()],
                }
                for name, s in self.discovery.sets.items()
            },
        }

    def _called(self) -> list[tuple[str, str]]:
        """(namespace, service) of each Service this sidecar has looked up for its app."""
        found = []
        for s in self.discovery.sets.values():
            name, _, rest = s.service.partition(".")
            if name and rest.endswith(".svc.cluster.local") and s.unknown_since is None:
                found.append((rest.partition(".")[0], name))
        return found

    async def drain(self) -> None:
        """Stop accepting, let requests in flight finish (up to the drain timeout), then close."""
        log.info("draining: %d outbound and %d inbound requests in flight",
                 self.outbound_state.in_flight, self.inbound_state.in_flight)
        if self._outbound_server is not None:
            self._outbound_server.close()
        for listener in (self._https, self._inbound):
            if listener is not None:
                listener.close()
        for state in (self.outbound_state, self.inbound_state):
            state.start_drain()
        try:
            await asyncio.wait_for(
                asyncio.gather(self.outbound_state.drained.wait(), self.inbound_state.drained.wait()),
                self.config.drain_timeout,
            )
        except TimeoutError:
            log.warning("drain timeout: closing with requests still in flight")
        await self.stop()

    async def stop(self) -> None:
        self.outbound_pool.close_all()
        self.app_pool.close_all()
        await self.tasks.close()
        await self.client.close()
        if self._admin is not None:
            self._admin.close()
        self.admin_state.start_drain()


class _Downstream(HttpConnection):
    """A connection to the outbound listener (the app's, through HTTP_PROXY); serving starts once it is made."""

    def __init__(self, proxy: Proxy, handler: Handler, state: ServerState, https: bool = False) -> None:
        super().__init__("request", on_lost=lambda conn, exc: proxy.metrics.tcp.closed(conn), deadlines=proxy.deadlines)
        self._proxy = proxy
        self._handler = handler
        self._state = state
        self._https = https  # a gateway's TLS port: its requests are for the routes of HTTPS listeners

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername") or ("?", 0)
        # only a gateway's policies read where a request arrived (proxy.access): a sidecar need not ask
        local = (transport.get_extra_info("sockname") or ("", 0)) if self._proxy.config.gateway is not None else None
        self._proxy.metrics.tcp.opened(self, ("outbound", "src", "no_identity", "", ""))
        ssl_object = transport.get_extra_info("ssl_object") if self._https else None
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None  # a mutual TLS listener's client, verified
        self._proxy.tasks.spawn(
            serve_connection(self, self._handler, Peer(f"{peer[0]}:{peer[1]}", False, None, f"{local[0]}:{local[1]}" if local else "",
                                                    "https" if self._https else "http",
                                                    client_certificate_header(der, ssl_object.getpeercert()) if der else None),
                             self._state),
            name=f"downstream:{peer[0]}:{peer[1]}",
        )


async def serve(config: ProxyConfig) -> None:
    proxy = Proxy(config)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    this = asyncio.current_task()
    assert this is not None

    def on_signal() -> None:  # SIGTERM while starting (a bootstrap waiting on a control plane, say) stops it there
        if not stop.is_set() and not proxy.ready:
            this.cancel()
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    try:
        await proxy.start()
    except asyncio.CancelledError:
        if not stop.is_set():
            raise
        this.uncancel()
        log.info("stopped before it was ready")
        await proxy.stop()
        return
    except BaseException:
        await proxy.stop()
        raise
    await stop.wait()
    await proxy.drain()


__all__ = ["Proxy", "serve", "TlsMode"]

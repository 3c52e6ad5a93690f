"""An ingress gateway's TLS port: HTTPS listeners of Gateway API, TLS terminated here.

The control plane streams the certificates and keys of the Secrets this namespace's Gateways
name (``GET /v1/gateway/credentials``, to the gateway's identity only — as Istio's gateways get
theirs by SDS). A client's server name (SNI) picks the HTTPS listener, as Gateway API matches
hosts (controlplane/gatewayapi.py), and that listener's Secret picks the certificate. No
listener for the name, or its Secret not there: the handshake fails with ``unrecognized_name``,
as at Istio's gateway. The requests inside go through the gateway's one request path, matched
against the routes attached to HTTPS listeners (proxy/outbound.py).
"""

from __future__ import annotations

import logging
import random
import ssl
from collections.abc import Callable

from controlplane.gatewayapi import TlsListener, listener_for
from controlplane.protocol import HEARTBEAT_SECONDS
from controlplane.sslcontext import load_chain
from proxy.cpclient import ControlPlaneClient, ControlPlaneRefused, follow_snapshots
from proxy.identity import WorkloadIdentity

log = logging.getLogger("meshdojo.proxy.gatewaytls")
SAID_AT_MOST = 64  # distinct refused server names logged, so a scan cannot flood the log


def public_context() -> ssl.SSLContext:
    """A context as a public HTTPS endpoint serves: TLS 1.2 or newer, HTTP/1.1, no client certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class GatewayCertificates:
    """The certificates this gateway serves, by Secret name, and the context its TLS port
    listens with (its SNI callback swaps in the listener's)."""

    def __init__(self, client: ControlPlaneClient, identity: WorkloadIdentity, listeners: Callable[[], tuple[TlsListener, ...]],
                 rng: random.Random | None = None) -> None:
        self._client = client
        self._identity = identity
        self._listeners = listeners
        self._rng = rng or random.Random()
        self.contexts: dict[str, ssl.SSLContext] = {}  # Secret name -> a context serving its certificate
        self._said: set[str] = set()
        self.context = public_context()
        self.context.sni_callback = self._choose

    def _choose(self, ssl_object: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> int | None:
        listener = listener_for(server_name, self._listeners())
        chosen = self.contexts.get(listener.secret) if listener is not None else None
        if chosen is None:
            self._say(server_name, listener)
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        ssl_object.context = chosen
        return None

    def _say(self, server_name: str | None, listener: TlsListener | None) -> None:
        key = f"{server_name}:{listener}"
        if key in self._said or len(self._said) >= SAID_AT_MOST:
            return
        self._said.add(key)
        if listener is None:
            log.warning("TLS handshake for %s refused: no HTTPS listener of this namespace's Gateways takes that name",
                        server_name or "(no server name)")
        else:
            log.warning("TLS handshake for %s refused: Secret %s, which listener of Gateway %s names, is not there "
                        "(meshdojo create secret tls %s --cert FILE --key FILE)", server_name, listener.secret,
                        listener.gateway, listener.secret)

    def apply(self, certificates: dict[str, dict[str, str]]) -> None:
        contexts = {}
        for name, item in certificates.items():
            ctx = public_context()
            try:
                load_chain(ctx, item["certificateChainPEM"], item["privateKeyPEM"])
            except (ssl.SSLError, KeyError, TypeError) as exc:  # the control plane checked the pair; be safe anyway
                log.warning("cannot serve Secret %s: %s", name, exc)
                continue
            contexts[name] = ctx
        self.contexts = contexts
        self._said.clear()
        log.info("TLS certificates: %s", ", ".join(sorted(contexts)) or "none")

    async def run(self) -> None:
        def lost(exc: Exception) -> None:  # keep the certificates; watch again
            if isinstance(exc, ControlPlaneRefused):
                log.warning("TLS certificates refused: %s", exc)
            else:
                log.debug("TLS certificates watch lost (%s); keeping %d", exc, len(self.contexts))

        await follow_snapshots(self._client, "/v1/gateway/credentials", lambda: self._identity.client_ctx,
                               lambda event: self.apply(event.get("certificates") or {}), lost, self._rng, 3 * HEARTBEAT_SECONDS)

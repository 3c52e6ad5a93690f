"""The sidecar injector's admission webhook: ``POST /inject`` with an AdmissionReview, answered
by :func:`controlplane.injector.review` (the pure decision). Served over TLS with a certificate
from the mesh's issuer, so the webhook configuration's ``caBundle`` is the trust anchor."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

from controlplane import ca
from controlplane.castore import CaMaterial
from controlplane.injector import CONTROLPLANE_NAMESPACE, InjectConfig, review

log = logging.getLogger("meshdojo.controlplane.webhook")
WEBHOOK_SERVICE = "meshdojo-webhook"
CONFIG: web.AppKey[InjectConfig] = web.AppKey("inject-config", InjectConfig)
NAMESPACES: web.AppKey[Callable[[str], dict[str, Any] | None]] = web.AppKey("namespaces", object)  # type: ignore[arg-type]
MAX_REVIEW_BYTES = 4 * 1024 * 1024


def serving_names(extra_hosts: tuple[str, ...] = ()) -> tuple[list[str], list[ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    """The names the API server may use to reach us: the Service's DNS names, plus any given host."""
    dns = [WEBHOOK_SERVICE, f"{WEBHOOK_SERVICE}.{CONTROLPLANE_NAMESPACE}", f"{WEBHOOK_SERVICE}.{CONTROLPLANE_NAMESPACE}.svc"]
    ips = []
    for host in extra_hosts:
        try:
            ips.append(ipaddress.ip_address(host))
        except ValueError:
            dns.append(host)
    return dns, ips


def tls_context(material: CaMaterial, hosts: tuple[str, ...], now: dt.datetime):
    from controlplane.sslcontext import server_context

    key = ca.new_key()
    dns, ips = serving_names(hosts)
    leaf = ca.sign_server(key, dns, ips, material.issuer, now, dt.timedelta(days=30))
    return server_context(material.anchor_pem, ca.cert_pem(leaf) + material.issuer_pem, ca.key_pem(key), require_client_cert=False)


async def inject(request: web.Request) -> web.Response:
    try:
        body = await request.json()
        if not isinstance(body, dict) or not isinstance(body.get("request"), dict):
            raise ValueError("not an AdmissionReview")
    except ValueError as exc:
        return web.json_response({"error": f"expected an AdmissionReview (admission.k8s.io/v1): {exc}"}, status=400)
    namespace = body["request"].get("namespace") or ""
    answer = review(body, request.app[CONFIG], request.app[NAMESPACES](namespace))
    if "patch" in answer["response"]:
        obj = body["request"].get("object") or {}
        meta = obj.get("metadata") or {}
        log.info("injected the proxy into a pod of %s (%s)", namespace, meta.get("name") or meta.get("generateName", "?"))
    return web.json_response(answer)


def build_webhook(config: InjectConfig, namespaces: Callable[[str], dict[str, Any] | None]) -> web.Application:
    app = web.Application(client_max_size=MAX_REVIEW_BYTES)
    app[CONFIG] = config
    app[NAMESPACES] = namespaces
    app.add_routes([web.post("/inject", inject)])
    return app

"""The proxy-facing API, over TLS on 127.0.0.1: certificates and discovery.

A proxy bootstraps with ``POST /v1/certify`` carrying a CSR and its bootstrap token. From then
on it authenticates with its client certificate: renewals need no token, and discovery
watches resolve names relative to the namespace in the caller's SPIFFE ID.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from controlplane import ca, tokens
from controlplane.api import json_error
from controlplane.gatewayapi import GATEWAY_SERVICE_ACCOUNT, SECRET_KINDS, secrets_named
from controlplane.identity import IdentityService, IssuedCertificate
from controlplane.names import resolve
from controlplane.policystore import PolicyStore
from controlplane.protocol import HEARTBEAT_SECONDS
from controlplane.registry import Registry
from controlplane.spiffe import InvalidIdentity, SpiffeId
from controlplane.sslcontext import peer_identity
from controlplane.tlssecrets import SecretStore
from controlplane.watchstream import stream_watch

REGISTRY: web.AppKey[Registry] = web.AppKey("registry", Registry)
IDENTITY: web.AppKey[IdentityService] = web.AppKey("identity", IdentityService)


POLICIES: web.AppKey[PolicyStore] = web.AppKey("policies", PolicyStore)
SECRETS: web.AppKey[SecretStore] = web.AppKey("secrets", SecretStore)


def build_mesh_api(registry: Registry, identity: IdentityService, policies: PolicyStore, secrets: SecretStore) -> web.Application:
    app = web.Application()
    app[REGISTRY] = registry
    app[IDENTITY] = identity
    app[POLICIES] = policies
    app[SECRETS] = secrets
    app.add_routes([web.post("/v1/certify", certify), web.get("/v1/watch", watch), web.get("/v1/policies/watch", watch_policies),
                    web.get("/v1/gateway/credentials", watch_credentials)])
    return app


def caller_identity(request: web.Request) -> SpiffeId | None:
    """The verified client certificate's identity (the TLS layer already checked the chain)."""
    uri = peer_identity(request.transport.get_extra_info("ssl_object") if request.transport else None)
    if uri is None:
        return None
    try:
        return SpiffeId.parse(uri)
    except InvalidIdentity:
        return None


def _issued_json(issued: IssuedCertificate) -> dict[str, Any]:
    return {
        "identity": issued.identity,
        "certificateChainPEM": issued.chain_pem,
        "serial": format(issued.serial, "x"),
        "notBefore": issued.not_before.isoformat(),
        "notAfter": issued.not_after.isoformat(),
    }


async def certify(request: web.Request) -> web.Response:
    try:
        body = await request.json()
        csr = body["csr"]
        token = body.get("token")
    except (ValueError, KeyError, TypeError, AttributeError):
        return json_error(400, 'expected {"csr": "<PEM>", "token": "<bootstrap token>"}')
    service = request.app[IDENTITY]
    caller = caller_identity(request)
    try:
        if caller is not None:
            issued = service.renew(csr, caller.uri)
        elif isinstance(token, str):
            # in a thread: a TokenReview is a round trip to the API server, and signing costs a millisecond
            issued = await asyncio.to_thread(service.certify_with_token, csr, token)
        else:
            return json_error(401, "present a valid client certificate or a bootstrap token")
    except tokens.InvalidToken as exc:
        return json_error(401, str(exc))
    except ca.CertificateRequestRejected as exc:
        return json_error(403, str(exc))
    # the tap token rides with the certificate: the proxy verified that this server is the control plane
    return web.json_response({**_issued_json(issued), "tapToken": service.tap_token(issued.identity)})


async def watch(request: web.Request) -> web.StreamResponse:
    caller = caller_identity(request)
    if caller is None:
        return json_error(401, "discovery requires the proxy's client certificate")
    name = request.query.get("name", "")
    found = resolve(name, caller.namespace)
    if found is None:
        return json_error(404, f"{name!r} is not a service name", reason="unknown_service")
    workload = request.query.get("workload")  # the proxy's instance, so an edge's network faults find it
    return await stream_watch(request, request.app[REGISTRY], *found, client=(caller.namespace, workload) if workload else None)


async def watch_policies(request: web.Request) -> web.StreamResponse:
    """Every policy resource (a client needs the routes of the services it calls, in any
    namespace): a snapshot now and after every change."""
    caller = caller_identity(request)
    if caller is None:
        return json_error(401, "policy watches require the proxy's client certificate")
    store = request.app[POLICIES]
    queue = store.watch(None)
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson", "Cache-Control": "no-store"})
    await response.prepare(request)
    try:
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), HEARTBEAT_SECONDS)
            except TimeoutError:
                event = {"type": "heartbeat"}
            if event is None:
                break
            await response.write(json.dumps(event, separators=(",", ":")).encode() + b"\n")
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        store.unwatch(None, queue)
    return response


def gateway_credentials(policies: PolicyStore, secrets: SecretStore, namespace: str) -> dict[str, dict[str, str]]:
    """The certificates and keys of the Secrets the Gateways of ``namespace`` name (only those),
    with the CA a mutual TLS listener checks its clients against (ca.crt) where there is one."""
    named = secrets_named((r for kind in SECRET_KINDS for r, _ in policies.list(kind, namespace)), namespace)
    return {name: {"certificateChainPEM": s.chain_pem, "privateKeyPEM": s.key_pem, **({"caPEM": s.ca_pem} if s.ca_pem else {})}
            for name in sorted(named) if (s := secrets.secrets.get((namespace, name))) is not None}


async def watch_credentials(request: web.Request) -> web.StreamResponse:
    """An ingress gateway's TLS certificates (Istio's gateways have them by SDS): a snapshot now
    and after every change of its namespace's Gateways or Secrets. Only the gateway's identity is
    given them, and only its own namespace's Secrets that a Gateway names."""
    caller = caller_identity(request)
    if caller is None:
        return json_error(401, "credentials require the gateway's client certificate")
    if caller.service_account != GATEWAY_SERVICE_ACCOUNT:
        return json_error(403, f"{caller.uri} is not an ingress gateway: only {GATEWAY_SERVICE_ACCOUNT} is given TLS keys")
    policies, secrets = request.app[POLICIES], request.app[SECRETS]
    queue = policies.watch(caller.namespace)  # woken by a change of the namespace's policies, or of the Secrets
    secrets.wake(queue)
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson", "Cache-Control": "no-store"})
    await response.prepare(request)
    sent = None
    try:
        while True:
            current = gateway_credentials(policies, secrets, caller.namespace)
            event = {"type": "snapshot", "certificates": current} if current != sent else {"type": "heartbeat"}
            sent = current
            await response.write(json.dumps(event, separators=(",", ":")).encode() + b"\n")
            try:
                if await asyncio.wait_for(queue.get(), HEARTBEAT_SECONDS) is None:  # the store closed its watches
                    break
            except TimeoutError:
                continue
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        secrets.unwake(queue)
        policies.unwatch(caller.namespace, queue)
    return response

"""TLS Secrets on the operator API (controlplane/tlssecrets.py) — never their keys.

    POST   /v1/secrets                  {document, source, namespace} -> {action, secret}
    GET    /v1/secrets[?namespace=]     {items: [{namespace, name, type, hosts, notAfter, usedBy}]}
    DELETE /v1/secrets/{ns}/{name}

On a cluster the Secrets are the cluster's own: creating or deleting one here is refused with
the kubectl command that does it.
"""

from __future__ import annotations

from aiohttp import web

from controlplane.apibase import POLICIES, json_error
from controlplane.tlssecrets import SecretError, SecretStore, read_secret

SECRETS: web.AppKey[SecretStore] = web.AppKey("tls_secrets", SecretStore)
WRITABLE: web.AppKey[bool] = web.AppKey("tls_secrets_writable", bool)
ON_A_CLUSTER = ("on a cluster, Secrets are the cluster's own: kubectl -n NAMESPACE create secret tls NAME --cert FILE --key FILE "
                "(the control plane reads the ones a Gateway names)")


def add_secret_routes(app: web.Application, secrets: SecretStore, writable: bool) -> None:
    app[SECRETS] = secrets
    app[WRITABLE] = writable
    app.add_routes([web.post("/v1/secrets", create_secret), web.get("/v1/secrets", list_secrets),
                    web.delete("/v1/secrets/{ns}/{name}", delete_secret)])


async def create_secret(request: web.Request) -> web.Response:
    if not request.app[WRITABLE]:
        return json_error(409, ON_A_CLUSTER)
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("document"), dict):
        return json_error(400, 'expected {"document": {kind: Secret, ...}, "source": "<file>", "namespace": "<default>"}')
    try:
        secret = read_secret(body["document"], str(body.get("source") or "request"), str(body.get("namespace") or "default"))
    except SecretError as exc:
        return json_error(400, str(exc))
    action = request.app[SECRETS].put(secret)
    return web.json_response({"action": action, "secret": secret.summary()})


async def list_secrets(request: web.Request) -> web.Response:
    namespace = request.query.get("namespace") or None
    gateways = [r for r, _ in request.app[POLICIES].list("Gateway", namespace)]
    ingresses = [r for r, _ in request.app[POLICIES].list("Ingress", namespace)]
    items = []
    for item in request.app[SECRETS].listed(namespace):
        item["usedBy"] = ([f"{g.namespace}/{g.name}:{listener.name}" for g in gateways if g.namespace == item["namespace"]
                           for listener in g.spec.listeners if item["name"] in listener.certificates]
                          + [f"ingress {i.namespace}/{i.name}" for i in ingresses if i.namespace == item["namespace"]
                             and any(tls.secret == item["name"] for tls in i.spec.tls)])
        items.append(item)
    return web.json_response({"items": items})


async def delete_secret(request: web.Request) -> web.Response:
    if not request.app[WRITABLE]:
        return json_error(409, ON_A_CLUSTER.replace("create secret tls NAME --cert FILE --key FILE", "delete secret NAME"))
    namespace, name = request.match_info["ns"], request.match_info["name"]
    if not request.app[SECRETS].delete(namespace, name):
        return json_error(404, f"no Secret {namespace}/{name}: meshdojo get secrets lists them")
    return web.json_response({"deleted": f"{namespace}/{name}"})

"""The sandbox's token issuer on the operator API (controlplane/jwtissuer.py).

    POST /v1/jwt        {subject, claims, audiences, lifetimeSeconds} -> {token, issuer, payload}
    GET  /v1/jwt/jwks   the issuer's public keys (a JWKS)
"""

from __future__ import annotations

from aiohttp import web

from controlplane.jwtissuer import ISSUER, DemoIssuer, token_request

ISSUER_KEY: web.AppKey[DemoIssuer] = web.AppKey("jwt_issuer", DemoIssuer)


def add_jwt_routes(app: web.Application, issuer: DemoIssuer) -> None:
    app[ISSUER_KEY] = issuer
    app.add_routes([web.post("/v1/jwt", issue), web.get("/v1/jwt/jwks", jwks)])


async def issue(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except ValueError:
        body = None
    try:
        subject, claims, audiences, lifetime = token_request(body)
    except ValueError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    token, payload = request.app[ISSUER_KEY].mint(subject, claims, audiences, lifetime)
    return web.json_response({"token": token, "issuer": ISSUER, "payload": payload})


async def jwks(request: web.Request) -> web.Response:
    return web.json_response(request.app[ISSUER_KEY].jwks())

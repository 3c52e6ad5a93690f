"""What the operator API's handler modules share: the application's keys and the JSON error."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from controlplane.identity import IdentityService
from controlplane.policystore import PolicyStore
from controlplane.registry import Registry
from controlplane.scraper import Telemetry
from controlplane.statusbook import Statuses

REGISTRY: web.AppKey[Registry] = web.AppKey("registry", Registry)
IDENTITY: web.AppKey[IdentityService] = web.AppKey("identity", IdentityService)
ADMIN_TOKEN: web.AppKey[str] = web.AppKey("admin_token", str)
POLICIES: web.AppKey[PolicyStore] = web.AppKey("policies", PolicyStore)
TELEMETRY: web.AppKey[Telemetry] = web.AppKey("telemetry", Telemetry)
STATUSES: web.AppKey[Statuses] = web.AppKey("statuses")


def json_error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)

"""The keys of every RequestAuthentication rule that does not carry them inline, fetched by the
control plane and handed to the sidecars in each policy snapshot, as istiod does for Envoy.

A rule's keys are at its ``jwksUri``, or — with neither ``jwks`` nor ``jwksUri`` — where its
issuer's OpenID discovery document (``<issuer>/.well-known/openid-configuration``) says. The
sandbox's own issuer (controlplane/jwtissuer.py) is answered from memory. Each source is
fetched when a rule first names it, again every ``refresh_every`` seconds, and sooner after a
failure; a fetch that fails keeps the last keys it had, as istiod does, and says why in the
snapshot, so a sidecar's 401 can say it too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from controlplane.fields import FieldReader
from controlplane.istioschema import with_twins
from controlplane.jwtissuer import ISSUER, DemoIssuer
from controlplane.policystore import PolicyStore
from controlplane.requestauthn import JwtRule, check_jwks

log = logging.getLogger("meshdojo.controlplane.jwks")
FETCH_SECONDS = 60.0  # at most (a rule's own timeout, 5 s by default, is shorter)
MAX_BYTES = 256 * 1024
Fetch = Callable[[str], Awaitable[str]]


class KeysUnavailable(Exception):
    pass


async def fetch_url(url: str) -> str:
    """What is at ``url`` (http or https), up to 256 KiB; KeysUnavailable says why not."""
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=FETCH_SECONDS)) as session, \
                session.get(url, allow_redirects=True) as response:
            if response.status != 200:
                raise KeysUnavailable(f"GET {url}: HTTP {response.status}")
            body = await response.content.read(MAX_BYTES + 1)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise KeysUnavailable(f"GET {url}: {exc or type(exc).__name__}") from None
    if len(body) > MAX_BYTES:
        raise KeysUnavailable(f"GET {url}: more than {MAX_BYTES // 1024} KiB")
    return body.decode("utf-8", "replace")


class _Checked(FieldReader):
    def fail(self, field: str, message: str) -> Exception:
        return KeysUnavailable(f"{field}: {message}")


@dataclass(frozen=True)
class Resolved:
    jwks: str | None  # the JWKS (JSON text), the last one that could be had
    error: str | None  # why the last fetch failed
    at: float


class JwksResolver:
    def __init__(self, store: PolicyStore, issuer: DemoIssuer, fetch: Fetch = fetch_url, refresh_every: float = 300.0,
                 retry_after: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._issuer = issuer
        self._fetch = fetch
        self._refresh_every = refresh_every
        self._retry_after = retry_after
        self._clock = clock
        self._resolved: dict[str, Resolved] = {}
        self._poked = asyncio.Event()

    def snapshot(self) -> list[dict[str, Any]]:
        """For the policy snapshot: each source's keys, or why there are none."""
        return [{"source": source, "jwks": r.jwks, "error": r.error} for source, r in sorted(self._resolved.items())]

    def poke(self) -> None:
        """The policies changed: look again at which sources are wanted."""
        self._poked.set()

    async def run(self) -> None:
        while True:
            self._poked.clear()
            if await self.resolve_once():
                self._store.refresh()
            due = [r.at + (self._retry_after if r.error else self._refresh_every) - self._clock() for r in self._resolved.values()]
            try:
                await asyncio.wait_for(self._poked.wait(), max(min(due, default=self._refresh_every), 0.05))
            except TimeoutError:
                pass

    async def resolve_once(self) -> bool:
        """Fetch what is wanted and due; forget what no rule names. True if the snapshot changes."""
        wanted = {rule.keys_source: rule for kind in with_twins("RequestAuthentication")  # ours and Istio's
                  for resource, _ in self._store.list(kind=kind) for rule in resource.spec.rules if rule.jwks is None}  # type: ignore[union-attr]
        changed = False
        for source in self._resolved.keys() - wanted.keys():
            del self._resolved[source]
            changed = True
        now = self._clock()
        for source, rule in wanted.items():
            old = self._resolved.get(source)
            if old is not None and now < old.at + (self._retry_after if old.error else self._refresh_every):
                continue
            try:
                new = Resolved(await self._keys_of(rule), None, self._clock())
            except KeysUnavailable as exc:
                log.warning("the keys of %s could not be had: %s", rule.issuer, exc)
                new = Resolved(old.jwks if old else None, str(exc), self._clock())
            changed |= old is None or (old.jwks, old.error) != (new.jwks, new.error)
            self._resolved[source] = new
        return changed

    async def _keys_of(self, rule: JwtRule) -> str:
        if rule.jwks_uri is None and rule.issuer.rstrip("/") == ISSUER:
            return json.dumps(self._issuer.jwks())
        uri = rule.jwks_uri
        if uri is None:  # OpenID discovery, from the issuer's URL
            discovery = f"{rule.issuer.rstrip('/')}/.well-known/openid-configuration"
            try:
                uri = json.loads(await self._get(discovery, rule.fetch_timeout))["jwks_uri"]
                assert isinstance(uri, str)
            except (ValueError, KeyError, TypeError, AssertionError):
                raise KeysUnavailable(f"{discovery} has no jwks_uri") from None
        text = await self._get(uri, rule.fetch_timeout)
        check_jwks(_Checked(), text, uri)
        return text

    async def _get(self, url: str, timeout: float) -> str:
        try:
            async with asyncio.timeout(timeout):  # the rule's timeout (Istio's: 5 s by default)
                return await self._fetch(url)
        except TimeoutError:
            raise KeysUnavailable(f"GET {url}: no answer within {timeout:g}s (the rule's timeout)") from None

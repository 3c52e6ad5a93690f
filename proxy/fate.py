"""Each request's fate: what the proxy decided and why, for the learner.

Layers write into it as the request passes; it is kept in a ring buffer for the
observability work (``/fates`` on the admin port) and summarised in ``x-meshdojo-fate`` when
the request carries ``x-meshdojo-debug: 1``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from controlplane.protocol import FATE_KEYS


@dataclass(slots=True)
class Fate:
    direction: str = "outbound"
    route: str | None = None  # HTTPRoute namespace/name and rule index
    no_route: str | None = None  # routes are attached and none matched (404): which routes
    backend: str | None = None
    subset: str | None = None  # Istio's: the DestinationRule subset of the backend the route chose
    balance: str | None = None  # how a DestinationRule's loadBalancer picked the pod (None: the default, peak-EWMA)
    attempts: list[str] = field(default_factory=list)  # "endpoint -> status or error"
    retry: list[str] = field(default_factory=list)  # why each retry did or did not happen
    timeout: str | None = None
    breaker: str | None = None
    fault: str | None = None
    authn: str | None = None  # an end user's JWT: whose, and which RequestAuthentication checked it (or why it was refused)
    authz: str | None = None
    ratelimit: str | None = None
    pool: str | None = None  # connection-pool limits: overflow
    filters: str | None = None  # what the rule's filters did (headers, rewrite, mirror, redirect)
    egress: str | None = None  # a host outside the mesh: which ServiceEntry, passthrough, or why refused
    trace: str | None = None  # the trace id, when this sidecar recorded a span of the request (proxy/tracing.py)
    request_id: str | None = None  # its x-request-id, carried or given here (proxy/requestid.py)

    def summary(self) -> str:
        parts = []
        for key in FATE_KEYS:
            value = getattr(self, key)
            if value:
                parts.append(f"{key}={value}")
        if self.attempts:
            parts.append(f"attempts={len(self.attempts)}[{'; '.join(self.attempts)}]")
        if self.retry:
            parts.append(f"retry={'; '.join(self.retry)}")
        return ", ".join(parts) or "no policy applied"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

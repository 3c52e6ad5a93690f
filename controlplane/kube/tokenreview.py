"""A proxy's identity from its projected ServiceAccount token, checked by the API server.

The proxy sends the token (audience ``meshdojo``, short-lived, mounted by the kubelet) with its
CSR. A TokenReview says whether the token is valid for our audience and whose it is; the
control plane then issues exactly ``spiffe://meshdojo.local/ns/<namespace>/sa/<name>`` — the
CSR must ask for that identity, so a token of another ServiceAccount is refused.
"""

from __future__ import annotations

from typing import Any

from controlplane.spiffe import InvalidIdentity, SpiffeId
from controlplane.tokens import InvalidToken

AUDIENCE = "meshdojo"
SA_PREFIX = "system:serviceaccount:"


def identity_from_review(status: dict[str, Any], audience: str = AUDIENCE) -> SpiffeId:
    """The decision, pure: a TokenReview's status -> the identity, or InvalidToken saying why."""
    if not status.get("authenticated"):
        raise InvalidToken(f"the API server did not accept the token: {status.get('error') or 'not authenticated'}")
    if audience not in (status.get("audiences") or []):
        raise InvalidToken(f"the token is not for audience {audience!r} (a projected token with audience {audience!r} is needed)")
    username = (status.get("user") or {}).get("username", "")
    if not username.startswith(SA_PREFIX) or username.count(":") != 3:
        raise InvalidToken(f"the token belongs to {username!r}, not to a ServiceAccount")
    namespace, _, name = username[len(SA_PREFIX):].partition(":")
    try:
        return SpiffeId(namespace, name)
    except InvalidIdentity as exc:
        raise InvalidToken(str(exc)) from None


class TokenReviewer:
    """``authenticate(token) -> SpiffeId`` through the API server (blocking: call it in a thread)."""

    def __init__(self, api_client: Any, audience: str = AUDIENCE) -> None:
        self._api = api_client
        self.audience = audience

    def authenticate(self, token: str) -> SpiffeId:
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                  "spec": {"token": token, "audiences": [self.audience]}}
        try:
            answer = client.AuthenticationV1Api(self._api).create_token_review(review, _preload_content=False)
        except ApiException as exc:
            raise InvalidToken(f"the TokenReview failed: {exc.status} {exc.reason}") from None
        import json

        return identity_from_review(json.loads(answer.data).get("status") or {}, self.audience)

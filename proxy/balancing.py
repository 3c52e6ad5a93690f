"""Which pod a request goes to, as a DestinationRule's ``loadBalancer`` says
(controlplane/loadbalancing.py) — or, where none says, peak-EWMA power of two choices
(proxy/balancer.py, Linkerd's).

    LEAST_REQUEST   two pods drawn at random, the one with fewer requests in flight (Envoy's)
    ROUND_ROBIN     each pod in turn, one turn counter per Service (and subset)
    RANDOM          any pod, each as likely
    HASH            a key of the request (header, cookie, the caller's IP, query parameter) hashed
                    onto a ring of the pods (Envoy's ring hash): the same key, the same pod; a
                    request without the key goes to any pod, unless the cookie is to be set — then
                    its value is made from the downstream connection's addresses, as Envoy does

Pure: the clock and randomness are injected, the caller passes in what it read of the request.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from controlplane.loadbalancing import HashKey, LoadBalancerSpec
from controlplane.matching import cookie_value, query_param
from proxy.balancer import P2cBalancer, draw_two

T = TypeVar("T")
RING_CACHE = 64  # hash rings kept (one per endpoint set and size); more are built again when asked


def hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


@dataclass(frozen=True, slots=True)
class HashRing:
    points: tuple[int, ...]  # sorted
    owners: tuple[int, ...]  # the index of the endpoint each point belongs to

    @classmethod
    def build(cls, names: Sequence[str], size: int) -> HashRing:
        """Each endpoint gets size / len(names) points (at least one), placed by its name: the same
        on every sidecar, so all callers send a key to the same pod."""
        per = max(1, -(-size // len(names)))
        placed = sorted((hash64(f"{name}_{i}"), owner) for owner, name in enumerate(names) for i in range(per))
        return cls(tuple(p for p, _ in placed), tuple(o for _, o in placed))

    def owner(self, key_hash: int) -> int:
        i = bisect.bisect_left(self.points, key_hash)
        return self.owners[i if i < len(self.points) else 0]


@dataclass(frozen=True, slots=True)
class RequestKeys:
    """What a hash may be taken of, read from the request by the caller (the proxy's layer)."""

    header: Callable[[str], str | None]
    path: str  # origin-form, with its query
    peer: str  # the downstream connection's remote address, host:port
    local: str  # and its local one


def hash_input(key: HashKey, keys: RequestKeys) -> tuple[str | None, str | None]:
    """The text to hash for this request (None: it has no such key) and, for a cookie the sidecar
    is to set, the cookie's new value."""
    if key.header is not None:
        return keys.header(key.header), None
    if key.cookie is not None:
        value = cookie_value(keys.header("cookie"), key.cookie)
        if value is None and key.cookie_ttl is not None:  # Envoy: a hash of the downstream connection's addresses
            value = f"{hash64(keys.peer + keys.local):016x}"
            return value, value
        return value, None
    if key.query is not None:
        return query_param(keys.path, key.query), None
    return keys.peer.rpartition(":")[0] or None, None


def caller_address(peer: str, own_pod: str) -> str:
    """The caller's address for useSourceIp: the connection's, unless the app reached its own
    sidecar over loopback — then its pod's name, which stands for the pod's IP (Istio's source)."""
    return f"{own_pod}:0" if own_pod and peer.startswith("127.0.0.1:") else peer


def set_cookie(key: HashKey, value: str) -> bytes:
    """The Set-Cookie header's value for a made cookie, as Envoy writes it."""
    parts = [f'{key.cookie}="{value}"']
    if key.cookie_ttl:
        parts.append(f"Max-Age={int(key.cookie_ttl)}")
    if key.cookie_path:
        parts.append(f"Path={key.cookie_path}")
    parts.append("HttpOnly")
    return "; ".join(parts).encode()


class Picker(Generic[T]):
    """Picks one of a request's endpoints by a loadBalancer spec; keeps the round-robin turns
    and the hash rings, and uses ``p2c``'s in-flight counts and latency estimates."""

    def __init__(self, p2c: P2cBalancer, rng: random.Random) -> None:
        self.p2c, self.rng = p2c, rng
        self._turns: dict[object, int] = {}
        self._rings: dict[tuple[tuple[str, ...], int], HashRing] = {}

    def pick(self, spec: LoadBalancerSpec | None, endpoints: Sequence[T], key: Callable[[T], object],
             turn: object = None, hashed: str | None = None) -> T:
        """``turn``: whose round-robin counter (a Service and subset); ``hashed``: the request's key
        under a HASH spec (None: it has none, so any endpoint)."""
        if spec is None or spec.algorithm == "PEAK_EWMA" or len(endpoints) < 2:
            return self.p2c.pick(endpoints, key)
        if spec.algorithm == "ROUND_ROBIN":
            at = self._turns.get(turn)
            at = self.rng.randrange(len(endpoints)) if at is None else at + 1  # the first turn at random, as Envoy's
            self._turns[turn] = at % len(endpoints)
            return endpoints[at % len(endpoints)]
        if spec.algorithm == "LEAST_REQUEST":
            a, b = draw_two(self.rng, endpoints)
            return a if self.p2c.load(key(a)).pending <= self.p2c.load(key(b)).pending else b
        if spec.algorithm == "HASH" and hashed is not None:
            return endpoints[self.ring([_name(key(e)) for e in endpoints], spec.ring_size).owner(hash64(hashed))]
        return endpoints[self.rng.randrange(len(endpoints))]  # RANDOM, and a HASH request without its key

    def ring(self, names: list[str], size: int) -> HashRing:
        index = (tuple(names), size)
        ring = self._rings.get(index)
        if ring is None:
            if len(self._rings) >= RING_CACHE:
                self._rings.clear()
            ring = self._rings[index] = HashRing.build(names, size)
        return ring


def chosen_balancer(rules: Sequence[Any], subset: str | None) -> tuple[LoadBalancerSpec, Any] | None:
    """The loadBalancer a request to a host (or one of its subsets) follows, and the DestinationRule
    that says it: the first by name that does (as for its subsets); None when none does."""
    for rule in rules:
        spec = rule.spec.balancer_for(subset)
        if spec is not None:
            return spec, rule
    return None


def _name(key: object) -> str:
    address, port = key  # type: ignore[misc]
    return f"{address}:{port}"


"""A DestinationRule's ``trafficPolicy.loadBalancer`` (and a subset's own): how the caller's
sidecar picks one of the host's pods for each request, read from Istio's fields.

    simple: LEAST_REQUEST   the fewer requests in flight of two pods drawn at random (Istio's default;
                            LEAST_CONN is its old name)
    simple: ROUND_ROBIN     each pod in turn
    simple: RANDOM          any pod, each as likely
    simple: UNSPECIFIED     meshdojo's default: peak-EWMA latency of two drawn at random (Linkerd's)
    consistentHash          a hash of one key of the request — a header, a cookie, the caller's IP or
                            a query parameter — on a ring of the pods: the same key, the same pod
                            (sticky sessions), and few keys move when a pod comes or goes

What the sidecar does with it is :mod:`proxy.balancing`'s. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controlplane.durations import format_duration, parse_duration
from controlplane.fields import FieldReader

DEFAULT_RING_SIZE = 1024  # Envoy's minimum_ring_size
HASH_KEYS = ("httpHeaderName", "httpCookie", "useSourceIp", "httpQueryParameterName")
RING_FIELDS = ("ringHash", "maglev", "minimumRingSize")
SIMPLE = {"LEAST_REQUEST": "LEAST_REQUEST", "LEAST_CONN": "LEAST_REQUEST", "ROUND_ROBIN": "ROUND_ROBIN", "RANDOM": "RANDOM",
          "UNSPECIFIED": "PEAK_EWMA"}


@dataclass(frozen=True, slots=True)
class HashKey:
    """What of a request is hashed: exactly one of these is set."""

    header: str | None = None  # lower case, as the proxy reads headers
    cookie: str | None = None
    source_ip: bool = False
    query: str | None = None
    cookie_path: str | None = None
    cookie_ttl: float | None = None  # a request without the cookie gets one (0: a session cookie); None: none is set

    def describe(self) -> str:
        if self.header is not None:
            return f"header {self.header}"
        if self.cookie is not None:
            made = "" if self.cookie_ttl is None else \
                f", set when missing ({'for the session' if self.cookie_ttl == 0 else 'for ' + format_duration(self.cookie_ttl)})"
            return f"cookie {self.cookie}{made}"
        if self.query is not None:
            return f"query parameter {self.query}"
        return "the caller's IP"


@dataclass(frozen=True, slots=True)
class LoadBalancerSpec:
    algorithm: str  # PEAK_EWMA, LEAST_REQUEST, ROUND_ROBIN, RANDOM, or HASH (then hash_key says what)
    hash_key: HashKey | None = None
    ring_size: int = DEFAULT_RING_SIZE

    def describe(self) -> str:
        if self.hash_key is not None:
            return f"sticky by {self.hash_key.describe()}"
        return {"PEAK_EWMA": "peak-EWMA (meshdojo's default)"}.get(self.algorithm, self.algorithm)


def read_load_balancer(r: FieldReader, raw: Mapping[str, Any], where: str) -> LoadBalancerSpec:
    """``raw`` checked against ``istioschema.LOAD_BALANCER``; Istio's one-of rules are checked here."""
    chosen = [k for k in ("simple", "consistentHash") if k in raw]
    if len(chosen) != 1:
        raise r.fail(where, "expected one of simple (e.g. ROUND_ROBIN) and consistentHash (e.g. {httpHeaderName: end-user})"
                     + (", not both" if chosen else ""))
    if "simple" in raw:
        if raw["simple"] == "PASSTHROUGH":
            raise r.fail(f"{where}.simple", "PASSTHROUGH sends each request to the address the app asked for, with no load "
                                            "balancing; here the caller asks for a Service, whose pods the sidecar knows: "
                                            "expected LEAST_REQUEST, ROUND_ROBIN or RANDOM")
        return LoadBalancerSpec(SIMPLE[raw["simple"]])
    hashed, at = raw["consistentHash"], f"{where}.consistentHash"
    keys = [k for k in HASH_KEYS if k in hashed]
    if len(keys) != 1:
        raise r.fail(at, f"expected one of {', '.join(HASH_KEYS)}: what of a request is hashed"
                         + (f", not {len(keys)}" if keys else ""))
    rings = [k for k in RING_FIELDS if k in hashed]
    if len(rings) > 1:
        raise r.fail(at, f"expected one of {', '.join(RING_FIELDS)}, not {len(rings)}")
    size = DEFAULT_RING_SIZE
    if rings:
        ring = hashed[rings[0]]
        size = ring if isinstance(ring, int) else ring.get("minimumRingSize", ring.get("tableSize", DEFAULT_RING_SIZE))
    if "httpHeaderName" in hashed:
        key = HashKey(header=hashed["httpHeaderName"].lower())
    elif "httpCookie" in hashed:
        cookie = hashed["httpCookie"]
        ttl = parse_duration(cookie["ttl"]) if "ttl" in cookie else None
        key = HashKey(cookie=cookie["name"], cookie_path=cookie.get("path"), cookie_ttl=ttl)
    elif "httpQueryParameterName" in hashed:
        key = HashKey(query=hashed["httpQueryParameterName"])
    else:
        if hashed["useSourceIp"] is not True:
            raise r.fail(f"{at}.useSourceIp", "expected true (false hashes nothing: name another key instead)")
        key = HashKey(source_ip=True)
    return LoadBalancerSpec("HASH", key, size)

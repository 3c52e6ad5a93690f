"""An ingress gateway's first decision: which Service a request from outside goes to.

While no HTTPRoute is attached to a Gateway this gateway serves (controlplane/gatewayapi.py),
everything goes to the demo's front service, whatever Host a browser sent. Once routes are
attached, the most specific host match among them decides (an exact host, then the longest
wildcard, then routes for any host), then the first of their rules that matches; nothing
matching is a 404, as at Istio's gateway. The rule chosen is the request's route from then on:
its filters, timeouts and retries act on the way to its backend (proxy/traffic.py), and the
Host header is the client's, as Envoy keeps it.
"""

from __future__ import annotations

import random

from controlplane.gatewayapi import GatewayRoute
from controlplane.names import split_authority
from proxy.decisions import RouteChoice, choose_route
from proxy.exchange import Request, header_of


def ranked(routes: tuple[GatewayRoute, ...], host: str) -> list[GatewayRoute]:
    """The routes for ``host``, the most specific host match first (then in the order given)."""
    found = sorted(((rank, i, gr) for i, gr in enumerate(routes) if (rank := gr.rank(host)) is not None),
                   key=lambda item: (-item[0][0], -item[0][1], item[1]))
    return [gateway_route for _rank, _i, gateway_route in found]


def choose(routes: tuple[GatewayRoute, ...], host: str, request: Request,
           rng: random.Random) -> tuple[GatewayRoute, RouteChoice] | None:
    """(the route, its rule and backend) for a request to ``host``, or None: no rule matches."""
    for gateway_route in ranked(routes, host):
        choice = choose_route([gateway_route.route], request.path, header_of(request), request.head.method, rng)
        if choice is not None:
            return gateway_route, choice
    return None


def sent_to_https(routes: tuple[GatewayRoute, ...], host: str) -> GatewayRoute | None:
    """The route through whose server a plain request to ``host`` is sent to https:// (an Istio
    Gateway server's httpsRedirect), or None: when the most specific route for the host came by
    such a server, every request for it is redirected before any rule is matched, as Envoy's
    ``require_tls`` redirects a virtual host's."""
    first = next(iter(ranked(routes, host)), None)
    return first if first is not None and first.https_redirect else None


def asked_for(request: Request) -> str:
    """The host[:port] the client sent: an absolute target's, else its Host header."""
    target = request.head.target
    if not target.startswith("/"):
        return target.partition("://")[2].partition("/")[0].partition("?")[0]
    return (request.head.header(b"host") or b"").decode("latin-1")


def host_of(authority: str) -> str:
    """A Gateway API hostname's terms: no port, lower-case, no trailing dot."""
    try:
        host = split_authority(authority)[0]
    except ValueError:
        host = authority
    return host.lower().rstrip(".")

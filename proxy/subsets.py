"""Istio's subsets at the caller: a VirtualService's destination names one, and a DestinationRule
for that Service defines it — its endpoints whose pod labels include the subset's. Pure."""

from __future__ import annotations

from collections.abc import Sequence

from controlplane.protocol import Endpoint
from proxy.errors import NoEndpoints, ProxyError
from proxy.policies import PolicyWatch


class NoSubset(ProxyError):
    status = 503
    code = "no_subset"  # Envoy's NC: the route names a cluster (subset) nobody defined


def subset_endpoints(policies: PolicyWatch, namespace: str, service: str, subset: str,
                     endpoints: Sequence[Endpoint]) -> list[Endpoint]:
    """The endpoints of ``service`` in its subset ``subset``, as the DestinationRules for it
    define that (the first by name that does)."""
    rules = policies.find("DestinationRule", namespace, service)
    defined = next((s for r in rules if (s := r.spec.subset(subset)) is not None), None)  # type: ignore[union-attr]
    if defined is None:
        said = f"DestinationRule {', '.join(f'{r.namespace}/{r.name}' for r in rules)} does not define it" if rules else \
            "no DestinationRule for it exists"
        raise NoSubset(f"the route sends this request to subset {subset} of {service}.{namespace}, and {said}: "
                       f"apply a DestinationRule with host {service} and subsets [{{name: {subset}, labels: ...}}] first, as Istio's tasks do")
    chosen = [ep for ep in endpoints if defined.selects(ep.labels)]
    if not chosen:
        labels = ",".join(f"{k}={v}" for k, v in defined.labels)
        raise NoEndpoints(f"no endpoint of {service}.{namespace} is in subset {subset} ({labels}): no ready pod has those labels")
    return chosen

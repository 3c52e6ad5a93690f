"""Service names resolved the way cluster DNS resolves them, relative to the caller's namespace.

``emoji`` -> (caller's namespace, emoji); ``emoji.emojivoto``, ``emoji.emojivoto.svc`` and
``emoji.emojivoto.svc.cluster.local`` -> (emojivoto, emoji). A port, if any, is ignored.
"""

from __future__ import annotations

from controlplane.spiffe import is_dns_label

# a host name as Gateway API and Istio write them: lower-case DNS labels, or a wildcard *.domain
HOST_PATTERN = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
HOST_HINT = "expected a lower-case host name, or *.domain"


def split_authority(authority: str) -> tuple[str, int | None]:
    """``host[:port]`` -> (lowercased host, port or None); raises ValueError on a bad port."""
    host, sep, port = authority.strip().rpartition(":")
    if not sep or "]" in port:
        return authority.strip().lower().rstrip("."), None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad port in {authority!r}")
    return host.lower().rstrip("."), int(port)


def resolve(host: str, caller_namespace: str) -> tuple[str, str] | None:
    """(namespace, service) that ``host`` names, or None when it is not a cluster service name."""
    labels = host.lower().rstrip(".").split(".")
    if labels[-3:] == ["svc", "cluster", "local"]:
        labels = labels[:-3]
        if len(labels) != 2:
            return None
    elif labels[-1:] == ["svc"]:
        labels = labels[:-1]
        if len(labels) != 2:
            return None
    if len(labels) == 1:
        labels = [labels[0], caller_namespace]
    if len(labels) != 2 or not all(is_dns_label(label) for label in labels):
        return None
    name, namespace = labels
    return namespace, name

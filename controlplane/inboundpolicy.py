"""Linkerd's default inbound policy: who may call a workload that no ALLOW
AuthorizationPolicy covers.

Set with the ``config.linkerd.io/default-inbound-policy`` annotation on a pod template (or a
Deployment's), else on its Namespace, as in Linkerd; without one, ``all-unauthenticated``
(Linkerd's default: anybody). The proxy is started with it (``--default-inbound-policy``),
as Linkerd's injector hands it to the proxy, so a change takes effect when the pods roll.

    all-unauthenticated      anybody, with or without a mesh identity
    cluster-unauthenticated  the same here: every caller is on the sandbox's network
    all-authenticated        only callers with a mesh identity (mutual TLS); others get 403
    cluster-authenticated    the same here: every identity is the mesh's own
    deny                     nobody, until an AuthorizationPolicy ALLOWs a caller
    audit                    anybody, but each caller without a policy is logged and counted
                             as one that ``deny`` would refuse
"""

from __future__ import annotations

from collections.abc import Mapping

from controlplane.podannotations import AnnotationError, pod_or_namespace

ANNOTATION = "config.linkerd.io/default-inbound-policy"
POLICIES = ("all-unauthenticated", "all-authenticated", "cluster-authenticated", "cluster-unauthenticated", "deny", "audit")
DEFAULT = "all-unauthenticated"


InboundPolicyError = AnnotationError
REFERENCE = "Linkerd's default inbound policies: https://linkerd.io/2/reference/authorization-policy/"


def chosen(pod_annotations: Mapping[str, str], namespace_annotations: Mapping[str, str],
           pod_field: str = "metadata.annotations", namespace_field: str = "Namespace metadata.annotations") -> str | None:
    """The pod's annotation, else its namespace's; None when neither sets one. A value that is
    not one of Linkerd's raises, naming the annotation where it was read."""
    return pod_or_namespace(ANNOTATION, POLICIES, REFERENCE, pod_annotations, namespace_annotations, pod_field, namespace_field)


def admits(policy: str, identity: str | None) -> bool:
    """Whether ``policy`` lets a caller (``identity``: its SPIFFE ID, None without mTLS) in."""
    if policy == "deny":
        return False
    if policy in ("all-authenticated", "cluster-authenticated"):
        return identity is not None
    return True

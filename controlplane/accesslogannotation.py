"""Linkerd's ``config.linkerd.io/access-log``: a line per inbound request in the proxy's log, in
the ``apache`` or ``json`` format. Read from a pod template, else its Namespace, where the proxy
is started (the local backend's manifests, the injector), and handed to it as ``--access-log``."""

from __future__ import annotations

from collections.abc import Mapping

from controlplane.podannotations import pod_or_namespace

ANNOTATION = "config.linkerd.io/access-log"
FORMATS = ("apache", "json")
REFERENCE = "Linkerd's access logging: https://linkerd.io/2/features/access-logging/"


def chosen(pod_annotations: Mapping[str, str], namespace_annotations: Mapping[str, str],
           pod_field: str = "metadata.annotations", namespace_field: str = "Namespace metadata.annotations") -> str | None:
    return pod_or_namespace(ANNOTATION, FORMATS, REFERENCE, pod_annotations, namespace_annotations, pod_field, namespace_field)

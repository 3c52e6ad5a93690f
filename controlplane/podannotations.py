"""Linkerd's proxy settings as annotations on a pod template, else on its Namespace (as Linkerd's
injector reads them): read once where the proxy is started, each value checked."""

from __future__ import annotations

from collections.abc import Mapping


class AnnotationError(ValueError):
    """An annotation whose value is not one of Linkerd's: ``field`` says where it was read."""

    def __init__(self, field: str, value: str, allowed: tuple[str, ...], reference: str) -> None:
        self.field = field
        self.message = f"expected one of {', '.join(allowed)}, got {value!r} ({reference})"
        super().__init__(f"{field}: {self.message}")


def pod_or_namespace(annotation: str, allowed: tuple[str, ...], reference: str, pod_annotations: Mapping[str, str],
                     namespace_annotations: Mapping[str, str], pod_field: str = "metadata.annotations",
                     namespace_field: str = "Namespace metadata.annotations") -> str | None:
    """The pod's annotation, else its namespace's; None when neither sets one. Pure."""
    for given, field in ((pod_annotations, pod_field), (namespace_annotations, namespace_field)):
        value = given.get(annotation)
        if value is not None:
            if value not in allowed:
                raise AnnotationError(f"{field}.{annotation}", value, allowed, reference)
            return value
    return None

"""Writes the statuses the control plane owns on the cluster: each Gateway's ``status``
(controlplane/kube/gatewaystatus.py) and our entry in each HTTPRoute's ``status.parents``
(controlplane/kube/routestatus.py).

``update()`` after anything a status reads changed. A pass computes every status, compares it
with what it last wrote (transition times left out), and patches only what changed; one pass at
a time, and a change during a pass brings one more. A condition keeps its ``lastTransitionTime``
until its status changes, as Kubernetes' conventions ask.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from controlplane.kube.routestatus import merged

log = logging.getLogger("meshdojo.controlplane.kube")
GROUP, VERSION = "gateway.networking.k8s.io", "v1"
Target = tuple[str, str, str]  # (plural, namespace, name): "gateways" or "httproutes"
CONFLICT_TRIES = 3  # another controller wrote the route's status between our read and our patch


def without_times(status: Any) -> Any:
    """A status compared with another: the transition times left out."""
    if isinstance(status, dict):
        return {k: without_times(v) for k, v in status.items() if k != "lastTransitionTime"}
    if isinstance(status, list):
        return [without_times(v) for v in status]
    return status


def _partner(item: Any, earlier: Any) -> Any:
    """The item of the list ``earlier`` that ``item`` succeeds: the listener of the same name,
    the parent entry of the same parentRef."""
    if not isinstance(item, dict) or not isinstance(earlier, list):
        return None
    for key in ("name", "parentRef"):
        if key in item:
            return next((e for e in earlier if isinstance(e, dict) and e.get(key) == item[key]), None)
    return None


def keep_times(status: Any, before: Any) -> Any:
    """``status`` with each condition's lastTransitionTime taken from ``before`` where the same
    condition (the object's, a listener's, a parent entry's) had the same status."""
    if isinstance(status, list):
        return [keep_times(item, _partner(item, before)) for item in status]
    if not isinstance(status, dict) or not isinstance(before, dict):
        return status
    out = {}
    for key, value in status.items():
        if key == "conditions":
            was = {(c["type"], c["status"]): c["lastTransitionTime"] for c in before.get("conditions") or []}
            out[key] = [{**c, "lastTransitionTime": was.get((c["type"], c["status"]), c["lastTransitionTime"])} for c in value]
        else:
            out[key] = keep_times(value, before.get(key))
    return out


class StatusWriter:
    """``wanted(now)``: every status we own, by target; for a route, our parent entry only."""

    def __init__(self, api_client: Any, wanted: Callable[[str], dict[Target, dict]], clock: Callable[[], str]) -> None:
        self._api = api_client
        self._wanted = wanted
        self._clock = clock
        self._written: dict[Target, dict] = {}  # what was last written, times included
        self._refused: dict[Target, Any] = {}  # a status the API server refused: said once, tried again at the next change
        self._pending: asyncio.Task | None = None
        self._again = False

    def update(self) -> None:
        if self._pending is not None and not self._pending.done():
            self._again = True  # one more pass once this one is done: nothing is lost, nothing piles up
            return
        self._pending = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        while True:
            self._again = False
            wanted = self._wanted(self._clock())
            changed = {k: keep_times(v, self._written.get(k)) for k, v in wanted.items()
                       if k not in self._written or without_times(self._written[k]) != without_times(v)}
            for target in [k for k in self._written if k not in wanted]:
                del self._written[target]
            for target, status in changed.items():
                try:
                    await asyncio.to_thread(self._patch, target, status)
                    self._written[target] = status
                    self._refused.pop(target, None)
                except Exception as exc:  # the object went meanwhile, or RBAC: the next change tries again
                    if self._refused.get(target) != without_times(status):
                        log.warning("could not write the status of %s %s/%s: %s", *target, exc)
                    self._refused[target] = without_times(status)
            if not self._again:
                return

    def _patch(self, target: Target, status: dict) -> None:
        from kubernetes import client

        plural, namespace, name = target
        api = client.CustomObjectsApi(self._api)
        if plural == "gateways":  # a Gateway's status is ours alone
            api.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, plural, name, {"status": status})
            return
        # a route's parents are shared with other controllers: ours replaced, theirs kept, on the version read
        for attempt in range(CONFLICT_TRIES):
            current = api.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
            body = {"metadata": {"resourceVersion": current["metadata"]["resourceVersion"]},
                    "status": merged(current.get("status"), status)}
            try:
                api.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, plural, name, body)
                return
            except client.ApiException as exc:
                if exc.status != 409 or attempt == CONFLICT_TRIES - 1:
                    raise

"""Writes the statuses the control plane owns on the cluster: each Gateway's ``status``
(controlplane/kube/gatewaystatus.py) and our entry in each HTTPRoute's ``status.parents``
(controlplane/routestatus.py).

``update()`` after anything a status reads changed. A pass computes every status, compares it
with what it last wrote (transition times left out), and patches only what changed; one pass at
a time, and a change during a pass brings one more. A condition keeps its ``lastTransitionTime``
until its status changes (controlplane/statusbook.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from controlplane.routestatus import merged
from controlplane.statusbook import StatusBook, Target, without_times

log = logging.getLogger("meshdojo.controlplane.kube")
GROUP, VERSION = "gateway.networking.k8s.io", "v1"
CONFLICT_TRIES = 3  # another controller wrote the route's status between our read and our patch


class StatusWriter:
    """``wanted(now)``: every status we own, by target; for a route, our parent entry only."""

    def __init__(self, api_client: Any, wanted: Callable[[str], dict[Target, dict]], clock: Callable[[], str]) -> None:
        self._api = api_client
        self._wanted = wanted
        self._clock = clock
        self.book = StatusBook()  # what was last written, times included
        self._refused: dict[Target, Any] = {}  # a status the API server refused: said once, tried again at the next change
        self._pending: asyncio.Task | None = None
        self._again = False

    def shown(self) -> dict[Target, dict]:
        """What was written, as ``GET /v1/policies`` shows it: a route's entry as its status.parents."""
        return {t: {"parents": [s]} if t[0] == "httproutes" else s for t, s in self.book.kept().items()}

    def update(self) -> None:
        if self._pending is not None and not self._pending.done():
            self._again = True  # one more pass once this one is done: nothing is lost, nothing piles up
            return
        self._pending = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        while True:
            self._again = False
            for target, status in self.book.changed(self._wanted(self._clock())).items():
                try:
                    await asyncio.to_thread(self._patch, target, status)
                    self.book.keep(target, status)
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

"""The statuses the control plane gives out — each Gateway's and our entry of each HTTPRoute's
``status.parents`` — kept between passes so that a condition's ``lastTransitionTime`` says
when its status last changed, as Kubernetes' conventions ask.

On a cluster the status writer (controlplane/kube/statuswriter.py) patches what changed and
keeps what the API server took; locally the operator API settles the book when ``meshdojo get``
asks, so ``get -o yaml`` shows the same status on both backends.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from controlplane import routestatus

Target = tuple[str, str, str]  # (plural, namespace, name): "gateways" or "httproutes"
Statuses = Callable[[], dict[Target, dict]]  # every status given out, as `get -o yaml` shows it
STATUS_PLURALS = {"Gateway": "gateways", "HTTPRoute": "httproutes"}


def rfc3339_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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


class StatusBook:
    """The statuses last given out, by target."""

    def __init__(self) -> None:
        self._kept: dict[Target, dict] = {}

    def changed(self, wanted: dict[Target, dict]) -> dict[Target, dict]:
        """What in ``wanted`` differs from what is kept (the times carried over where a condition
        did not change); a target no longer wanted is forgotten."""
        for target in [k for k in self._kept if k not in wanted]:
            del self._kept[target]
        return {k: keep_times(v, self._kept.get(k)) for k, v in wanted.items()
                if k not in self._kept or without_times(self._kept[k]) != without_times(v)}

    def keep(self, target: Target, status: dict) -> None:
        self._kept[target] = status

    def kept(self) -> dict[Target, dict]:
        return dict(self._kept)

    def settle(self, wanted: dict[Target, dict]) -> dict[Target, dict]:
        """Keep every change at once (nothing to write anywhere) and give back all that is kept."""
        for target, status in self.changed(wanted).items():
            self.keep(target, status)
        return self.kept()


def local_statuses(policies: Any, is_service: Callable[[str, str], bool], clock: Callable[[], str],
                   gateways: Callable[[], dict[str, tuple[str, bool]]] = dict,
                   secret_of: Callable[[str, str], Any | None] = lambda ns, name: None) -> Statuses:
    """The local backend's statuses, as ``GET /v1/policies`` shows them, from the same decisions
    as on a cluster, settled at each call: each HTTPRoute's ``status.parents``, and each
    Gateway's status. ``gateways``: namespace -> (its ingress gateway's address, running);
    ``secret_of``: the valid Secret an HTTPS listener names, or None."""
    from controlplane.kube import gatewaystatus  # pure: the decisions a cluster's status writer writes

    book = StatusBook()

    def statuses() -> dict[Target, dict]:
        resources, now = [r for r, _ in policies.list()], clock()
        wanted: dict[Target, dict] = {("httproutes", *key): {"parents": [entry]}
                                      for key, entry in routestatus.desired(resources, {}, is_service, now).items()}
        wanted.update({("gateways", *key): status
                       for key, status in gatewaystatus.desired(resources, {}, gateways(), now, secret_of).items()})
        return book.settle(wanted)

    return statuses

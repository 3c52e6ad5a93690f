"""List-then-watch of one resource kind in a thread, events handed to the event loop.

The thread lists (a snapshot, delivered as one ``sync`` call) and watches from that list's
resourceVersion; when the watch ends (server timeout, 410 Gone, a connection error) it lists
again, so nothing is missed for long: that relist is the resync.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("meshdojo.controlplane.kube")
WATCH_SECONDS = 300  # the server ends each watch after this long; we relist then
RETRY_SECONDS = 1.0
MISSING_KIND_SECONDS = 5.0  # how often to look again for a kind the cluster does not serve


class Watcher:
    """``on_sync(items)`` with every object after each list, ``on_event(type, obj)`` for each change;
    both run on the event loop. Objects are plain dicts (the API's JSON)."""

    def __init__(self, name: str, list_call: Callable[..., Any], loop: asyncio.AbstractEventLoop,
                 on_sync: Callable[[list[dict[str, Any]]], None], on_event: Callable[[str, dict[str, Any]], None],
                 **list_kwargs: Any) -> None:
        self.name = name
        self._list = list_call
        self._kwargs = list_kwargs
        self._loop = loop
        self._on_sync, self._on_event = on_sync, on_event
        self._stop = threading.Event()
        self._watch: Any = None
        self.synced = asyncio.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch:{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()

    def _run(self) -> None:
        from kubernetes import watch
        from kubernetes.client.rest import ApiException

        while not self._stop.is_set():
            try:
                listed = self._list(_preload_content=False, **self._kwargs)
                body = _json(listed)
                items = body.get("items") or []
                self._loop.call_soon_threadsafe(self._synced, items)
                self._watch = watch.Watch()
                for event in self._watch.stream(self._list, resource_version=body["metadata"]["resourceVersion"],
                                                timeout_seconds=WATCH_SECONDS, **self._kwargs):
                    if self._stop.is_set():
                        break
                    if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        self._loop.call_soon_threadsafe(self._on_event, event["type"], event["raw_object"])
            except ApiException as exc:
                if self._stop.is_set():
                    return
                if exc.status == 404:  # the kind is not served (its CRD is not installed): nothing of it exists
                    self._loop.call_soon_threadsafe(self._synced, [])
                    self._stop.wait(MISSING_KIND_SECONDS)
                elif exc.status != 410:  # 410 Gone: our resourceVersion is too old, simply list again
                    log.warning("watch %s: %s %s; listing again in %g s", self.name, exc.status, exc.reason, RETRY_SECONDS)
                    self._stop.wait(RETRY_SECONDS)
            except Exception as exc:  # connection errors: the API server restarting, a network blip
                if self._stop.is_set():
                    return
                log.warning("watch %s: %s; listing again in %g s", self.name, exc, RETRY_SECONDS)
                self._stop.wait(RETRY_SECONDS)

    def _synced(self, items: list[dict[str, Any]]) -> None:
        self._on_sync(items)
        self.synced.set()


async def start_all(watchers: list[Watcher], timeout: float) -> None:
    """Start them, and return once each has delivered its first list (TimeoutError after ``timeout``)."""
    for w in watchers:
        w.start()
    await asyncio.wait_for(asyncio.gather(*(w.synced.wait() for w in watchers)), timeout)


def _json(response: Any) -> dict[str, Any]:
    import json

    try:
        return json.loads(response.data)
    finally:
        response.release_conn()

"""Named, referenced, supervised tasks.

``spawn`` keeps a reference to short-lived tasks (connections) until they end and logs what
they raise. ``supervise`` runs a long-lived loop (discovery watch, certificate rotation) and
restarts it with backoff if it fails. ``close`` cancels everything on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger("meshdojo.proxy.tasks")


class TaskSet:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def supervise(self, factory: Callable[[], Coroutine[Any, Any, Any]], name: str,
                  backoff: float = 0.5, max_backoff: float = 10.0) -> asyncio.Task[Any]:
        async def loop() -> None:
            delay = backoff
            while True:
                try:
                    await factory()
                    return
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("task %s failed; restarting in %.1fs", name, delay)
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, max_backoff)

        return self.spawn(loop(), name)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s crashed", task.get_name(), exc_info=task.exception())

    def __len__(self) -> int:
        return len(self._tasks)

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

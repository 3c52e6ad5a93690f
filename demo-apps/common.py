"""Shared by the demo apps: how they read their settings and make outgoing calls.

The demo apps are mesh-unaware: they read PORT/BIND_HOST and their peers' addresses from
the environment and make plain HTTP calls. ``trust_env=True`` makes those calls honour
``HTTP_PROXY``/``NO_PROXY``, which is all the mesh needs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from aiohttp import ClientSession, ClientTimeout, web


def setting(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        sys.exit(f"error: environment variable {name} is required")
    return value


def client(timeout: float) -> ClientSession:
    return ClientSession(trust_env=True, timeout=ClientTimeout(total=timeout))


def serve(app: web.Application) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    web.run_app(app, host=setting("BIND_HOST", "127.0.0.1"), port=int(setting("PORT")), print=None, access_log=None)


def run_forever(coro) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        asyncio.run(coro)
    except KeyboardInterrupt:
        pass

"""Process entry: logging, event loop (uvloop where available), friendly start-up errors."""

from __future__ import annotations

import asyncio
import logging
import sys

from controlplane.castore import CaStoreError
from controlplane.config import ControlPlaneConfig


def run_loop(coro) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)


def main_with(config: ControlPlaneConfig) -> int:
    from controlplane.server import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        run_loop(serve(config))
    except CaStoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: could not start the control plane: {exc}. Is another process using the port? Try --api-port 0.", file=sys.stderr)
        return 2
    return 0

"""Process entry: logging, event loop (uvloop where available), friendly start-up errors."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the proxy imports run_loop alone, without the control plane's CA (and cryptography)
    from controlplane.config import ControlPlaneConfig


def run_loop(coro) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)


def main_with(config: ControlPlaneConfig) -> int:
    from controlplane.castore import StartupError
    from controlplane.server import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        run_loop(serve(config))
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: could not start the control plane: {exc}. Is another process using the port? Try --api-port 0.", file=sys.stderr)
        return 2
    return 0

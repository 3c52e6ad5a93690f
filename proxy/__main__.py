"""``python -m proxy --controlplane URL --trust-anchor FILE --namespace NS --service-account SA --app-port N``."""

from __future__ import annotations

import logging
import sys

from controlplane.run import run_loop
from proxy.config import parse_args
from proxy.cpclient import ControlPlaneError


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s %(levelname)s proxy[{config.workload or config.identity.service_account}] %(message)s",
                        stream=sys.stderr)
    from proxy.app import serve

    try:
        run_loop(serve(config))
    except ControlPlaneError as exc:
        print(f"error: could not obtain an identity from the control plane: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: could not start the proxy: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

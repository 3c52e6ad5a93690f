"""An external authorizer, as Istio's ``samples/extauthz`` (its HTTP side): ``python app.py``.

A sidecar asks it about a request (a CUSTOM AuthorizationPolicy, an ExtensionProvider naming
this service) with the request's method, path and the headers the provider includes. It allows
a request that carries ``x-ext-authz: allow`` (200) and denies every other one (403), saying
what it looked for; ``x-ext-authz-check-received`` tells what the check request carried, so a
learner sees what the sidecar sent. It knows nothing of the mesh.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import Reply, Request, serve

ALLOW_HEADER, ALLOW_VALUE = "x-ext-authz", "allow"


def check(request: Request) -> Reply:
    received = f"{request.method} {request.path}; " + ", ".join(
        f"{name}: {value}" for name, value in sorted(request.headers.items()) if name not in ("content-length",))
    if request.headers.get(ALLOW_HEADER) == ALLOW_VALUE:
        return Reply(200, b"", "text/plain", {"x-ext-authz-check-result": "allowed", "x-ext-authz-check-received": received[:1000]})
    body = f"denied by ext_authz for not found header `{ALLOW_HEADER}: {ALLOW_VALUE}` in the request\n".encode()
    return Reply(403, body, "text/plain", {"x-ext-authz-check-result": "denied", "x-ext-authz-check-received": received[:1000]})


if __name__ == "__main__":
    serve({"/": check})

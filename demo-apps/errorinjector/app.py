"""An error injector, as Linkerd's fault injection task deploys one (an nginx that answers 500 to
everything): ``python app.py``. A route that sends a share of a Service's requests here makes
that share fail, without touching the Service's own code. It knows nothing of the mesh.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import Reply, Request, serve


def fail(request: Request) -> Reply:
    return Reply(500, f"error-injector: {request.method} {request.path} fails here, on purpose\n".encode(), "text/plain", {})


if __name__ == "__main__":
    serve({"/": fail})

"""``make e2e-kind``: the whole cluster path on a machine with Docker and kind.

    images build → up --backend kind (create the cluster, load the image, install, the demo)
    → a request through the gateway on http://127.0.0.1:8080 → a fault seen in `stat`
    → mTLS seen in `edges` → down (the cluster is deleted: meshdojo made it)

Where it cannot run it prints one line naming what is missing and exits 2 (on our CI machines:
kind's node image, which needs a registry). Not part of `make test`: it makes a real cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request

NAME = "e2e"
MISSING = 2


def _missing() -> str | None:
    """What this machine lacks for the run, in one line (None: nothing)."""
    from sandbox.kube import image, providers

    for tool in ("kind", "kubectl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (the flow drives the real {tool})"
    try:
        client = image.engine()
    except image.ImageError as exc:
        return str(exc)
    node = os.environ.get("MESHDOJO_KIND_NODE_IMAGE", providers.KIND_NODE_IMAGE)
    if not client.images.list(name=node):
        try:
            client.images.pull(node)
        except Exception as exc:  # docker's APIError and friends: one line says it all
            return f"kind's node image {node} is not on this Docker engine and cannot be pulled ({str(exc).splitlines()[0][:160]})"
    return None


def meshdojo(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "sandbox.cli", *args, "--name", NAME], capture_output=True, text=True, timeout=timeout)
    print(f"$ meshdojo {' '.join(args)}  → exit {done.returncode}")
    if done.returncode != 0:
        raise SystemExit(f"e2e-kind failed at `meshdojo {' '.join(args)}`:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(1)  # a cluster's pace: seconds
    raise SystemExit(f"e2e-kind failed: no {what} after {timeout:g}s")


def main() -> int:
    if missing := _missing():
        print(f"e2e-kind cannot run here: {missing}")
        return MISSING
    began = time.monotonic()
    meshdojo("images", "build")
    try:
        meshdojo("up", "--backend", "kind", "--demo", "emojivoto", "--no-tui")

        def page():
            try:
                with urllib.request.urlopen("http://127.0.0.1:8080/api/list", timeout=5) as rsp:
                    return rsp.status == 200 and b"doughnut" in rsp.read()
            except OSError:
                return False

        wait_for(page, 120, "emoji list through the gateway on 127.0.0.1:8080")
        meshdojo("fault", "inject", "voting", "--abort", "500", "--percent", "100", "--for", "5m")

        def voting_fails():
            rows = json.loads(meshdojo("stat", "-o", "json").stdout)
            return any(r.get("name") == "voting" and (r.get("success_rate") if r.get("success_rate") is not None else 1) < 0.5 for r in rows)

        wait_for(voting_fails, 120, "failing voting in `meshdojo stat`")

        def mtls_edges():
            edges = json.loads(meshdojo("edges", "-o", "json").stdout)
            return any(e.get("secured") for e in edges)

        wait_for(mtls_edges, 120, "mTLS edge in `meshdojo edges`")
    finally:
        meshdojo("down", timeout=600)
    clusters = subprocess.run(["kind", "get", "clusters"], capture_output=True, text=True).stdout.split()
    if f"meshdojo-{NAME}" in clusters:
        raise SystemExit("e2e-kind failed: `down` left the kind cluster behind")
    print(f"e2e-kind passed in {time.monotonic() - began:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

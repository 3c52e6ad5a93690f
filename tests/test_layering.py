"""Layering, checked mechanically: the proxy never imports the UI, the launcher or a web
framework; the control plane never imports the UI."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(("module", "forbidden"), [
    ("proxy.app", ("tui", "sandbox", "textual", "aiohttp")),
    ("proxy.__main__", ("tui", "sandbox", "textual", "aiohttp")),
    ("controlplane.server", ("tui", "textual", "sandbox", "proxy")),
])
def test_imports(module, forbidden):
    code = f"import sys, {module}; print(' '.join(sorted(sys.modules)))"
    loaded = set(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split())
    bad = sorted(m for m in loaded if m.split(".")[0] in forbidden)
    assert bad == [], f"{module} pulls in {bad}"

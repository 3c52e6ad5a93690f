"""The name of meshdojo's one image: ``meshdojo/meshdojo:<version>-<content hash>``, never
``:latest``, so a cluster never runs code other than the code that injected it."""

from __future__ import annotations

import hashlib
from importlib import metadata
from pathlib import Path

REPOSITORY = "meshdojo/meshdojo"
ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("controlplane", "proxy", "sandbox", "tui")


def content_hash(root: Path = ROOT) -> str:
    """12 hex digits over every Python file of the packages that go into the image, by path and content."""
    digest = hashlib.sha256()
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def version() -> str:
    try:
        return metadata.version("meshdojo")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def image_ref(root: Path = ROOT) -> str:
    return f"{REPOSITORY}:{version()}-{content_hash(root)}"

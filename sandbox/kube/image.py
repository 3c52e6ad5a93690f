"""meshdojo's one image: its name, its build context, and building, saving and loading it through
the ``docker`` SDK (see the Dockerfile at the repository's root for what goes in).

The name is ``meshdojo/meshdojo:<version>-<content hash>``, never ``:latest``, so a cluster never
runs code other than the code that injected it. The build context is assembled here, with every
dependency as a wheel for the engine's platform resolved with ``constraints.txt``, so the build
itself downloads nothing: the only thing it needs from a registry is the base image, and
``--base`` takes one the engine already has.
"""

from __future__ import annotations

import hashlib
import platform
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

REPOSITORY = "meshdojo/meshdojo"
ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("controlplane", "proxy", "sandbox", "tui")
# what else decides the image's content: the demo apps and how the image is made
HASHED_EXTRA = ("demo-apps", "Dockerfile", "constraints.txt", "pyproject.toml")
GLIBC_TAGS = tuple(f"manylinux_2_{minor}" for minor in range(17, 37))  # up to Debian bookworm's glibc 2.36


class ImageError(RuntimeError):
    """Building, saving or loading the image failed; the message says what to do."""


def _hashed_files(root: Path) -> Iterator[Path]:
    for name in (*PACKAGES, *HASHED_EXTRA):
        path = root / name
        if path.is_file():
            yield path
        elif path.is_dir():
            yield from (p for p in sorted(path.rglob("*")) if p.is_file() and "__pycache__" not in p.parts)


def content_hash(root: Path = ROOT) -> str:
    """12 hex digits over every file that goes into the image (by path and content)."""
    digest = hashlib.sha256()
    for path in _hashed_files(root):
        if path.suffix == ".pyc":
            continue
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def version() -> str:
    try:
        return metadata.version("meshdojo")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def image_ref(root: Path = ROOT) -> str:
    return f"{REPOSITORY}:{version()}-{content_hash(root)}"


# -- the build context ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """What the wheels are for: the image's Python and the engine's CPU."""

    python: str  # "3.11"
    machine: str  # "x86_64", "aarch64"

    @property
    def default_base(self) -> str:
        return f"python:{self.python}-slim"

    def pip_platform_args(self) -> list[str]:
        args = ["--only-binary=:all:", "--python-version", self.python, "--implementation", "cp",
                "--abi", f"cp{self.python.replace('.', '')}"]
        for tag in (*GLIBC_TAGS, "manylinux2014"):
            args += ["--platform", f"{tag}_{self.machine}"]
        return args


def local_target(engine_machine: str | None = None) -> Target:
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(engine_machine or "", engine_machine or platform.machine())
    return Target(f"{sys.version_info.major}.{sys.version_info.minor}", machine)


def requirements(root: Path = ROOT) -> list[str]:
    """meshdojo's runtime dependencies, as pyproject.toml states them."""
    return list(tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"])


def pip_commands(root: Path, context: Path, target: Target) -> list[list[str]]:
    """The two pip runs that fill ``wheels/`` (the dependencies, pinned) and ``dist/`` (meshdojo)."""
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    return [
        [*pip, "download", "--dest", str(context / "wheels"), "-c", str(root / "constraints.txt"),
         *target.pip_platform_args(), "-r", str(context / "requirements.txt")],
        [*pip, "wheel", "--no-deps", "--wheel-dir", str(context / "dist"), str(root)],
    ]


def assemble_context(context: Path, target: Target, root: Path = ROOT,
                     run: Callable[[list[str]], subprocess.CompletedProcess[str]] | None = None) -> Path:
    """Fill ``context`` with what the Dockerfile copies (see its header)."""
    run = run or (lambda argv: subprocess.run(argv, capture_output=True, text=True, timeout=600))
    context.mkdir(parents=True, exist_ok=True)
    shutil.copy2(root / "Dockerfile", context / "Dockerfile")
    shutil.copytree(root / "demo-apps", context / "demo-apps", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (context / "requirements.txt").write_text("\n".join(requirements(root)) + "\n")
    # meshdojo's wheel is built from a copy, so no build/ folder is left in (or reused from) the checkout
    source = context / "source"
    source.mkdir(exist_ok=True)
    for name in ("pyproject.toml", "README.md", "constraints.txt"):
        shutil.copy2(root / name, source / name)
    for package in PACKAGES:
        shutil.copytree(root / package, source / package, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for argv in pip_commands(source, context, target):
        done = run(argv)
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-6:])
            raise ImageError(f"pip could not gather meshdojo's wheels for Python {target.python} on {target.machine}:\n{tail}\n"
                             "check that pip reaches your package index (pip config list), or build on a machine that does")
    return context


# -- the engine -----------------------------------------------------------------------------------

def engine(client_factory: Callable[[], Any] | None = None) -> Any:
    """A ``docker`` SDK client that answered a ping (``$DOCKER_HOST`` or the default socket)."""
    import docker
    from docker.errors import DockerException

    try:
        client = (client_factory or docker.from_env)()
        client.ping()
        return client
    except DockerException as exc:
        raise ImageError(f"no Docker engine answers ({_short(exc)}); start Docker (Docker Desktop, or `sudo systemctl start docker`), "
                         "or point DOCKER_HOST at one") from None


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:240]


def build(client: Any, context: Path, tag: str, base: str, progress: Callable[[str], None] = lambda line: None) -> str:
    """Build ``context`` as ``tag`` on ``base`` with the engine's classic builder, each step's
    output given to ``progress``; returns the image's id."""
    from docker.errors import APIError

    image_id = None
    last: list[str] = []
    try:
        for chunk in client.api.build(path=str(context), tag=tag, buildargs={"BASE": base}, rm=True, forcerm=True,
                                      decode=True, pull=False, labels={"app.kubernetes.io/part-of": "meshdojo"}):
            if "error" in chunk:
                raise ImageError(_build_hint(chunk["error"].strip(), base, last))
            for line in (chunk.get("stream") or "").splitlines():
                if line.strip():
                    last = [*last[-5:], line]
                    progress(line)
            if "aux" in chunk and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
    except APIError as exc:
        raise ImageError(_build_hint(_short(exc), base, last)) from None
    if image_id is None:
        image_id = client.images.get(tag).id
    return image_id


def _build_hint(error: str, base: str, last: Iterable[str]) -> str:
    context = "\n".join(f"  {line}" for line in last)
    if any(word in error for word in ("pull access denied", "manifest unknown", "dial tcp", "no such host", "not found")) \
            and ("FROM" in context or "Step 1/" in context or not context):
        return (f"the base image {base} is not on this engine and cannot be pulled ({error}); "
                "`docker pull` it where a registry is reachable, or pass --base IMAGE with one `docker images` lists")
    if "No matching distribution" in context or "Could not find a version" in context:
        return (f"the image's Python does not match the wheels ({error}); the base must have Python "
                f"{sys.version_info.major}.{sys.version_info.minor} like this machine, or pass --python X.Y\n{context}")
    return f"the image build failed: {error}\n{context}"


def save(client: Any, tag: str, path: Path) -> int:
    """``docker save`` of ``tag`` into ``path`` (a tar archive); returns its size in bytes."""
    from docker.errors import ImageNotFound

    try:
        image = client.images.get(tag)
    except ImageNotFound:
        raise ImageError(f"no image {tag} on this engine; build it first: meshdojo images build") from None
    part = path.with_name(path.name + ".part")
    with part.open("wb") as out:
        for chunk in image.save(named=tag):
            out.write(chunk)
    part.replace(path)
    return path.stat().st_size


def load(client: Any, path: Path) -> list[str]:
    """``docker load`` of an archive ``save`` wrote; returns the tags it held."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(f"cannot read {path}: {exc.strerror}") from None
    from docker.errors import DockerException

    try:
        images = client.images.load(data)
    except DockerException as exc:
        raise ImageError(f"{path} is not an image archive ({_short(exc)}); make one with: meshdojo images save FILE") from None
    return [tag for image in images for tag in image.tags]

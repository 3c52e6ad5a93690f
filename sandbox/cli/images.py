"""``images build | save | load``: meshdojo's one image, through the ``docker`` SDK."""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

from sandbox.cli.common import fail

STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)")


def _progress(verbose: bool, started: float):
    """Each of the build's steps on one line with the time so far; every line with -v."""
    def show(line: str) -> None:
        if step := STEP.match(line):
            print(f"[{time.monotonic() - started:5.1f}s] step {step[1]}/{step[2]}: {step[3][:100]}", flush=True)
        elif verbose:
            print(f"         {line}", flush=True)
    return show


def _build(args: argparse.Namespace) -> int:
    from sandbox.kube import image

    started = time.monotonic()
    try:
        client = image.engine()
        target = image.local_target(client.info().get("Architecture"))
        if args.python:
            target = image.Target(args.python, target.machine)
        base = args.base or target.default_base
        tag = args.tag or image.image_ref()
        print(f"Gathering meshdojo's wheels for Python {target.python} on {target.machine} (pinned by constraints.txt) ...", flush=True)
        with tempfile.TemporaryDirectory(prefix="meshdojo-image-") as tmp:
            context = image.assemble_context(Path(tmp), target)
            print(f"Building {tag} on {base} ...", flush=True)
            image_id = image.build(client, context, tag, base, _progress(args.verbose, started))
    except image.ImageError as exc:
        return fail(str(exc))
    print(f"Built {tag} ({image_id[:19]}) in {time.monotonic() - started:.1f}s. "
          f"Next: `meshdojo images save meshdojo.tar` for a room without a registry, or `meshdojo up --backend kind`")
    return 0


def _save(args: argparse.Namespace) -> int:
    from sandbox.kube import image

    tag = args.tag or image.image_ref()
    try:
        size = image.save(image.engine(), tag, args.file)
    except image.ImageError as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(f"cannot write {args.file}: {exc.strerror}")
    print(f"Saved {tag} to {args.file} ({size / 1e6:.0f} MB). On each laptop: `meshdojo images load {args.file.name}`, "
          f"or `meshdojo up --backend kind --image-archive {args.file.name}`")
    return 0


def _load(args: argparse.Namespace) -> int:
    from sandbox.kube import image

    try:
        tags = image.load(image.engine(), args.file)
    except image.ImageError as exc:
        return fail(str(exc))
    print(f"Loaded {', '.join(tags) or 'an untagged image'} from {args.file}")
    return 0


def _ref(_args: argparse.Namespace) -> int:
    from sandbox.kube.image import image_ref

    print(image_ref())
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("images", help="build, save and load meshdojo's image (control plane, proxy and demo apps)",
                       description="meshdojo's one image, tagged <version>-<content hash> (never :latest). It is built through "
                                   "the Docker engine ($DOCKER_HOST or the default socket) from wheels gathered here, so the "
                                   "build downloads nothing but its base image.")
    verbs = p.add_subparsers(dest="images_command", metavar="VERB", required=True)
    b = verbs.add_parser("build", help="build the image for this checkout")
    b.add_argument("--base", help="the base image: Debian-like with python3 and venv (default: python:X.Y-slim for --python)")
    b.add_argument("--python", metavar="X.Y", help="the base image's Python version (default: this interpreter's)")
    b.add_argument("--tag", help="another tag than meshdojo/meshdojo:<version>-<content hash>")
    b.add_argument("-v", "--verbose", action="store_true", help="every line of the build, not only its steps")
    b.set_defaults(handler=_build)
    s = verbs.add_parser("save", help="write the image to a tar archive (for kind/minikube without a registry)")
    s.add_argument("file", type=Path, help="the archive to write, e.g. meshdojo.tar")
    s.add_argument("--tag", help="the image to save (default: this checkout's)")
    s.set_defaults(handler=_save)
    ld = verbs.add_parser("load", help="load an archive `images save` wrote into the Docker engine")
    ld.add_argument("file", type=Path, help="an archive `meshdojo images save` wrote")
    ld.set_defaults(handler=_load)
    r = verbs.add_parser("ref", help="print this checkout's image name")
    r.set_defaults(handler=_ref)

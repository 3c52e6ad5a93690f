"""Which backend a sandbox runs on, and the remembering of that choice.

``meshdojo up --backend local|kind|minikube|context[=NAME]`` chooses (``$MESHDOJO_BACKEND`` when
the flag is left out, ``local`` when both are); the choice is kept in the sandbox's folder, so
every later command (``status``, ``scale``, the UI ...) talks to the same place without the flag.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sandbox.errors import SandboxError

KINDS = ("local", "kind", "minikube", "context")
ENV = "MESHDOJO_BACKEND"
FILE = "backend.json"


@dataclass(frozen=True)
class BackendChoice:
    kind: str = "local"
    context: str | None = None  # context: the kubeconfig's context (None: its current one)
    kubeconfig: str | None = None  # None: $KUBECONFIG or ~/.kube/config
    image: str | None = None  # None: this checkout's image (meshdojo images ref)
    image_archive: str | None = None  # kind/minikube: load this archive instead of building
    # a control plane that runs outside the cluster (developing meshdojo; the tests' cluster,
    # whose kwok pods run nothing): its operator API, and the URL the webhook is registered at
    controlplane_url: str | None = None
    webhook_url: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def is_kubernetes(self) -> bool:
        return self.kind != "local"

    def describe(self) -> str:
        return f"context={self.context}" if self.kind == "context" and self.context else self.kind


def parse(text: str) -> BackendChoice:
    """``local``, ``kind``, ``minikube``, ``context`` or ``context=NAME``."""
    kind, _, context = text.strip().partition("=")
    if kind not in KINDS:
        raise SandboxError(f"unknown backend {text!r}; choose from local, kind, minikube, context or context=NAME "
                           "(e.g. --backend kind)")
    if context and kind != "context":
        raise SandboxError(f"--backend {text}: only 'context' takes a name (context=NAME)")
    return BackendChoice(kind=kind, context=context or None)


def remembered(root: Path) -> BackendChoice | None:
    try:
        data = json.loads((root / FILE).read_text())
        return BackendChoice(**data)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise SandboxError(f"cannot read {root / FILE} ({exc.strerror}); set MESHDOJO_HOME to a directory you can write to") from None
    except (ValueError, TypeError) as exc:
        raise SandboxError(f"{root / FILE} is unreadable ({exc}); delete it and run `meshdojo up --backend ...` again") from None


def remember(root: Path, choice: BackendChoice) -> None:
    from controlplane.statefiles import write_json

    root.mkdir(parents=True, exist_ok=True)
    write_json(root / FILE, asdict(choice))


def forget(root: Path) -> None:
    (root / FILE).unlink(missing_ok=True)


def resolve(root: Path, given: str | None) -> BackendChoice:
    """The flag, else what this sandbox remembers, else ``$MESHDOJO_BACKEND``, else local."""
    if given:
        return parse(given)
    if (kept := remembered(root)) is not None:
        return kept
    if os.environ.get(ENV):
        return parse(os.environ[ENV])
    return BackendChoice()

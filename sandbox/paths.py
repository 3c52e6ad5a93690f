"""Where a sandbox keeps its state: ``$MESHDOJO_HOME/<name>`` (default: the user's state directory)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$")


def home() -> Path:
    if "MESHDOJO_HOME" in os.environ:
        return Path(os.environ["MESHDOJO_HOME"])
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "meshdojo"


@dataclass(frozen=True)
class SandboxPaths:
    name: str
    root: Path

    @classmethod
    def for_name(cls, name: str) -> SandboxPaths:
        if not NAME.match(name):
            raise ValueError(f"sandbox name {name!r} must be lowercase letters, digits and '-' (e.g. 'default', 'class-b')")
        return cls(name, home() / name)

    @property
    def supervisor(self) -> Path:
        return self.root / "supervisor.json"  # pid of the supervisor and the process groups it started

    @property
    def status(self) -> Path:
        return self.root / "status.json"

    @property
    def controlplane(self) -> Path:
        return self.root / "controlplane"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def secrets(self) -> Path:
        return self.root / "tokens"

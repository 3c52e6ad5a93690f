"""Writing secrets and state to disk: private directories, 0600 files, atomic replace."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) as 0700; tighten it if it already exists."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def write_private(path: Path, data: bytes | str) -> None:
    """Atomically write ``data`` to ``path`` with mode 0600 (never visible with looser bits)."""
    raw = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, raw)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def json_text(value: Any) -> str:
    """How state files hold JSON: indented, keys sorted, one newline at the end."""
    return json.dumps(value, indent=2, sort_keys=True) + "\n"


def write_json(path: Path, value: Any) -> None:
    write_private(path, json_text(value))


class JsonRecord:
    """A JSON state file rewritten only when its content changes — and, with ``heartbeat``, at
    least every ``heartbeat`` seconds, so that its age says whether its writer is alive. A
    writer that runs every fraction of a second then costs no write (and no fsync) while
    nothing changes."""

    def __init__(self, path: Path, heartbeat: float | None = None) -> None:
        self.path = path
        self.heartbeat = heartbeat
        self._text: str | None = None
        self._written = 0.0

    def due(self, text: str, now: float, exists: bool) -> bool:
        """Whether ``text`` must be written at ``now`` (a monotonic clock): pure, for tests."""
        stale = self.heartbeat is not None and now - self._written >= self.heartbeat
        return text != self._text or stale or not exists

    def write(self, value: Any, now: float) -> bool:
        text = json_text(value)
        if not self.due(text, now, self.path.exists()):
            return False
        write_private(self.path, text)
        self._text, self._written = text, now
        return True


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())

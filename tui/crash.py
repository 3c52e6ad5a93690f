"""What happens when the UI itself fails: the traceback goes to a file, the learner gets one
line saying where, the process exits non-zero, and the sandbox keeps running."""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import traceback
from pathlib import Path

from sandbox.paths import SandboxPaths


def crash_log_path(sandbox: str, now: dt.datetime | None = None) -> Path:
    """``<sandbox>/logs/tui-crash-<UTC time>.log`` (or the temp directory when that is not writable)."""
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%S")
    try:
        folder = SandboxPaths.for_name(sandbox).logs
        folder.mkdir(parents=True, exist_ok=True)
        if os.access(folder, os.W_OK):
            return folder / f"tui-crash-{stamp}.log"
    except (OSError, ValueError):
        pass
    return Path(tempfile.gettempdir()) / f"meshdojo-tui-crash-{stamp}.log"


def write_crash_log(sandbox: str, error: BaseException, context: str = "") -> Path:
    path = crash_log_path(sandbox)
    text = "".join(traceback.format_exception(error))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"meshdojo tui crashed at {dt.datetime.now(dt.UTC).isoformat()}{' ' + context if context else ''}\n{text}\n")
    return path


def one_line(error: BaseException) -> str:
    """The exception as one short line: its type and the first line of its message."""
    message = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
    return f"{type(error).__name__}: {message}" if message else type(error).__name__

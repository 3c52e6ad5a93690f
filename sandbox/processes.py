"""Starting child processes so that none outlives us.

Each child gets its own process group (so a whole tree can be signalled) and, on Linux,
``PR_SET_PDEATHSIG``: if the process that started it dies — even by SIGKILL — the kernel
kills the child too. Waits are conditions with deadlines, never bare sleeps.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

T = TypeVar("T")
PR_SET_PDEATHSIG = 1


class WaitTimeout(TimeoutError):
    pass


class Child(Protocol):
    """A started child as the supervisor sees it: ``subprocess.Popen``, or a fork server's
    child (:class:`sandbox.forkserver.ForkedProcess`)."""

    pid: int
    returncode: int | None

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def die_with_parent() -> None:
    """This process gets SIGKILL when its parent ends, however it ends (Linux)."""
    _die_with_parent()


def spawn(argv: Sequence[str], log_path: Path, env: dict[str, str] | None = None, *,
          die_with_parent: bool = True, cwd: Path | None = None, pipes: bool = False) -> subprocess.Popen[bytes]:
    """Start ``argv`` with stdout and stderr appended to ``log_path``, in a new process group.
    With ``pipes``, its stdin and stdout are pipes to us instead (stderr still goes to the log)."""
    log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    log = open(log_path, "ab", buffering=0)
    stdin, stdout = (subprocess.PIPE, subprocess.PIPE) if pipes else (subprocess.DEVNULL, log)
    try:
        return subprocess.Popen(
            list(argv), stdin=stdin, stdout=stdout, stderr=log, env=env, cwd=cwd,
            start_new_session=True, preexec_fn=_die_with_parent if die_with_parent else None,
        )
    finally:
        log.close()


def kill_group(proc: Child, wait: float = 2.0) -> None:
    """SIGKILL the child's process group, and wait up to ``wait`` for its exit to be seen."""
    _signal_group(proc.pid, signal.SIGKILL)
    try:
        proc.wait(wait)
    except subprocess.TimeoutExpired:
        pass


def stop_group(proc: Child, grace: float = 5.0) -> None:
    """SIGTERM the child's process group, then SIGKILL whatever is left after ``grace``."""
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    _signal_group(proc.pid, signal.SIGKILL)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        pass


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def wait_until(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.02) -> T:
    """Poll ``check`` until it returns something truthy; raise WaitTimeout naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise WaitTimeout(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True


def stop_groups(procs: Sequence[Child], grace: float = 5.0) -> None:
    """Like :func:`stop_group` for many children at once: one grace period for all of them."""
    for proc in procs:
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(max(deadline - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            pass
    for proc in procs:
        _signal_group(proc.pid, signal.SIGKILL)
        try:
            proc.wait(1)
        except subprocess.TimeoutExpired:
            pass

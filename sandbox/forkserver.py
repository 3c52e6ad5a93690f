"""A fork server for the sandbox's sidecars: one process that imports the proxy once, then
forks a child for every sidecar (and ingress gateway) the supervisor starts.

Starting a proxy with ``python -m proxy`` spends most of its CPU before it does anything:
the interpreter, asyncio with ``ssl``, uvloop, ``prometheus_client`` and our own modules,
about 0.2 s of CPU each, a dozen times over while ``meshdojo up`` brings both demos up on two
cores. A forked child starts with all of that already imported, in pages it shares with the
fork server until it writes to them (``gc.freeze()`` keeps the collector from writing to
them), and runs the same ``main`` as ``python -m proxy`` with the same argv.

The supervisor talks to it over its stdin and stdout, one JSON object per line:

    → {"argv": ["…/python", "-m", "proxy", …], "log": "/…/logs/web-0.proxy.log"}
    ← {"pid": 4242}                 (or {"error": "…"})
    ← {"exited": 4242, "code": -15} (whenever a child ends: the fork server is its parent)

What a child keeps from ``spawn``'s contract (:mod:`sandbox.processes`): its own session and
process group, stdin from /dev/null, stdout and stderr appended to its log, and
``PR_SET_PDEATHSIG`` — it dies with the fork server, which dies with the supervisor, so
nothing outlives a SIGKILLed supervisor. Only ``python -m proxy`` is run this way; anything
else, or everything once the fork server is gone, is started by ``spawn``.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from sandbox.processes import die_with_parent, spawn

log = logging.getLogger("meshdojo.forkserver")
MODULE = "proxy"  # what it can run: ``python -m proxy``
EXIT_UNKNOWN = -signal.SIGKILL  # a child of a fork server that died was killed with it (PDEATHSIG)


def runs(argv: list[str]) -> bool:
    """Whether ``argv`` is what the fork server runs: this interpreter with ``-m proxy``."""
    return argv[:3] == [sys.executable, "-m", MODULE]


# -- the supervisor's end --------------------------------------------------------------------
class ForkedProcess:
    """A child of the fork server, seen from the supervisor: the part of ``subprocess.Popen``
    the supervisor uses (``pid``, ``returncode``, ``poll``, ``wait``). Its exit is reported by
    the fork server, which is its parent."""

    def __init__(self, pid: int, server: ForkServer) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._server = server

    def poll(self) -> int | None:
        if self.returncode is None:
            self._server.collect()
            self.returncode = self._server.exit_code(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(f"{MODULE} [{self.pid}]", timeout or 0)
            self._server.collect(timeout=0.1 if left is None else min(left, 0.1))
        assert self.returncode is not None
        return self.returncode


class ForkServer:
    """Starts the fork server and asks it for children; learns their exits from its replies."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.popen: subprocess.Popen[bytes] | None = None
        self._buffer = b""
        self._exits: dict[int, int] = {}
        self._children: set[int] = set()
        self._gone = False

    def start(self) -> None:
        """Start it; it imports the proxy while the supervisor goes on (the first ``spawn`` waits)."""
        self.popen = spawn([sys.executable, "-m", "sandbox.forkserver"], self.log_path, pipes=True)

    @property
    def alive(self) -> bool:
        if self.popen is None or self._gone:
            return False
        if self.popen.poll() is not None:
            self.collect()  # the exits it reported before it died, then its end
            return False
        return True

    def spawn(self, argv: list[str], log_path: Path, timeout: float = 10.0) -> ForkedProcess | None:
        """A forked child running ``argv``, or None when the fork server cannot (it is gone, or
        did not answer within ``timeout``): the caller starts the process itself."""
        if not self.alive or not runs(argv):
            return None
        assert self.popen is not None and self.popen.stdin is not None
        try:
            self.popen.stdin.write(json.dumps({"argv": argv, "log": str(log_path)}).encode() + b"\n")
            self.popen.stdin.flush()
        except OSError:
            self._lost("its pipe is closed")
            return None
        deadline = time.monotonic() + timeout
        while self.alive:
            reply = self._next_reply(deadline - time.monotonic())
            if reply is None:
                break
            if "pid" in reply:
                self._exits.pop(reply["pid"], None)  # a pid used again: what was recorded is the old child's
                self._children.add(reply["pid"])
                return ForkedProcess(reply["pid"], self)
            log.warning("the fork server could not start %s: %s", log_path.name, reply.get("error"))
            return None
        self._lost("it did not answer")
        return None

    def collect(self, timeout: float = 0.0) -> None:
        """Read the exits it has reported (waiting up to ``timeout`` for one)."""
        while self.popen is not None and not self._gone:
            reply = self._next_reply(timeout, exits_only=True)
            if reply is None:
                return
            timeout = 0.0

    def exit_code(self, pid: int) -> int | None:
        """The exit status of child ``pid`` once it has ended (handed out once: its
        :class:`ForkedProcess` keeps it), else None."""
        if pid in self._exits:
            return self._exits.pop(pid)
        if self._gone and pid in self._children:
            self._children.discard(pid)
            return EXIT_UNKNOWN
        return None

    def stop(self, grace: float = 5.0) -> None:
        """End it (closing its stdin is its signal to exit); its children, if any are left, die with it."""
        if self.popen is None:
            return
        if self.popen.stdin is not None:
            try:
                self.popen.stdin.close()
            except OSError:
                pass
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(grace)
        self._gone = True
        if self.popen.stdout is not None:
            self.popen.stdout.close()

    # -- internals ------------------------------------------------------------------------
    def _next_reply(self, timeout: float, exits_only: bool = False) -> dict | None:
        """The next reply that is not an exit notice (exits are recorded on the way), or None
        after ``timeout``; with ``exits_only``, None as soon as no exit notice is waiting."""
        assert self.popen is not None and self.popen.stdout is not None
        fd = self.popen.stdout.fileno()
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            line, sep, rest = self._buffer.partition(b"\n")
            if sep:
                self._buffer = rest
                reply = json.loads(line)
                if "exited" in reply:
                    self._exits[reply["exited"]] = reply["code"]
                    self._children.discard(reply["exited"])
                    if exits_only:
                        return reply
                    continue
                return reply
            left = deadline - time.monotonic()
            if not select.select([fd], [], [], max(left, 0.0))[0]:
                return None
            data = os.read(fd, 65536)
            if not data:
                self._lost("it exited")
                return None
            self._buffer += data

    def _lost(self, why: str) -> None:
        if not self._gone:
            self._gone = True
            if self.popen is not None and self.popen.poll() is None:  # hung: end it, so that its children
                self.popen.kill()  # really are gone (PDEATHSIG) when they are reported so
                self.popen.wait()
            code = self.popen.poll() if self.popen is not None else None
            log.warning("the fork server is gone (%s, exit %s); proxies are started by exec from now on; see %s",
                        why, code, self.log_path)


# -- the fork server itself ---------------------------------------------------------------
def _child(argv: list[str], log_path: str, parent: int, handlers: dict[int, object]) -> int:
    """In the forked child: become what ``spawn`` would have started, then run the proxy."""
    os.setsid()
    die_with_parent()
    if os.getppid() != parent:  # the fork server died between fork() and prctl()
        return 1
    signal.set_wakeup_fd(-1)
    for sig, handler in handlers.items():
        signal.signal(sig, handler)  # type: ignore[arg-type]
    null = os.open(os.devnull, os.O_RDONLY)
    out = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))  # as spawn's close_fds: the pipes and the log's own descriptor
    from setproctitle import setproctitle

    from proxy.__main__ import main

    setproctitle(" ".join(argv))  # what ps shows for a sidecar started by exec
    sys.argv = [sys.modules["proxy.__main__"].__file__ or MODULE, *argv[3:]]
    try:
        return main(argv[3:])
    except SystemExit as exc:  # argparse's errors
        return exc.code if isinstance(exc.code, int) else 1


def _fork(request: dict, parent: int, handlers: dict[int, object]) -> int:
    argv, log_path = request["argv"], request["log"]
    if not runs(argv):
        raise ValueError(f"only `python -m {MODULE}` is run by the fork server, not {argv[:3]}")
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        code = _child(argv, log_path, parent, handlers)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)


def serve() -> int:
    import setproctitle  # noqa: F401 - imported here once, for every child
    import uvloop  # noqa: F401

    import proxy.__main__
    import proxy.app  # noqa: F401

    parent = os.getpid()
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM)}
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # only to wake the loop: exits are reaped below
    gc.freeze()  # what is imported stays in pages shared with the children
    buffer = b""

    def reply(message: dict) -> None:
        os.write(1, json.dumps(message).encode() + b"\n")

    while True:
        readable = select.select([0, wake_r], [], [])[0]
        if wake_r in readable:
            os.read(wake_r, 4096)
            while True:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if not pid:
                    break
                reply({"exited": pid, "code": os.waitstatus_to_exitcode(status)})
        if 0 in readable:
            data = os.read(0, 65536)
            if not data:  # the supervisor closed our stdin (or died): our children die with us
                return 0
            buffer += data
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                try:
                    reply({"pid": _fork(json.loads(line), parent, handlers)})
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    reply({"error": str(exc)})


if __name__ == "__main__":
    sys.exit(serve())

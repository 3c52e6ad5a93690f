"""What the proxy's memory is made of: what each group of its imports costs, resident and
private, and how long it takes to import.

Each group is measured in a fresh interpreter that has already imported the groups before it,
so a module two groups share is charged to the first (the order is the order of the layers:
Python's asyncio, then each library, then our own code). *Private* is the anonymous memory the
import adds (``RssAnon``: objects, code, the heap); the rest of the resident memory is shared
libraries (``RssFile``: libpython, OpenSSL, uvloop), which the kernel maps once for every
sidecar on a host.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

from bench.measure import BenchError, Section, Settings, Spread

# (what it is, the modules imported for it); the control plane's are filled in from the proxy's own imports
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Python's asyncio (with ssl, concurrent.futures)", ("asyncio",)),
    ("uvloop", ("uvloop",)),
    ("httptools", ("httptools",)),
    ("prometheus_client (with http.server, wsgiref, email, urllib)", ("prometheus_client",)),
    ("control-plane modules the proxy shares (policy schema, names, TLS contexts)", ()),
    ("the proxy's own modules", ("proxy.app",)),
)

# run in the child: nothing imported but what the groups name (no json: it would be in the baseline)
MEASURE = """
import importlib, sys, time
def memory():
    fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return int(fields["VmRSS"].split()[0]), int(fields["RssAnon"].split()[0])
for name in sys.argv[1].split():
    importlib.import_module(name)
rss, anon, modules, started = *memory(), len(sys.modules), time.perf_counter()
for name in sys.argv[2].split():
    importlib.import_module(name)
took = time.perf_counter() - started
rss2, anon2 = memory()
print(rss2 - rss, anon2 - anon, len(sys.modules) - modules, took, rss2, anon2)
"""


class Cost(NamedTuple):
    rss_kb: int  # resident memory the group added
    private_kb: int  # of which anonymous (private to the process)
    modules: int
    seconds: float  # to import it
    total_rss_kb: int  # the process after it
    total_private_kb: int


def measure(before: tuple[str, ...], group: tuple[str, ...]) -> Cost:
    result = subprocess.run([sys.executable, "-c", MEASURE, " ".join(before), " ".join(group)],
                            capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise BenchError(f"importing {' '.join(group) or 'nothing'}: {result.stderr.strip()[-500:]}")
    rss, private, modules, seconds, total_rss, total_private = result.stdout.split()
    return Cost(int(rss), int(private), int(modules), float(seconds), int(total_rss), int(total_private))


def shared_controlplane_modules() -> tuple[str, ...]:
    """The ``controlplane`` modules a running proxy has loaded (its import closure, not a list kept by hand)."""
    probe = "import sys, proxy.app; print(' '.join(sorted(m for m in sys.modules if m.startswith('controlplane.'))))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    if result.returncode != 0 or not result.stdout.split():
        raise BenchError(f"listing the proxy's control-plane imports: {result.stderr.strip()[-500:]}")
    return tuple(result.stdout.split())


def run(settings: Settings, root: Path) -> Section:
    section = Section("Proxy memory")
    controlplane = shared_controlplane_modules()
    groups = [(what, modules or controlplane) for what, modules in GROUPS]
    samples: dict[str, list[Cost]] = {}
    for _ in range(settings.repeats):  # interleaved: drift hits every group alike
        samples.setdefault("the interpreter alone", []).append(measure((), ()))
        before: tuple[str, ...] = ()
        for what, modules in groups:
            samples.setdefault(what, []).append(measure(before, modules))
            before += modules

    section.add(f"What each group of the proxy's imports adds, in a fresh interpreter that has imported the groups above it "
                f"({settings.repeats} run{'s' if settings.repeats != 1 else ''} each).")
    section.add()
    section.add("| imports | modules | resident added | of which private | import time ms |")
    section.add("|---|---|---|---|---|")
    base = samples.pop("the interpreter alone")
    section.add(f"| the interpreter alone (`python -c`) | — | {_mb(Spread.of(c.total_rss_kb for c in base))} | "
                f"{_mb(Spread.of(c.total_private_kb for c in base))} | — |")
    for what, costs in samples.items():
        rss, private = Spread.of(c.rss_kb for c in costs), Spread.of(c.private_kb for c in costs)
        took = Spread.of(c.seconds * 1000 for c in costs)
        section.figure(f"{what} RSS MB", rss.median / 1024)
        section.add(f"| {what} | {costs[0].modules} | {_mb(rss)} | {_mb(private)} | {took.show('.0f')} |")
    last = samples[groups[-1][0]]
    total, total_private = Spread.of(c.total_rss_kb for c in last), Spread.of(c.total_private_kb for c in last)
    section.figure("imported RSS MB", total.median / 1024)
    section.figure("imported private MB", total_private.median / 1024)
    section.add()
    section.add(f"- everything the proxy imports, before it starts: {_mb(total)} resident, {_mb(total_private)} of it private")
    return section


def _mb(kb: Spread) -> str:
    """MB with one decimal; the range only when it shows at that precision."""
    mb = kb.map(lambda v: round(v / 1024, 1))
    return mb.show(".1f", " MB")

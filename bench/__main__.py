"""``make bench``: every benchmark in one run, then the figures section of docs/benchmarks.md
rewritten from that run (with the commit it ran on). ``--smoke`` is CI's: each benchmark runs
once, briefly, and its output must parse; no figure is kept.

    python -m bench [--write docs/benchmarks.md] [--only NAME ...] [--repeats 5] [--seconds 3]
    python -m bench --smoke --json FILE

Any error or timeout fails the run (exit 1) and leaves the doc as it was.
"""

from __future__ import annotations

import argparse
import compileall
import importlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench.measure import BenchError, Section, Settings

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ("meshed_path", "proxy_memory", "profile", "policy_bench", "telemetry_bench", "sandbox_up", "tui_bench", "demo_apps", "lessons_bench")
BEGIN = "<!-- figures: written by `make bench` from one run; edit the prose around them, not them -->"
END = "<!-- end of figures -->"


def commit() -> str:
    def git(*argv: str) -> str:
        return subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short=12", "HEAD") or "unknown"
    changed = [line for line in git("status", "--porcelain", "--untracked-files=no").splitlines() if line.strip()]
    return f"{head} with {len(changed)} uncommitted file change{'s' if len(changed) != 1 else ''}" if changed else head


PACKAGES = ("controlplane", "proxy", "sandbox", "tui")  # what the proxies, the sandbox and the UI import of ours


def compile_sources() -> None:
    """Each of our modules' bytecode written before anything is measured, as pip writes it when it
    installs meshdojo (the image) and Python on a first run: without it every process the run
    starts compiles what it imports from source, which costs each proxy about 1 MB of resident
    memory and part of its start (a machine may set PYTHONDONTWRITEBYTECODE, as this one does)."""
    root = Path(__file__).resolve().parent.parent
    for package in PACKAGES:
        if not compileall.compile_dir(root / package, quiet=1):
            raise BenchError(f"{package}: a module does not compile")


def render(sections: list[Section], settings: Settings, started: float, wall_started: float, ran_on: str) -> str:
    cpus = os.cpu_count()
    lines = [BEGIN, "",
             f"Measured in one run of `make bench` at commit `{ran_on}`, {time.strftime('%Y-%m-%d', time.gmtime(wall_started))}, "
             f"on {cpus} shared cores, Python {platform.python_version()}, our modules' bytecode compiled first (as an "
             f"installed package has it); every case {settings.repeats} × "
             f"{settings.seconds:g} s unless it says otherwise, reported as median (min–max). The run took "
             f"{(time.monotonic() - started) / 60:.1f} min.", ""]
    for section in sections:
        lines += [f"### {section.title}", "", *section.lines, ""]
    return "\n".join([*lines, END])


def write_figures(doc: Path, figures: str) -> None:
    """Replace what is between the markers (or append them), keeping the prose."""
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    if BEGIN in text and END in text:
        before, rest = text.split(BEGIN, 1)
        after = rest.split(END, 1)[1]
        text = before + figures + after
    else:
        text = text.rstrip("\n") + "\n\n## Figures\n\n" + figures + "\n"
    doc.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, metavar="NAME", help=f"some of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--smoke", action="store_true", help="each benchmark once, briefly: it runs and its output parses")
    parser.add_argument("--write", type=Path, metavar="DOC", help="rewrite the figures section of DOC (all benchmarks, no errors)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="the figures by name, as JSON")
    args = parser.parse_args(argv)
    if args.write and (args.only or args.smoke):
        parser.error("--write needs the whole run: no --only, no --smoke")
    settings = Settings.for_smoke() if args.smoke else Settings(args.repeats, args.seconds)
    started, wall_started = time.monotonic(), time.time()  # the duration, and the date it ran
    ran_on = commit()  # the code measured: a file edited while the run goes on changes nothing of it
    if not args.smoke:  # the figures are of an installed meshdojo's processes (CI's smoke only checks that each runs)
        try:
            compile_sources()
        except BenchError as exc:
            print(f"benchmarks not run: {exc}", file=sys.stderr)
            return 1
    sections, failed = [], []
    for name in args.only or BENCHMARKS:
        module = importlib.import_module(f"bench.{name}")
        print(f"== {name} ...", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        try:
            with tempfile.TemporaryDirectory(prefix=f"meshdojo-bench-{name}-") as tmp:
                section = module.run(settings, Path(tmp))
        except BenchError as exc:
            failed.append(name)
            print(f"== {name} FAILED: {exc}", file=sys.stderr, flush=True)
            continue
        except Exception:  # a crash in a benchmark is a failure of the run, with its traceback
            failed.append(name)
            print(f"== {name} FAILED:\n{traceback.format_exc()}", file=sys.stderr, flush=True)
            continue
        sections.append(section)
        print(f"== {name}: {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
        print(f"### {section.title}\n\n" + "\n".join(section.lines) + "\n", flush=True)
    if args.json:
        args.json.write_text(json.dumps({s.title: s.figures for s in sections}, indent=2))
    if failed:
        print(f"benchmarks failed: {', '.join(failed)} (nothing written)", file=sys.stderr)
        return 1
    if args.write:
        write_figures(args.write, render(sections, settings, started, wall_started, ran_on))
        print(f"figures written to {args.write}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``report``: the mesh before and after a change, as one self-contained HTML file (sandbox/report.py)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from sandbox.cli.common import add_name, fail


def _report(args: argparse.Namespace) -> int:
    from sandbox import report, resources
    from sandbox.cpapi import ApiError

    now = time.time()
    try:
        api = resources.api_for(args.name)
        if args.around_change:
            changes = api.call("GET", "/v1/changes")["changes"]
            before, after = report.around_last_change(changes, args.before or "1m", args.after or "1m", now)
        else:
            before, after = report.windows(args.before or "2m", args.after or "1m", now)
        data = report.gather(lambda path: api.call("GET", path, timeout=10), before, after, args.namespace)
        page = report.build_report(data, now, args.name)
        out = Path(args.output) if args.output else _default_output(args.name, now)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(page, encoding="utf-8")
    except (report.ReportError, resources.ResourceError, ApiError) as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(f"{exc.filename or args.output}: cannot write the report ({exc.strerror or exc}); choose another path with -o")
    for line in report.summary(report.comparison(data)):
        print(line)
    print(f"wrote {out} ({len(page) / 1e6:.1f} MB, works offline): open it in a browser")
    return 0


def _default_output(sandbox: str, now: float) -> Path:
    from sandbox.paths import SandboxPaths

    return SandboxPaths.for_name(sandbox).root / "reports" / time.strftime("report-%Y%m%d-%H%M%S.html", time.gmtime(now))


def register(sub) -> None:
    rep = sub.add_parser("report", help="the mesh before and after a change, as one HTML file with charts",
                         description="Compare two windows of the mesh's metrics (the control plane keeps 15 minutes): "
                                     "per service, deployment and edge, over time, and what changed in between.")
    rep.add_argument("--before", metavar="WINDOW", help="a duration ending where --after starts (default 2m), or times ago "
                                                        "A..B, e.g. 6m..4m")
    rep.add_argument("--after", metavar="WINDOW", help="a duration ending now (default 1m), or times ago A..B")
    rep.add_argument("--around-change", action="store_true",
                     help="--before up to the last change (a policy applied or deleted, a fault), --after from it (default 1m each)")
    rep.add_argument("-n", "--namespace", help="only this namespace")
    rep.add_argument("-o", "--output", help="the HTML file (default: reports/report-<time>.html in the sandbox's folder)")
    add_name(rep)
    rep.set_defaults(handler=_report)

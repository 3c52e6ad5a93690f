"""``trace``: distributed traces, as a list or as one trace's waterfall."""

from __future__ import annotations

import argparse
import json
import sys

from sandbox.cli.common import add_name, add_namespace, fail, print_table


def _trace(args: argparse.Namespace) -> int:
    from controlplane import traces
    from sandbox import resources, tracecli
    from sandbox.cpapi import ApiError

    if args.trace and args.slowest:
        return fail("give a trace or --slowest, not both")
    prefix = args.trace.lower() if args.trace else None
    try:
        found = tracecli.gather(args.name, args.namespace, prefix, args.limit)
        if args.slowest and found["spans"]:  # Jaeger's "longest first"; then all of that trace, from every sidecar
            prefix = max(traces.summarize(found["spans"]), key=lambda t: t.duration_ms).trace_id
            found = tracecli.gather(args.name, args.namespace, prefix, args.limit)
    except ApiError as exc:
        hint = ": 'meshdojo trace' lists the latest traces and their ids" if exc.status == 400 else ""
        return fail(f"{exc.body.get('error') or exc}{hint}")
    except resources.ResourceError as exc:
        return fail(str(exc))
    for lost in found["lost"]:
        print(f"# not read: {lost['workload']}: {lost['error']}", file=sys.stderr)
    spans = found["spans"]
    if prefix is None:
        summaries = traces.summarize(spans)
        if args.output == "json":
            print(json.dumps([t.to_json() for t in summaries], indent=2))
        elif not summaries:
            print(tracecli.NO_TRACES)
        else:
            print_table(tracecli.list_table(summaries))
            print(f"\n'meshdojo trace {summaries[0].trace_id[:16]}' shows one trace's spans and their fates; "
                  f"'meshdojo trace --slowest' the slowest")
        return 0
    ids = traces.matching(spans, prefix)
    if not ids:
        return fail(f"no trace {args.trace!r} at any sidecar (each sidecar keeps only its latest spans): "
                    f"'meshdojo trace' lists the latest traces")
    if len(ids) > 1:
        return fail(f"{args.trace!r} starts {len(ids)} traces ({', '.join(i[:16] for i in ids[:5])} ...): type more of its digits")
    members = [s for s in spans if s["traceId"] == ids[0]]
    if args.output == "json":
        print(json.dumps({"traceId": ids[0], "spans": [{**s, "depth": depth} for depth, s in traces.tree(members)]}, indent=2))
    else:
        print("\n".join(tracecli.waterfall(ids[0], members)))
    return 0


def register(sub) -> None:
    trace = sub.add_parser("trace", help="distributed traces: the latest, or one request's path through every sidecar "
                                         "(e.g. 'meshdojo trace -n emojivoto', 'meshdojo trace 4bf92f35')")
    trace.add_argument("trace", nargs="?", metavar="TRACE", help="a trace id, or its first digits: that trace's spans")
    trace.add_argument("--slowest", action="store_true", help="draw the slowest of the latest traces (where did the time go?)")
    trace.add_argument("--limit", type=int, default=200, help="how many of its latest spans each sidecar sends (default 200)")
    trace.add_argument("-o", "--output", choices=["table", "json"], default="table")
    trace.set_defaults(handler=_trace)
    add_namespace(trace)
    add_name(trace)

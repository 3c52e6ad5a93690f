"""``fault inject | net | clear``: HTTP and network faults."""

from __future__ import annotations

import argparse

from sandbox.cli.common import add_name, add_namespace, fail, print_table


def _fault(args: argparse.Namespace) -> int:
    import yaml

    from sandbox import local, netcli, resources
    from sandbox.cpapi import ApiError

    try:
        if args.action == "list":
            return _list(netcli.listing(args.name), args.output)
        if args.action == "clear":
            print("\n".join(netcli.clear(args.name, args.service, args.namespace)))
            return 0
        if args.action == "net":
            fault = netcli.net_fault(args.name, args.kind, args.targets, args.source, args.namespace, args.latency, args.jitter,
                                     args.rate, args.duration, args.instance)
            print(f"network fault {netcli.describe(fault)}")
            print(f"watch for: {fault['watch_for']}")
            print("undo it: meshdojo fault clear   (or wait: it reverts by itself); see it: meshdojo status")
            return 0
        ns = resources.service_namespace(args.name, args.service, args.namespace)
        if args.abort is None and args.delay is None:
            return fail("say which fault: --abort STATUS [--percent P] and/or --delay DURATION [--delay-percent P]")
        instance = netcli.instance_of(args.name, args.service, ns, args.instance) if args.instance else None
        duration = None if args.duration == "forever" else args.duration
        document = resources.fault_document(args.service, ns, args.abort, args.percent, args.delay, args.delay_percent, duration,
                                            instance)
        api = resources.api_for(args.name)
        api.call("POST", "/v1/policies", {"documents": [{"source": "meshdojo fault inject", "index": 0, "document": document}]})
    except ApiError as exc:
        lines = [f"{e['field']}: {e['message']}" for e in exc.body.get("errors", [])]
        return fail("\n".join([str(exc), *lines]))
    except (resources.ResourceError, local.SandboxError, ValueError) as exc:
        return fail(str(exc))
    print(f"faultinjection/{document['metadata']['name']} applied; this is the resource (save it and use 'meshdojo apply -f'):\n---")
    print(yaml.safe_dump(document, sort_keys=False), end="")
    print(f"---\nWatch it: meshdojo status; undo it: meshdojo fault clear {args.service}")
    return 0


def _list(faults: list[dict], output: str) -> int:
    import json

    from sandbox.observe import human_duration

    if output == "json":
        print(json.dumps({"faults": faults}, indent=2))
        return 0
    if not faults:
        print("no faults in force; inject one: meshdojo fault inject emoji --abort 500 --percent 50")
        return 0
    rows = [("TYPE", "NAME", "NAMESPACE", "TARGET", "WHAT", "LEFT")]
    rows += [(f["type"], f["name"], f["namespace"], f["target"], f["what"],
              "forever" if f["remaining_seconds"] is None else human_duration(f["remaining_seconds"])) for f in faults]
    print_table(rows)
    print("undo them: meshdojo fault clear [SERVICE]")
    return 0


def register(sub) -> None:
    fault = sub.add_parser("fault", help="faults: 'fault inject SERVICE' (HTTP), 'fault net KIND TARGET' (network), 'fault list', 'fault clear'")
    fault.set_defaults(handler=_fault)
    fault_sub = fault.add_subparsers(dest="action", metavar="ACTION", required=True)
    finject = fault_sub.add_parser("inject", help="HTTP delay and/or abort on a service (a FaultInjection resource)")
    finject.add_argument("service", help="the service whose instances fail, e.g. voting")
    finject.add_argument("--abort", type=int, metavar="STATUS", help="answer this HTTP status instead of the service")
    finject.add_argument("--percent", type=float, default=100.0, help="share of requests aborted (default 100)")
    finject.add_argument("--delay", metavar="DURATION", help="delay requests by this long, e.g. 2s")
    finject.add_argument("--delay-percent", type=float, default=100.0, help="share of requests delayed (default 100)")
    finject.add_argument("--for", dest="duration", metavar="DURATION", default="5m",
                         help="remove the fault by itself after this long (default 5m, as network faults; 'forever' keeps it)")
    finject.add_argument("--instance", metavar="INSTANCE", help="only this instance of the service fails, e.g. emoji-1, or newest: the one started last (one bad replica)")
    flist = fault_sub.add_parser("list", help="every fault in force (HTTP and network) and how long it has left")
    flist.add_argument("-o", "--output", choices=["table", "json"], default="table", help="table (default) or json")
    add_name(flist)
    fclear = fault_sub.add_parser("clear", help="remove every fault (HTTP and network), or only those on one service")
    fclear.add_argument("service", nargs="?", help="only this service's faults")
    fnet = fault_sub.add_parser("net", help="a network fault on an edge: latency, bandwidth, reset, blackhole or partition")
    fnet.add_argument("kind", choices=["latency", "bandwidth", "reset", "blackhole", "partition"], help="what the network does")
    fnet.add_argument("targets", nargs="+", metavar="TARGET", help="svc/NAME or deploy/NAME (a partition: deploy/A deploy/B)")
    fnet.add_argument("--from", dest="source", metavar="deploy/NAME", help="only this client's connections (default: every client)")
    fnet.add_argument("--latency", metavar="DURATION", help="latency: added to each response, e.g. 300ms")
    fnet.add_argument("--jitter", metavar="DURATION", help="latency: ± this much at random, e.g. 50ms")
    fnet.add_argument("--rate", metavar="RATE", help="bandwidth: e.g. 10KB/s, 1MiB/s")
    fnet.add_argument("--for", dest="duration", metavar="DURATION", help="remove it by itself after this long (default 5m)")
    fnet.add_argument("--instance", metavar="INSTANCE", help="only connections to this instance of the service, e.g. emoji-1, or newest")
    for p in (finject, fclear, fnet):
        add_namespace(p)
        add_name(p)

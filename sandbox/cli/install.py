"""``install`` and ``uninstall``: meshdojo on a Kubernetes cluster (like ``linkerd install``).

``install`` applies the CRDs (generated from the validator's field definitions, so the API
server refuses what ``meshdojo apply`` refuses), waits until they are Established, then the
control plane: namespace, RBAC, the issuer Secret, Deployment, Services and the injector's
webhook. ``--crds`` stops after the CRDs; ``--dry-run -o yaml`` prints instead of applying.
``uninstall`` deletes everything labelled ``app.kubernetes.io/part-of=meshdojo`` and checks that
nothing remains.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sandbox.cli.common import add_ca_files, fail, given_ca


def _note(line: str) -> None:
    print(line, file=sys.stderr)


def _print(objects: list[dict], output: str) -> None:
    if output == "json":
        print(json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}, indent=2))
    else:
        import yaml

        print(yaml.safe_dump_all(objects, sort_keys=False), end="")


def _lifetime(text: str) -> str:
    """A duration of at least a minute, as the control plane takes it (argparse shows the error)."""
    from controlplane.durations import InvalidDuration, parse_duration

    try:
        seconds = parse_duration(text)
    except InvalidDuration as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds < 60:
        raise argparse.ArgumentTypeError(f"{text} is shorter than the minimum of 60s (try 2m to watch rotations)")
    return text


def _install(args: argparse.Namespace) -> int:
    from sandbox.kube import cluster, setup
    from sandbox.kube.image import image_ref

    try:
        own_ca = given_ca(args)
    except ValueError as exc:
        return fail(str(exc))

    image = args.image or image_ref()
    if args.dry_run:
        pki = None if args.crds else (own_ca or cluster.new_pki())
        objects = setup.crds_for(None, not args.without_httproute, _note)
        if pki is not None:
            objects += setup.control_plane_for(image, pki, cluster.new_operator_token(), args.webhook_url, args.cert_lifetime)
        _print(objects, args.output)
        return 0
    try:
        client = cluster.connect(args.kubeconfig, args.context)
        objects = setup.install(client, image, webhook_url=args.webhook_url, with_httproute=not args.without_httproute,
                                pki=own_ca, crds_only=args.crds, wait=args.wait, cert_lifetime=args.cert_lifetime,
                                say=print)
    except cluster.ClusterError as exc:
        return fail(str(exc))
    if args.crds:
        print(f"{len(objects)} CRDs Established: `kubectl get crd -l app.kubernetes.io/part-of=meshdojo` lists them; "
              "`kubectl apply -f demo-apps/emojivoto/policies/` uses them")
        return 0
    print("meshdojo is installed: `kubectl -n meshdojo-system get deploy,svc`; annotate a namespace or pod with "
          "meshdojo.dev/inject=enabled to mesh its pods")
    return 0


def _uninstall(args: argparse.Namespace) -> int:
    from sandbox.kube import cluster

    try:
        client = cluster.connect(args.kubeconfig, args.context)
        deleted = cluster.uninstall(client, args.wait)
    except cluster.ClusterError as exc:
        return fail(str(exc))
    for name in deleted:
        print(f"{name} deleted")
    print("nothing of meshdojo's remains on the cluster" if deleted else "nothing of meshdojo's was installed")
    return 0


def _cluster_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kubeconfig", type=Path, help="the kubeconfig to use (default: $KUBECONFIG or ~/.kube/config)")
    p.add_argument("--context", help="the kubeconfig context (default: its current context)")
    p.add_argument("--wait", type=float, default=60.0, metavar="SECONDS", help="how long to wait for the cluster (default 60)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("install", help="install meshdojo's CRDs and control plane on a Kubernetes cluster",
                       description="Install meshdojo on a Kubernetes cluster, as `linkerd install` does: the policy CRDs "
                                   "(their schemas are the validator's field definitions), then the control plane. "
                                   "`--dry-run -o yaml` prints the manifests instead, for `kubectl apply -f -`.")
    _cluster_options(p)
    p.add_argument("--crds", action="store_true", help="only the CRDs (and HTTPRoute's, if the cluster has none)")
    p.add_argument("--dry-run", action="store_true", help="print the manifests instead of applying them (no cluster needed)")
    p.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml", help="with --dry-run: yaml (default) or json")
    p.add_argument("--image", help="the meshdojo image for the control plane and the sidecars (default: this version's)")
    p.add_argument("--without-httproute", action="store_true",
                   help="leave out our HTTPRoute, Gateway and BackendTLSPolicy CRDs (the subsets of Gateway API's we implement); a "
                        "live install leaves each out by itself when the cluster has Gateway API's own")
    p.add_argument("--cert-lifetime", default="24h", type=_lifetime,
                   help="the workloads' certificates' lifetime, at least 60s (default 24h; 2m to watch rotations)")
    p.add_argument("--webhook-url", metavar="URL",
                   help="where the API server sends pods to inject, instead of the in-cluster Service "
                        "(a control plane running outside the cluster, e.g. https://127.0.0.1:8443/inject)")
    add_ca_files(p)
    p.set_defaults(handler=_install)
    u = sub.add_parser("uninstall", help="remove everything `meshdojo install` put on a cluster",
                       description="Remove everything `meshdojo install` put on a cluster (every object labelled "
                                   "app.kubernetes.io/part-of=meshdojo; the policies go with their CRDs) and check that "
                                   "nothing remains. Meshed pods keep their sidecars until they are restarted.")
    _cluster_options(u)
    u.set_defaults(handler=_uninstall)

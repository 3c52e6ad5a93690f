"""TLS Secrets, as kubectl makes and shows them: ``create secret tls NAME --cert --key``,
``create secret generic NAME --from-file=tls.crt=... --from-file=tls.key=... --from-file=ca.crt=...``
(Istio's mutual TLS Secret), ``get secrets`` and ``delete secret NAME`` — the certificates a
Gateway's HTTPS listeners serve, and the CA their clients' certificates are checked against
(docs/policy.md). ``get`` never prints a key."""

from __future__ import annotations

import argparse
import base64
import json
from pathlib import Path
from typing import Any

from sandbox.cli.common import add_name, fail, print_table

SECRET_KINDS = ("secret", "secrets")
MAX_PEM_BYTES = 256 * 1024


def tls_document(name: str, namespace: str, cert: Path, key: Path) -> dict[str, Any]:
    """What ``kubectl create secret tls`` sends. Raises ValueError naming the file it cannot read."""
    data = {}
    for field, path in (("tls.crt", cert), ("tls.key", key)):
        try:
            raw = path.read_bytes()
        except OSError as exc:
            flag = "--cert" if field == "tls.crt" else "--key"
            raise ValueError(f"{flag} {path}: {exc.strerror} (give the PEM file openssl wrote)") from None
        if len(raw) > MAX_PEM_BYTES:
            raise ValueError(f"{path}: {len(raw) // 1024} KiB is too much for a certificate or key: is it the right file?")
        data[field] = base64.b64encode(raw).decode()
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": namespace}, "data": data}


def generic_document(name: str, namespace: str, sources: list[str]) -> dict[str, Any]:
    """What ``kubectl create secret generic NAME --from-file=[KEY=]PATH ...`` sends (type Opaque).
    Raises ValueError naming the flag it cannot use."""
    data: dict[str, str] = {}
    for source in sources:
        key, sep, path = source.partition("=")
        if not sep:
            key, path = Path(source).name, source  # kubectl's default: the file's name
        if not key or not path:
            raise ValueError(f"--from-file={source}: expected KEY=PATH, e.g. --from-file=ca.crt=example.com.crt")
        if key in data:
            raise ValueError(f"--from-file={source}: key {key} is given twice")
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise ValueError(f"--from-file={source}: {path}: {exc.strerror}") from None
        if len(raw) > MAX_PEM_BYTES:
            raise ValueError(f"--from-file={source}: {len(raw) // 1024} KiB is too much for a certificate or key: is it the right file?")
        data[key] = base64.b64encode(raw).decode()
    if not data:
        raise ValueError("give the files with --from-file=KEY=PATH: tls.crt and tls.key, and ca.crt for mutual TLS")
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {"name": name, "namespace": namespace}, "data": data}


def _create(args: argparse.Namespace) -> int:
    from controlplane.tlssecrets import read_secret
    from sandbox.backends import backend_for
    from sandbox.cpapi import ApiError
    from sandbox.errors import SandboxError

    try:
        if args.type == "tls":
            doc, source = tls_document(args.secret, args.namespace or "default", args.cert, args.key), f"{args.cert} and {args.key}"
        else:
            doc, source = generic_document(args.secret, args.namespace or "default", args.from_file), "--from-file"
        read_secret(doc, source, "default")  # checked here first, as the gateway will load it
        [((_, namespace, name), action)] = backend_for(args.name).apply_secrets([doc])
    except (ValueError, ApiError, SandboxError) as exc:  # SecretError is a ValueError
        return fail(str(exc))
    print(f"secret/{name} {action} (namespace {namespace})")
    return 0


def get_secrets(sandbox: str, namespace: str | None, output: str) -> int:
    from sandbox import resources
    from sandbox.cpapi import ApiError

    try:
        items = resources.api_for(sandbox).call("GET", "/v1/secrets" + (f"?namespace={namespace}" if namespace else ""))["items"]
    except (resources.ResourceError, ApiError) as exc:
        return fail(str(exc))
    if output != "table":
        import yaml

        print(json.dumps(items, indent=2) if output == "json" else yaml.safe_dump(items, sort_keys=False), end="\n" if output == "json" else "")
    elif not items:
        print("No TLS Secrets found (meshdojo create secret tls NAME --cert FILE --key FILE makes one).")
    else:
        print_table([("NAMESPACE", "NAME", "TYPE", "HOSTS", "EXPIRES", "CLIENT CA", "USED BY"), *(
            (s["namespace"], s["name"], s["type"], ",".join(s["hosts"]) or "-", s["notAfter"][:19].replace("T", " "),
             s.get("clientCA") or "-", ",".join(s["usedBy"]) or "(no Gateway names it)") for s in items)])
    return 0


def delete_secret(sandbox: str, name: str, namespace: str | None) -> int:
    from sandbox.backends import backend_for
    from sandbox.cpapi import ApiError
    from sandbox.errors import SandboxError

    try:
        gone = backend_for(sandbox).delete_secret(namespace or "default", name)
    except (ApiError, SandboxError) as exc:
        return fail(str(exc))
    if not gone:
        return fail(f"no Secret {name!r} in namespace {namespace or 'default'} ('meshdojo get secrets -A' lists them)")
    print(f'secret "{name}" deleted')
    return 0


def register(sub) -> None:
    create = sub.add_parser("create", help="create a TLS Secret for a Gateway's HTTPS listener, as kubectl does: "
                                           "'meshdojo create secret tls NAME --cert FILE --key FILE -n NAMESPACE', or for "
                                           "mutual TLS 'meshdojo create secret generic NAME --from-file=tls.crt=FILE "
                                           "--from-file=tls.key=FILE --from-file=ca.crt=FILE -n NAMESPACE'")
    what = create.add_subparsers(dest="what", metavar="secret", required=True)
    secret = what.add_parser("secret", help="a Secret").add_subparsers(dest="type", metavar="tls|generic", required=True)
    generic = secret.add_parser("generic", help="an Opaque Secret from files: tls.crt and tls.key, and ca.crt (the CA client "
                                                "certificates are checked against) for a MUTUAL listener, as Istio's task makes it")
    generic.add_argument("secret", metavar="NAME", help="the Secret's name, as the Gateway's certificateRefs name it")
    generic.add_argument("--from-file", action="append", default=[], metavar="KEY=PATH",
                         help="a key and the PEM file it holds (repeat): tls.crt, tls.key, ca.crt")
    generic.add_argument("-n", "--namespace", help="the Gateway's namespace (default: default)")
    add_name(generic)
    generic.set_defaults(handler=_create)
    tls = secret.add_parser("tls", help="a kubernetes.io/tls Secret: a certificate (chain) and its unencrypted key")
    tls.add_argument("secret", metavar="NAME", help="the Secret's name, as the Gateway's certificateRefs name it")
    tls.add_argument("--cert", type=Path, required=True, help="the certificate, PEM (the leaf first, then intermediates)")
    tls.add_argument("--key", type=Path, required=True, help="its private key, PEM, unencrypted")
    tls.add_argument("-n", "--namespace", help="the Gateway's namespace (default: default)")
    add_name(tls)
    tls.set_defaults(handler=_create)

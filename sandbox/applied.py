"""A learner's own workloads in the local sandbox: ``meshdojo apply -f app.yaml`` with
Deployment, Service, ServiceAccount and Namespace documents — the same files ``kubectl apply``
takes. They are validated here (the local backend's manifest reader, every error naming the
file, document and field), kept in the sandbox's ``applied.json``, and the supervisor runs them
beside the demos, as it runs the demos' own manifests.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from controlplane.statefiles import write_json
from sandbox.manifests import Demo, ManifestError, read_documents

WORKLOAD_KINDS = ("Deployment", "Service", "ServiceAccount", "Namespace")
APPLIED_FILE = "applied.json"
APPLIED_DEMO = "applied"

Key = tuple[str, str, str]  # (kind, namespace, name)


class AppliedError(ValueError):
    pass


def is_workload(document: Any) -> bool:
    return isinstance(document, dict) and document.get("kind") in WORKLOAD_KINDS and document.get("apiVersion") in ("v1", "apps/v1")


def key_of(document: dict[str, Any]) -> Key:
    meta = document.get("metadata") or {}
    namespace = "" if document["kind"] == "Namespace" else meta.get("namespace", "default")
    return (document["kind"], namespace, str(meta.get("name", "")))


def load(root: Path) -> list[dict[str, Any]]:
    """What was applied: ``{"source", "index", "document"}`` entries (empty when nothing was)."""
    try:
        return json.loads((root / APPLIED_FILE).read_text())
    except FileNotFoundError:
        return []


def as_demo(root: Path, entries: list[dict[str, Any]]) -> Demo:
    """The applied workloads as one Demo (ManifestError names the bad file, document and field)."""
    return read_documents(APPLIED_DEMO, root, [(Path(e["source"]), e["index"], e["document"]) for e in entries])


def merge(current: list[dict[str, Any]], incoming: list[dict[str, Any]], demos: list[Demo], root: Path
          ) -> tuple[list[dict[str, Any]], list[tuple[Key, str]]]:
    """The applied set after applying ``incoming``, and what happened to each (created,
    configured, unchanged); nothing is kept unless all of it is valid and none of it takes a
    demo's name."""
    as_demo(root, incoming)  # validates each document on its own first, naming its own file
    owned = {(d.namespace, d.name): demo.name for demo in demos for d in demo.deployments} | {
        (s.namespace, s.name): demo.name for demo in demos for s in demo.services}
    by_key = {key_of(e["document"]): e for e in current}
    results = []
    for entry in incoming:
        key = key_of(entry["document"])
        if key[0] in ("Deployment", "Service") and (key[1], key[2]) in owned:
            raise AppliedError(f"{entry['source']}: document {entry['index']}: {key[0]} {key[1]}/{key[2]} belongs to the "
                               f"{owned[(key[1], key[2])]} demo: change it with `meshdojo scale`/`inject`, or give yours another name")
        old = by_key.get(key)
        results.append((key, "created" if old is None else "unchanged" if old["document"] == entry["document"] else "configured"))
        by_key[key] = entry
    merged = list(by_key.values())
    as_demo(root, merged)  # and together (a Service of one file, a Deployment of another)
    return merged, results


def remove(current: list[dict[str, Any]], documents: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Key], list[Key]]:
    """(the applied set without them, what was removed, what was not there)."""
    gone = {key_of(d) for d in documents}
    kept = [e for e in current if key_of(e["document"]) not in gone]
    present = {key_of(e["document"]) for e in current}
    return kept, sorted(gone & present), sorted(gone - present)


def save(root: Path, entries: list[dict[str, Any]]) -> None:
    write_json(root / APPLIED_FILE, entries)


__all__ = ["APPLIED_DEMO", "AppliedError", "ManifestError", "WORKLOAD_KINDS", "as_demo", "is_workload", "load", "merge",
           "remove", "save"]

"""Everything the UI can do, as values: a title, the equivalent CLI command (and YAML, where a
resource is applied), one line on what to watch for, and the call that does it — through the
same sandbox functions and operator API the CLI uses. Building an action does no I/O; running
it does (in a worker)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sandbox import applied, attack, netcli, resources
from sandbox.backends import backend_for

DEMO_ROOT = Path(__file__).resolve().parent.parent / "demo-apps"
POLICY_API = "policy.meshdojo.dev/v1alpha1"
GATEWAY_API = "gateway.networking.k8s.io/v1"


def command(name: str, text: str) -> str:
    """A CLI command as a learner can paste it: with ``--name`` unless the sandbox is the default."""
    if name == "default" or not text.startswith("meshdojo "):
        return text
    head, sep, comment = text.partition("   #")
    return f"{head.rstrip()} --name {name}" + (f"   #{comment}" if sep else "")


@dataclass(frozen=True)
class Action:
    title: str
    cli: str
    watch: str
    run: Callable[[], str] = field(compare=False)
    yaml: str | None = None

    def explain(self) -> str:
        text = f"{self.title}\n\nCLI:  {self.cli}\n\nwatch for: {self.watch}"
        return text + (f"\n\nYAML:\n{self.yaml}" if self.yaml else "")


def apply_documents(name: str, documents: list[dict[str, Any]], source: str) -> str:
    """Apply resources all or nothing; the control plane's answer, in a line per resource."""
    api = resources.api_for(name)
    body = {"documents": [{"source": source, "index": i, "document": d} for i, d in enumerate(documents)]}
    answer = api.call("POST", "/v1/policies", body)
    lines = [f"{a['kind'].lower()}/{a['name']} {a['action']}" for a in answer["applied"]]
    return "\n".join(lines + answer.get("warnings", []))


def _dump(documents: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(documents, sort_keys=False)


# -- faults -------------------------------------------------------------------------------------

def http_fault(name: str, service: str, namespace: str, abort: int | None, percent: float, delay: str | None,
               duration: str = "5m", instance: str | None = None) -> Action:
    document = resources.fault_document(service, namespace, abort, percent, delay, percent, duration, instance)
    what = (f"abort {abort} for {percent:g}%" if abort else f"delay {delay} for {percent:g}%")
    flags = f"--abort {abort} --percent {percent:g}" if abort else f"--delay {delay} --delay-percent {percent:g}"
    if instance:
        flags += f" --instance {instance}"
    return Action(f"HTTP fault on {instance or service}: {what}, for {duration}",
                  command(name, f"meshdojo fault inject {service} {flags} --for {duration} -n {namespace}"),
                  "success rate of the service's callers drops (abort) or its latency rises (delay); tap shows fault=…",
                  lambda: apply_documents(name, [document], "meshdojo tui"), _dump([document]))


def net_fault(name: str, kind: str, targets: list[str], source: str | None = None, latency: str | None = None,
              rate: str | None = None, duration: str = "5m", instance: str | None = None) -> Action:
    flags = "".join(f" {flag} {value}" for flag, value in (("--from", source), ("--latency", latency), ("--rate", rate),
                                                          ("--for", duration), ("--instance", instance)) if value)
    return Action(f"network {kind} on {' <-> '.join(targets) if kind == 'partition' else targets[0]}" + (f" from {source}" if source else ""),
                  command(name, f"meshdojo fault net {kind} {' '.join(targets)}{flags}"),
                  netcli.WHAT_TO_WATCH[kind],
                  lambda: netcli.describe(netcli.net_fault(name, kind, targets, source, None, latency, None, rate, duration, instance)))


def clear_faults(name: str) -> Action:
    return Action("clear every fault (HTTP and network)", command(name, "meshdojo fault clear"), "traffic recovers within a second or two",
                  lambda: "\n".join(netcli.clear(name, None, None)))


def kill(name: str, target: str) -> Action:
    watch = ("proxies keep serving what they last knew (static stability); the supervisor restarts it"
             if target == "controlplane" else "RESTARTS goes up in the workload table; callers see errors until it is back")
    return Action(f"kill {target}", command(name, f"meshdojo kill {target}"), watch,
                  lambda: f"SIGKILL sent to pid {', '.join(map(str, backend_for(name).kill(target, None)))}")


def scale(name: str, deployment: str, namespace: str, replicas: int) -> Action:
    def run() -> str:
        backend_for(name).scale(deployment, namespace, replicas)
        return f"deployment {namespace}/{deployment} scaling to {replicas}"

    return Action(f"scale {deployment} to {replicas}", command(name, f"meshdojo scale {deployment} {replicas} -n {namespace}"),
                  "MESHED shows the new count once instances are ready; the balancer spreads load over them", run)


def inject(name: str, deployment: str, namespace: str, meshed: bool) -> Action:
    verb = "inject" if meshed else "uninject"

    def run() -> str:
        backend_for(name).set_injected(deployment, namespace, meshed)
        return f"deployment {namespace}/{deployment} rolling {'with' if meshed else 'without'} a sidecar"

    watch = ("its edges turn 🔒 again" if meshed else
             "its inbound edges turn 🔓 (plaintext) on the topology; under STRICT its callers' requests now fail")
    return Action(f"{verb} {deployment}", command(name, f"meshdojo {verb} {deployment} -n {namespace}"), watch, run)


def intruder(name: str, service: str, namespace: str) -> Action:
    def run() -> str:
        lines = []
        for hit in attack.attack_service(name, service, namespace):
            lines.append(f"{hit.endpoint} at {hit.address}:{hit.port} ({'sidecar' if hit.meshed else 'no sidecar'})")
            lines += [f"  {o.attempt}: {o.verdict.upper()} — {o.detail}" for o in hit.outcomes]
        return "\n".join(lines)

    return Action(f"intruder against {service}", command(name, f"meshdojo attack svc/{service} -n {namespace}"),
                  "STRICT refuses both attempts; PERMISSIVE lets plaintext in; a DENY policy answers 403", run)


# -- policies -----------------------------------------------------------------------------------

def _meta(kind: str, name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    api = GATEWAY_API if kind == "HTTPRoute" else POLICY_API
    return {"apiVersion": api, "kind": kind, "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def _policy_action(name: str, title: str, documents: list[dict[str, Any]], watch: str) -> Action:
    text = _dump(documents)
    return Action(title, command(name, "meshdojo apply -f FILE.yaml   # with the YAML below"), watch,
                  lambda: apply_documents(name, documents, "meshdojo tui"), text)


def retries(name: str, service: str, namespace: str) -> Action:
    doc = _meta("HTTPRoute", f"{service}-retries", namespace, {
        "parentRefs": [{"kind": "Service", "name": service}],
        "rules": [{"retry": {"codes": [500, 502, 503, 504], "attempts": 3, "backoff": "25ms"}}]})
    return _policy_action(name, f"retries on {service}", [doc],
                          "EFFECTIVE success of the service recovers while ACTUAL stays low (meshdojo routes)")


def timeout(name: str, service: str, namespace: str, limit: str = "500ms") -> Action:
    doc = _meta("HTTPRoute", f"{service}-timeout", namespace, {
        "parentRefs": [{"kind": "Service", "name": service}], "rules": [{"timeouts": {"request": limit}}]})
    return _policy_action(name, f"a {limit} timeout on {service}", [doc], "slow requests end as 504 after the timeout; p99 is capped")


def split(name: str, service: str, namespace: str, first: str, second: str) -> Action:
    doc = _meta("HTTPRoute", f"{service}-split", namespace, {
        "parentRefs": [{"kind": "Service", "name": service}],
        "rules": [{"backendRefs": [{"name": first, "weight": 50}, {"name": second, "weight": 50}]}]})
    return _policy_action(name, f"50/50 split of {service}: {first} / {second}", [doc],
                          "the two backends each get about half the requests (meshdojo stat svc)")


def mirror(name: str, service: str, namespace: str, first: str, second: str) -> Action:
    doc = _meta("HTTPRoute", f"{service}-mirror", namespace, {
        "parentRefs": [{"kind": "Service", "name": service}],
        "rules": [{"backendRefs": [{"name": first}],
                   "filters": [{"type": "RequestMirror", "requestMirror": {"backendRef": {"name": second}, "percent": 100}}]}]})
    return _policy_action(name, f"{service} to {first}, a copy of each request to {second}", [doc],
                          f"callers only ever get {first}'s answers, yet {second} takes as many requests (meshdojo stat deploy)")


def strict_mtls(name: str, namespace: str) -> Action:
    doc = _meta("MeshTLS", "strict", namespace, {"mode": "STRICT"})
    return _policy_action(name, f"STRICT mTLS in {namespace}", [doc], "plaintext callers are refused; meshdojo attack shows it")


def deny_edge(name: str, service: str, namespace: str, source_sa: str) -> Action:
    principal = f"spiffe://meshdojo.local/ns/{namespace}/sa/{source_sa}"
    doc = _meta("AuthorizationPolicy", f"deny-{source_sa}-to-{service}", namespace, {
        "targetRef": {"kind": "Service", "name": service}, "action": "DENY",
        "rules": [{"from": [{"source": {"principals": [principal]}}]}]})
    return _policy_action(name, f"deny {source_sa} -> {service}", [doc], "that caller gets 403; every other caller still works")


def example_policies() -> list[Path]:
    """Each demo's policies (bookinfo's in Istio's own kinds after them), then the policies of
    Istio's External Authorization task (its authorizer, a Deployment, is applied from a
    terminal: the editor applies policies only)."""
    task = [p for p in sorted(DEMO_ROOT.glob("extauthz/*.yaml"))
            if not any(applied.is_workload(d) for d in yaml.safe_load_all(p.read_text()))]
    return sorted(DEMO_ROOT.glob("*/policies/*.yaml")) + sorted(DEMO_ROOT.glob("*/policies/istio/*.yaml")) + task


def example_label(path: Path) -> str:
    """``emojivoto/allow-nothing.yaml``, ``bookinfo/istio/destination-rule-all.yaml``,
    ``extauthz/provider.yaml``: the demo (or task) and the file."""
    if path.parent.name == "istio" and path.parent.parent.name == "policies":
        return f"{path.parent.parent.parent.name}/istio/{path.name}"
    return f"{(path.parent.parent if path.parent.name == 'policies' else path.parent).name}/{path.name}"


def preview_example(path: Path) -> tuple[str, str]:
    """(what the example teaches — its first comment line, the whole file)."""
    text = path.read_text()
    return next((line.lstrip("# ").strip() for line in text.splitlines() if line.startswith("#")), "read the file's comments"), text


def apply_example(name: str, path: Path) -> Action:
    text = path.read_text()
    lesson = next((line.lstrip("# ").strip() for line in text.splitlines() if line.startswith("#")), "read the file's comments")
    return Action(f"apply {path.parent.parent.name}/{path.name}", command(name, f"meshdojo apply -f {path.relative_to(DEMO_ROOT.parent)}"), lesson,
                  lambda: "\n".join(f"{a['kind'].lower()}/{a['name']} {a['action']}"
                                    for a in resources.apply(name, [str(path)], None)["applied"]), text)


def delete_policy(name: str, kind: str, namespace: str, resource: str) -> Action:
    return Action(f"delete {kind.lower()}/{resource}", command(name, f"meshdojo delete {kind.lower()} {resource} -n {namespace}"),
                  "its effect ends within a second",
                  lambda: "\n".join(resources.delete(name, kind, resource, namespace)))


# -- lessons ----------------------------------------------------------------------------------

def lesson_start(name: str, number: int, step: int = 1) -> Action:
    """Start a lesson (step 1), or go back to a step of it: policies and faults as the earlier steps leave them."""
    from sandbox.lessons import model, progress

    def run() -> str:
        lesson = model.find(number)
        ran = progress.reset(name, lesson, step)
        return f"lesson {number}, step {step}: the sandbox is set" + (": " + "; ".join(ran) if ran else "")

    cli = f"meshdojo lesson start {number}" if step == 1 else f"meshdojo lesson reset {number} --to {step}"
    return Action(f"lesson {number}, step {step}", command(name, cli), "the step's text, and its check", run)


def lesson_do(name: str, argv: tuple[str, ...]) -> Action:
    """'Show me': the current step's command, run as the learner would type it."""
    from sandbox.lessons import progress

    def run() -> str:
        code, out = progress.run_verb(name, argv, quiet=True)
        if code != 0:
            raise ValueError(out.strip()[-500:] or f"meshdojo {' '.join(argv)} failed")
        return out.strip()[-2000:]

    return Action(f"meshdojo {' '.join(argv)}", command(name, f"meshdojo {' '.join(argv)}"), "the step's check turning ✓", run)

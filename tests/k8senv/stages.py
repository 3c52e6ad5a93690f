"""kwok's Stages for the test cluster, as data: what a fake node and a fake pod go through.

    node-initialize  a new node gets Ready conditions, addresses, capacity and the kubelet
                     version we built (so the cluster looks like a real one of that version)
    node-heartbeat   a Ready node renews its conditions, so the node controller keeps it Ready
    pod-ready        a scheduled pod is Running and Ready, with a pod IP from kwok's CIDR
    pod-delete       a pod being deleted goes away (there is no kubelet to finish it)

kwok's templates are Go templates over the object; ``Now``, ``Quote``, ``NodeConditions``,
``NodeIP``, ``NodeName`` and ``PodIPsWith`` are functions kwok provides.
"""

from __future__ import annotations

from typing import Any

STAGE_API = "kwok.x-k8s.io/v1alpha1"
READY = '.status.conditions.[] | select( .type == "Ready" ) | .status'


def _stage(name: str, kind: str, selector: list[dict[str, Any]], next_: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"apiVersion": STAGE_API, "kind": "Stage", "metadata": {"name": name},
            "spec": {"resourceRef": {"apiGroup": "v1", "kind": kind}, "selector": {"matchExpressions": selector}, "next": next_, **extra}}


_CONDITIONS = """\
conditions:
{{ range NodeConditions }}
- type: {{ .type | Quote }}
  status: {{ .status | Quote }}
  reason: {{ .reason | Quote }}
  message: {{ .message | Quote }}
  lastHeartbeatTime: {{ Now | Quote }}
  lastTransitionTime: {{ or $.metadata.creationTimestamp Now | Quote }}
{{ end }}
"""


def node_initialize(kubelet_version: str) -> dict[str, Any]:
    status = _CONDITIONS + f"""\
addresses:
- {{type: InternalIP, address: {{{{ or (index .metadata.annotations "meshdojo.dev/node-ip") NodeIP | Quote }}}}}}
- {{type: Hostname, address: {{{{ NodeName | Quote }}}}}}
daemonEndpoints:
  kubeletEndpoint: {{Port: {{{{ or (index .metadata.annotations "meshdojo.dev/kubelet-port") "10250" }}}}}}
capacity: {{cpu: "32", memory: 64Gi, pods: "110"}}
allocatable: {{cpu: "32", memory: 64Gi, pods: "110"}}
nodeInfo:
  architecture: amd64
  operatingSystem: linux
  kubeletVersion: {kubelet_version}
  kubeProxyVersion: {kubelet_version}
  containerRuntimeVersion: kwok
  kernelVersion: kwok
  osImage: kwok
  machineID: ""
  systemUUID: ""
  bootID: ""
phase: Running
"""
    return _stage("node-initialize", "Node", [{"key": READY, "operator": "NotIn", "values": ["True"]}], {"statusTemplate": status})


def node_heartbeat() -> dict[str, Any]:
    return _stage("node-heartbeat", "Node", [{"key": ".status.phase", "operator": "In", "values": ["Running"]},
                                            {"key": READY, "operator": "In", "values": ["True"]}],
                  {"statusTemplate": _CONDITIONS}, delay={"durationMilliseconds": 10000, "jitterDurationMilliseconds": 5000},
                  immediateNextStage=True)


_POD_RUNNING = """\
phase: Running
startTime: {{ Now | Quote }}
conditions:
{{ range list "PodScheduled" "Initialized" "ContainersReady" "Ready" }}
- {type: {{ . }}, status: "True", lastTransitionTime: {{ Now | Quote }}}
{{ end }}
containerStatuses:
{{ range .spec.containers }}
- {name: {{ .name | Quote }}, image: {{ .image | Quote }}, ready: true, started: true, restartCount: 0, state: {running: {startedAt: {{ Now | Quote }}}}}
{{ end }}
initContainerStatuses:
{{ range .spec.initContainers }}
{{ if eq (or .restartPolicy "") "Always" }}
- {name: {{ .name | Quote }}, image: {{ .image | Quote }}, ready: true, started: true, restartCount: 0, state: {running: {startedAt: {{ Now | Quote }}}}}
{{ else }}
- {name: {{ .name | Quote }}, image: {{ .image | Quote }}, ready: true, restartCount: 0, state: {terminated: {exitCode: 0, reason: Completed, startedAt: {{ Now | Quote }}, finishedAt: {{ Now | Quote }}}}}
{{ end }}
{{ end }}
{{ with PodIPsWith .spec.nodeName false .metadata.uid .metadata.name .metadata.namespace }}
podIP: {{ index . 0 | Quote }}
podIPs:
{{ range . }}
- ip: {{ . | Quote }}
{{ end }}
{{ end }}
"""


def pod_ready() -> dict[str, Any]:
    return _stage("pod-ready", "Pod", [{"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"},
                                      {"key": ".spec.nodeName", "operator": "Exists"},
                                      {"key": ".status.phase", "operator": "In", "values": ["Pending"]}],
                  {"statusTemplate": _POD_RUNNING})


def pod_delete() -> dict[str, Any]:
    return _stage("pod-delete", "Pod", [{"key": ".metadata.deletionTimestamp", "operator": "Exists"}], {"delete": True})


def all_stages(kubelet_version: str) -> list[dict[str, Any]]:
    return [node_initialize(kubelet_version), node_heartbeat(), pod_ready(), pod_delete()]

"""Istio's ``Telemetry`` kind here: trace sampling, where spans are sent, and access logs per workload.

Several Telemetry resources may apply to one workload (the mesh's in meshdojo-system, its
namespace's, its own); as in Istio they merge field by field: the most specific resource that
sets a field decides it (:func:`effective`, pure).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from controlplane.accessfilter import FilterError, compile_filter
from controlplane.fields import FieldReader
from controlplane.workloadselector import WorkloadSelector


@dataclass(frozen=True, slots=True)
class TelemetrySpec:
    """Each field None when the resource leaves it to a less specific Telemetry."""

    sampling_percent: float | None  # tracing[0].randomSamplingPercentage
    access_log: bool | None  # accessLogging[0]: on, unless disabled
    workloads: WorkloadSelector | None  # None: the whole namespace (or mesh)
    trace_provider: str | None = None  # tracing[0].providers[0].name: where the spans are sent
    access_filter: str | None = None  # accessLogging[0].filter.expression (CEL), checked when read


def read(r: FieldReader, spec: dict[str, Any], workloads: WorkloadSelector | None) -> TelemetrySpec:
    """A Telemetry whose shape the schema has checked: what a schema cannot say."""
    if "tracing" not in spec and "accessLogging" not in spec:
        raise r.fail("spec", "a Telemetry needs tracing, accessLogging, or both")
    tracing = spec["tracing"][0] if "tracing" in spec else {}
    if "tracing" in spec and not tracing:
        raise r.fail("spec.tracing[0]", "say randomSamplingPercentage, providers, or both")
    sampling = float(tracing["randomSamplingPercentage"]) if "randomSamplingPercentage" in tracing else None
    provider = tracing["providers"][0]["name"] if tracing.get("providers") else None
    access = not spec["accessLogging"][0].get("disabled", False) if "accessLogging" in spec else None
    expression = spec["accessLogging"][0].get("filter", {}).get("expression") if "accessLogging" in spec else None
    if expression is not None:
        try:
            compile_filter(expression)
        except FilterError as exc:
            raise r.fail("spec.accessLogging[0].filter.expression", f"{exc} in {expression!r}") from None
    return TelemetrySpec(sampling, access, workloads, provider, expression)


@dataclass(frozen=True, slots=True)
class Effective:
    sampling_percent: float | None  # None: no Telemetry sets it (the sidecar's default applies)
    access_log: bool | None  # None: no Telemetry sets it
    sampling_from: str = ""  # namespace/name of the Telemetry that set each, for the learner
    access_log_from: str = ""
    trace_provider: str | None = None  # None: spans stay in the sidecars (meshdojo trace reads them)
    trace_provider_from: str = ""
    access_filter: str | None = None  # the filter of the Telemetry that decided access_log


def effective(applied: Sequence[Any]) -> Effective:
    """``applied``: the Telemetry resources that apply to a workload, most specific first."""
    sampling = next(((r.spec.sampling_percent, f"{r.namespace}/{r.name}") for r in applied
                     if r.spec.sampling_percent is not None), (None, ""))
    access = next(((r.spec.access_log, f"{r.namespace}/{r.name}", r.spec.access_filter) for r in applied
                   if r.spec.access_log is not None), (None, "", None))
    provider = next(((r.spec.trace_provider, f"{r.namespace}/{r.name}") for r in applied if r.spec.trace_provider is not None),
                    (None, ""))
    return Effective(sampling[0], access[0], sampling[1], access[1], provider[0], provider[1], access[2])

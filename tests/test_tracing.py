"""Distributed tracing's pure parts: reading W3C and B3 contexts, the sampling decision, the
Telemetry kind, and putting spans together into traces and waterfalls."""

from __future__ import annotations

import random

import pytest

from controlplane import traces
from controlplane.policy import PolicyError, parse
from controlplane.selection import Workload, applicable
from controlplane.telemetrypolicy import Effective
from proxy.tracing import SpanLog, TraceContext, context_headers, parse_b3, parse_traceparent, read_context, start_or_continue
from sandbox import tracecli

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def test_traceparent_is_read_as_w3c_trace_context_says():
    assert parse_traceparent(f"00-{TRACE}-{SPAN}-01") == TraceContext(TRACE, SPAN, True)
    assert parse_traceparent(f"00-{TRACE}-{SPAN}-00") == TraceContext(TRACE, SPAN, False)
    assert parse_traceparent(f" 00-{TRACE.upper()}-{SPAN}-03 ") == TraceContext(TRACE, SPAN, True)  # other flag bits kept out
    assert parse_traceparent(f"01-{TRACE}-{SPAN}-01-future") == TraceContext(TRACE, SPAN, True)  # a later version may add fields
    for bad in (f"ff-{TRACE}-{SPAN}-01",  # the forbidden version
                f"00-{'0' * 32}-{SPAN}-01", f"00-{TRACE}-{'0' * 16}-01",  # all-zero ids are invalid
                f"00-{TRACE[:-1]}-{SPAN}-01", f"00-{TRACE}-{SPAN}-1", f"00-{TRACE}-{SPAN}-01-extra",
                f"00-{TRACE}-{SPAN}", "", "nonsense", f"00-{TRACE}-{SPAN[:-1]}g-01"):
        assert parse_traceparent(bad) is None, bad


def test_b3_single_and_multi_headers_and_64_bit_trace_ids():
    short = "a3ce929d0e0e4736"
    assert parse_b3(f"{TRACE}-{SPAN}-1", {}) == TraceContext(TRACE, SPAN, True)
    assert parse_b3(f"{short}-{SPAN}-0", {}) == TraceContext("0" * 16 + short, SPAN, False)
    assert parse_b3(f"{TRACE}-{SPAN}", {}) == TraceContext(TRACE, SPAN, True)  # no decision: sampled, as Envoy reads it
    assert parse_b3(f"{TRACE}-{SPAN}-d", {}).sampled  # debug
    assert parse_b3("0", {}) is None  # a decision alone, no trace
    multi = {b"x-b3-traceid": TRACE, b"x-b3-spanid": SPAN, b"x-b3-sampled": "0"}
    assert parse_b3(None, multi) == TraceContext(TRACE, SPAN, False)
    assert parse_b3(None, {**multi, b"x-b3-flags": "1"}).sampled  # the debug flag samples
    assert parse_b3(None, {b"x-b3-traceid": TRACE}) is None  # no span id
    assert parse_b3(None, {b"x-b3-traceid": "xyz", b"x-b3-spanid": SPAN}) is None


def test_traceparent_wins_over_b3_and_a_broken_one_falls_back():
    b3 = {b"x-b3-traceid": "1" * 32, b"x-b3-spanid": "2" * 16}
    assert read_context({b"traceparent": f"00-{TRACE}-{SPAN}-01", **b3}).trace_id == TRACE
    assert read_context({b"traceparent": "broken", **b3}).trace_id == "1" * 32
    assert read_context({}) is None


def test_the_sampling_decision():
    rng = random.Random(7)
    sampled, unsampled = TraceContext(TRACE, SPAN, True), TraceContext(TRACE, SPAN, False)
    assert start_or_continue(sampled, 0, False, rng) == (TRACE, SPAN)  # a sampled context is always continued
    assert start_or_continue(unsampled, 100, True, rng) is None  # an unsampled one never
    assert start_or_continue(None, 100, False, rng) is None  # not ours to start (a caller's sidecar had the chance)
    assert start_or_continue(None, 0, True, rng) is None
    started = start_or_continue(None, 100, True, rng)
    assert started is not None and len(started[0]) == 32 and started[1] is None
    hits = sum(start_or_continue(None, 10, True, rng) is not None for _ in range(10_000))
    assert 850 < hits < 1150  # about 10 %


def test_the_next_hop_gets_this_span_as_its_parent_in_both_formats():
    assert context_headers(TRACE, SPAN, "1" * 16) == [
        (b"traceparent", f"00-{TRACE}-{SPAN}-01".encode()), (b"x-b3-traceid", TRACE.encode()), (b"x-b3-spanid", SPAN.encode()),
        (b"x-b3-sampled", b"1"), (b"x-b3-parentspanid", b"1" * 16)]
    assert b"x-b3-parentspanid" not in dict(context_headers(TRACE, SPAN, None))


def telemetry(spec: dict, ns: str = "shop", name: str = "t"):
    return parse({"apiVersion": "policy.meshdojo.dev/v1alpha1", "kind": "Telemetry", "metadata": {"name": name, "namespace": ns},
                  "spec": spec}, "telemetry.yaml", 0)


@pytest.mark.parametrize(("spec", "field", "message"), [
    ({}, "spec", "a Telemetry needs tracing, accessLogging, or both"),
    ({"accessLogging": [{"providers": [{"name": "otel"}]}]}, "spec.accessLogging[0].providers[0].name", "envoy"),
    ({"accessLogging": [{"disabled": "yes"}]}, "spec.accessLogging[0].disabled", "true or false"),
    ({"tracing": []}, "spec.tracing", "a list of one tracing entry"),
    ({"tracing": [{"randomSamplingPercentage": 1}, {"randomSamplingPercentage": 2}]}, "spec.tracing", "a list of one tracing entry"),
    ({"tracing": [{"randomSamplingPercentage": 150}]}, "spec.tracing[0].randomSamplingPercentage", "100"),
    ({"tracing": [{}]}, "spec.tracing[0]", "say randomSamplingPercentage, providers, or both"),
    ({"tracing": [{"providers": [{"name": "a"}, {"name": "b"}]}]}, "spec.tracing[0].providers", "a list of one provider"),
    ({"tracing": [{"randomSamplingPercentage": 5, "customTags": {}}]}, "spec.tracing[0].customTags", "unknown field"),
    ({"tracing": [{"randomSamplingPercentage": 5}], "targetRef": {"name": "web"}, "selector": {"matchLabels": {"app": "web"}}},
     "spec.selector", "not both"),
])
def test_a_wrong_telemetry_is_refused_naming_its_field(spec, field, message):
    with pytest.raises(PolicyError) as err:
        telemetry(spec)
    assert err.value.field == field and message in err.value.message, err.value


def test_istios_telemetry_is_read_as_ours():  # tests/test_istio_security.py: in every version, merged with ours
    istios = parse({"apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry", "metadata": {"name": "mesh-default"},
                    "spec": {"tracing": [{"randomSamplingPercentage": 100}]}}, "istio.yaml", 0)
    assert (istios.kind, istios.spec.sampling_percent) == ("Telemetry.telemetry.istio.io", 100)
    with pytest.raises(PolicyError, match="Telemetry with apiVersion telemetry.istio.io/v1 or v1alpha1 .*randomSamplingPercentage"):
        parse({**istios.document, "apiVersion": "telemetry.example.io/v1"}, "istio.yaml", 0)  # a group nobody has: the pointer


def test_telemetries_merge_field_by_field_the_most_specific_first():
    from controlplane.telemetrypolicy import effective

    web = Workload("shop", "web", "web", "web-0", {"app": "web"})
    logs = telemetry({"accessLogging": [{"providers": [{"name": "envoy"}]}]}, "meshdojo-system", "mesh-logs")
    sampled = telemetry({"tracing": [{"randomSamplingPercentage": 100}]}, "shop", "ns-tracing")
    quiet = telemetry({"accessLogging": [{"disabled": True}], "selector": {"matchLabels": {"app": "web"}}}, "shop", "web-quiet")
    assert effective(applicable([logs, sampled], web, {})["Telemetry"].resources) == \
        Effective(100.0, True, "shop/ns-tracing", "meshdojo-system/mesh-logs")
    assert effective(applicable([logs, sampled, quiet], web, {})["Telemetry"].resources) == \
        Effective(100.0, False, "shop/ns-tracing", "shop/web-quiet")
    assert effective(()) == Effective(None, None)


def test_the_most_specific_telemetry_applies():
    web = Workload("shop", "web", "web", "web-0", {"app": "web"})
    mesh = telemetry({"tracing": [{"randomSamplingPercentage": 5}]}, "meshdojo-system", "mesh")
    ns = telemetry({"tracing": [{"randomSamplingPercentage": 50}]}, "shop", "ns")
    mine = telemetry({"tracing": [{"randomSamplingPercentage": 100}], "selector": {"matchLabels": {"app": "web"}}}, "shop", "web")
    assert applicable([mesh], web, {})["Telemetry"].chosen.spec.sampling_percent == 5
    assert applicable([mesh, ns], web, {})["Telemetry"].chosen is ns
    assert applicable([mesh, ns, mine], web, {})["Telemetry"].chosen is mine


def span(span_id: str, parent: str | None, start: float, ms: float, workload: str = "shop/web-0", direction: str = "outbound",
         status: int = 200, trace: str = TRACE, **extra) -> dict:
    return {"traceId": trace, "spanId": span_id, "parentId": parent, "workload": workload, "direction": direction,
            "method": "GET", "authority": "api:80", "path": "/x", "status": status, "start": start, "durationMs": ms,
            "peer": "", "fate": "no policy applied", "error": None, **extra}


def test_spans_become_a_tree_in_time_order():
    root = span("a" * 16, "f" * 16, 100.0, 10)  # the app's own span (its parent) is not among them: still the root
    server = span("b" * 16, "a" * 16, 100.001, 8, direction="inbound")
    later = span("d" * 16, "b" * 16, 100.006, 1)
    first = span("c" * 16, "b" * 16, 100.002, 2)
    orphan = span("e" * 16, "9" * 16, 100.003, 1, workload="shop/db-0")  # its parent's sidecar was not read
    ordered = traces.tree([later, server, root, first, orphan, dict(first)])  # a span read twice counts once
    assert [(depth, s["spanId"][0]) for depth, s in ordered] == [(0, "a"), (1, "b"), (2, "c"), (2, "d"), (0, "e")]


def test_traces_are_summarized_latest_first_with_their_failures():
    other = "1" * 32
    spans = [span("a" * 16, None, 100.0, 10), span("b" * 16, "a" * 16, 100.002, 3, status=503),
             span("c" * 16, None, 200.0, 4, trace=other, error="connect_failed", status=502)]
    first, second = traces.summarize(spans)
    assert (first.trace_id, first.spans, first.failed, first.duration_ms) == (other, 1, 1, 4.0)
    assert (second.trace_id, second.spans, second.failed, second.root["spanId"]) == (TRACE, 2, 1, "a" * 16)
    assert traces.matching(spans, "4bf9") == [TRACE] and traces.matching(spans, "") == sorted([TRACE, other])


def test_the_waterfall_draws_each_span_where_it_sits_in_time_with_its_fate():
    lines = tracecli.waterfall(TRACE, [
        span("a" * 16, None, 100.0, 10.0, peer="spiffe://meshdojo.local/ns/shop/sa/api", fate="attempts=1[api-0 -> 503]", status=503),
        span("b" * 16, "a" * 16, 100.005, 5.0, "shop/api-0", "inbound", 503, fate="fault=abort 503 by shop/f")])
    assert lines[0].startswith(f"trace {TRACE}: 2 spans at 2 sidecars, 10.0 ms")
    assert "|████████████████████████| shop/web-0 outbound: GET api:80/x -> 503 to api (mutual TLS)" in lines[1]
    assert "attempts=1[api-0 -> 503]" in lines[2]
    assert "|            ████████████|   shop/api-0 inbound: GET api:80/x -> 503" in lines[3]
    assert lines[4].strip() == "fault=abort 503 by shop/f"


def test_the_span_log_keeps_the_latest_and_finds_a_trace_by_its_first_digits():
    from proxy.tracing import Span

    log = SpanLog("shop/web-0", "web", size=3)
    for i in range(5):
        log.add(Span(f"{i:032x}", f"{i + 1:016x}", None, "shop/web-0", "web", "outbound", "GET", "api", "/", 200, float(i), 1.0, "", "", None))
    assert log.recorded == 5 and [s["start"] for s in log.entries()] == [2.0, 3.0, 4.0]
    assert [s["start"] for s in log.entries(limit=1)] == [4.0] and log.entries(limit=0) == []
    assert [s["start"] for s in log.entries("0" * 31 + "3")] == [3.0] and log.entries("0" * 31 + "1") == []

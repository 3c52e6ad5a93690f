"""Peak-EWMA and power-of-two-choices, with an injected clock and a seeded random source."""

from __future__ import annotations

import math
import random
from collections import Counter

from proxy.balancer import DEFAULT_RTT, P2cBalancer, PeakEwma


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_peak_jumps_up_at_once_and_decays_down_slowly():
    clock = FakeClock()
    load = PeakEwma(clock, decay=10.0)
    assert load.estimate == DEFAULT_RTT
    load.observe(0.010)  # first observation replaces the default
    assert load.estimate == 0.010
    clock.now += 1
    load.observe(0.500)  # a slow response: the peak is taken immediately
    assert load.estimate == 0.500
    clock.now += 10  # one decay period later, a fast response pulls it ~63 % of the way down
    load.observe(0.010)
    assert abs(load.estimate - (0.5 * 0.36788 + 0.01 * 0.63212)) < 1e-4


def test_cost_grows_with_requests_in_flight():
    load = PeakEwma(FakeClock())
    load.observe(0.02)
    idle = load.cost()
    load.pending = 3
    assert load.cost() == idle * 4


def test_p2c_prefers_the_cheaper_of_two_and_never_picks_the_same_twice():
    clock = FakeClock()
    balancer: P2cBalancer[str] = P2cBalancer(random.Random(7), clock)
    endpoints = ["fast", "slow", "slower"]
    balancer.load("fast").observe(0.001)
    balancer.load("slow").observe(0.050)
    balancer.load("slower").observe(0.200)
    picks = Counter(balancer.pick(endpoints, key=lambda e: e) for _ in range(3000))
    # the fast endpoint wins every draw it is in (2/3 of draws); "slower" never wins a draw
    assert picks["slower"] == 0
    assert 0.60 < picks["fast"] / 3000 < 0.73
    assert 0.27 < picks["slow"] / 3000 < 0.40


def test_p2c_spreads_evenly_among_equal_endpoints():
    balancer: P2cBalancer[int] = P2cBalancer(random.Random(1), FakeClock())
    picks = Counter(balancer.pick([0, 1, 2, 3], key=lambda e: e) for _ in range(4000))
    assert all(800 < n < 1200 for n in picks.values()), picks


def test_single_endpoint_and_forgetting():
    balancer: P2cBalancer[str] = P2cBalancer(random.Random(1), FakeClock())
    assert balancer.pick(["only"], key=lambda e: e) == "only"
    balancer.load("a").observe(1.0)
    balancer.forget_except({"b"})
    assert balancer.load("a").estimate == DEFAULT_RTT


def test_a_new_endpoint_is_probed_once_then_judged_by_its_latency():
    clock = FakeClock()
    balancer: P2cBalancer[str] = P2cBalancer(random.Random(3), clock)
    balancer.load("old").observe(0.002)
    assert balancer.pick(["old", "new"], key=lambda e: e) == "new"  # idle and unmeasured: probe it
    balancer.load("new").pending = 1  # while the probe is in flight, it costs the default RTT
    assert balancer.pick(["old", "new"], key=lambda e: e) == "old"
    balancer.load("new").pending = 0
    balancer.load("new").observe(0.001)
    assert balancer.pick(["old", "new"], key=lambda e: e) == "new"


def test_an_idle_endpoints_estimate_decays_so_it_is_tried_again_within_seconds():
    """After one slow response, "slow" lost every draw; with no traffic its estimate decays
    towards zero, and within a few decay periods it is cheaper than a busy, fast endpoint."""
    clock = FakeClock()
    balancer: P2cBalancer[str] = P2cBalancer(random.Random(5), clock)
    balancer.load("fast").observe(0.005)
    balancer.load("slow").observe(2.0)  # one 2 s response
    picks = Counter(balancer.pick(["fast", "slow"], key=lambda e: e) for _ in range(50))
    assert picks == {"fast": 50}
    seconds_until_tried = None
    for tick in range(1, 61):  # "fast" keeps serving (1 request in flight, 5 ms each), "slow" idles
        clock.now += 0.5
        balancer.load("fast").pending = 1
        balancer.load("fast").observe(0.005)
        if balancer.pick(["fast", "slow"], key=lambda e: e) == "slow":
            seconds_until_tried = tick * 0.5
            break
    # with the idle decay constant of 2 s: 2 s * e^(-t/2) < 2 * 5 ms  ->  t > 2 * ln(200) ≈ 10.6 s
    assert seconds_until_tried is not None and 9 <= seconds_until_tried <= 12, seconds_until_tried


def test_idle_decay_with_the_injected_clock_is_exponential_and_only_while_idle():
    clock = FakeClock()
    load = PeakEwma(clock, decay=10.0, idle_decay=2.0)
    load.observe(1.0)
    clock.now += 2.0
    assert abs(load.cost() - math.exp(-1)) < 1e-9
    clock.now += 2.0
    assert abs(load.cost() - math.exp(-2)) < 1e-9
    load.pending = 1  # a request in flight: no decay, and the cost doubles
    clock.now += 2.0
    assert abs(load.cost() - 2 * math.exp(-2)) < 1e-9


async def test_an_endpoint_gone_from_every_service_is_forgotten_by_the_balancer():
    """Instances come and go on new ports (a restart, a scale, a roll): the balancer keeps a
    load estimate only for endpoints some discovery watch still knows, as the proxy wires it."""
    from proxy.discovery import Discovery, EndpointSet

    discovery = Discovery(None, None, None)  # type: ignore[arg-type]  # no watch runs here: events are applied by hand
    balancer: P2cBalancer[str] = P2cBalancer(random.Random(1), FakeClock())
    discovery.on_change(lambda: balancer.forget_except(discovery.known_keys()))
    emoji = discovery.sets["emoji"] = EndpointSet("emoji")
    emoji.apply({"type": "add", "snapshot": True, "endpoints": [{"address": "127.0.0.1", "port": p, "meshed": False} for p in (1, 2)]})
    discovery.changed()
    for port in (1, 2):
        balancer.load(("127.0.0.1", port)).observe(0.5)
    emoji.apply({"type": "remove", "endpoints": [{"address": "127.0.0.1", "port": 1}]})
    discovery.changed()
    assert balancer.load(("127.0.0.1", 2)).estimate != DEFAULT_RTT  # still known: its estimate stays
    assert balancer.load(("127.0.0.1", 1)).estimate == DEFAULT_RTT  # gone: a new one would start afresh


async def test_an_endpoint_gone_is_forgotten_by_the_outlier_breakers_too():
    """A CircuitBreaker's per-endpoint state (tripped or counting failures) goes with the
    endpoint: `meshdojo` shows breakers for endpoints that exist, and a returning address starts closed."""
    from pathlib import Path

    import yaml

    from controlplane.selection import Workload
    from proxy.discovery import Discovery, EndpointSet
    from proxy.outbound import forget_gone_endpoints
    from proxy.policies import PolicyWatch
    from proxy.traffic import Breakers

    policy = yaml.safe_load((Path(__file__).parent.parent / "demo-apps/emojivoto/policies/emoji-outlier.yaml").read_text())
    watch = PolicyWatch(None, None, Workload("emojivoto", "web"))  # type: ignore[arg-type]  # the snapshot is applied by hand
    watch.apply_snapshot({"resources": [{"document": policy}]})
    breakers = Breakers(watch, FakeClock(), random.Random(1))
    discovery = Discovery(None, None, None)  # type: ignore[arg-type]
    forget_gone_endpoints(discovery, P2cBalancer(random.Random(1), FakeClock()), breakers)
    emoji = discovery.sets["emoji"] = EndpointSet("emoji")
    emoji.apply({"type": "add", "snapshot": True, "endpoints": [{"address": "127.0.0.1", "port": p, "meshed": False} for p in (1, 2)]})
    discovery.changed()
    breaker = breakers.get("emojivoto", "emoji")
    assert breaker is not None
    for port in (1, 2):
        for _ in range(breaker.threshold):
            breaker.record(("127.0.0.1", port), failure=True)
    assert breakers.states() == {"emoji.emojivoto.svc.cluster.local": {"127.0.0.1:1": "open", "127.0.0.1:2": "open"}}
    emoji.apply({"type": "remove", "endpoints": [{"address": "127.0.0.1", "port": 1}]})
    discovery.changed()
    assert breakers.states() == {"emoji.emojivoto.svc.cluster.local": {"127.0.0.1:2": "open"}}
    assert breaker.admit(("127.0.0.1", 1))  # back on the same address later: closed, a new endpoint

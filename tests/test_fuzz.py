"""A time-boxed, fixed-seed run of the mutation fuzzer (tests/fuzzing.py) against a sidecar's
outbound and inbound listeners and an ingress gateway. `make fuzz` runs it for longer."""

from __future__ import annotations

import pytest

from tests.fuzzing import VIOLATIONS, run_against_mesh, table

pytestmark = pytest.mark.timeout(150)
SECONDS_PER_LISTENER = 15
SEED = 20261126


async def test_mutated_requests_are_refused_answered_once_and_never_reach_the_app(tmp_path):
    campaigns = await run_against_mesh(tmp_path, SECONDS_PER_LISTENER, SEED)
    report = table(campaigns)
    print(report)
    for campaign in campaigns:
        counts = campaign.counts()
        assert len(campaign.results) > 50, report  # it really ran
        assert counts["rejected"] > 10 and counts["answered"] > 10, report  # the mutations hit both ways
        bad = campaign.violations()
        assert not bad, f"{campaign.listener}: {[(v.outcome, v.case[:200], v.detail) for v in bad[:5]]}\n{report}"
        assert campaign.alive, f"{campaign.listener} stopped answering\n{report}"
        assert campaign.rss_after_kb - campaign.rss_before_kb < 16 * 1024, report  # memory bounded
    assert set(VIOLATIONS) == {"REACHED_APP", "APP_GOT_GARBAGE", "TWO_RESPONSES", "HANG", "SERVER_ERROR"}

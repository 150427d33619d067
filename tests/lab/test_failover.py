"""Each failure kind on the real data plane, checked against the VRRP timing for that kind.

Bounds allow for this 2-core machine's scheduling and the probe interval (5 ms at 200 Hz); they are wide enough
to be stable and narrow enough that the wrong kind of failure (or no failover at all) falls outside them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from kalab.cluster import failover
from kalab.lab import scenario
from kalab.model.vrrp import expected_outage
from tests.support.markers import needs_root_tools

pytestmark = needs_root_tools("keepalived", "iptables-restore", "ip", "curl")
PREFIX = f"kalab-t{os.getpid()}-fo-"
SLACK_MS = 250.0


@pytest.fixture(scope="module")
def scn() -> Iterator[scenario.Scenario]:
    with scenario.start(scenario.ScenarioSpec(prefix=PREFIX)) as built:
        yield built


def test_graceful_stop_hands_over_after_skew_time_without_clients_noticing(scn: scenario.Scenario) -> None:
    result, timeline, events = failover.run_trial(scn, "graceful")
    exp = expected_outage("graceful")
    assert result.new_master not in (None, result.old_master)
    assert result.takeover_ms is not None
    assert exp.takeover_ms * 0.9 <= result.takeover_ms <= exp.takeover_ms + SLACK_MS
    # The old node's kube-proxy keeps serving the VIP until ARP follows the new MASTER.
    assert result.outage_ms < exp.takeover_ms
    assert result.duplicate_vip_ms == 0.0
    assert timeline["ok"].sum() > 0.95 * len(timeline)
    assert set(events["node"]) == {result.old_master, result.new_master}


def test_crash_leaves_the_vip_on_two_nodes_until_keepalived_returns(scn: scenario.Scenario) -> None:
    result, _, events = failover.run_trial(scn, "crash")
    exp = expected_outage("crash")
    assert result.new_master not in (None, result.old_master)
    assert result.takeover_ms is not None
    assert exp.earliest_takeover_s * 1000 - SLACK_MS <= result.takeover_ms <= exp.takeover_ms + SLACK_MS
    assert result.outage_ms < 200.0  # the dead keepalived's node kept answering
    repair_ms = failover.CRASH_REPAIR_AFTER * 1000
    assert repair_ms * 0.9 <= result.duplicate_vip_ms <= repair_ms + 2000.0
    both = events[events["holds"]].groupby("node")["t"].min()
    assert len(both) == 2  # the stale copy and the new MASTER's


def test_link_down_costs_master_down_interval(scn: scenario.Scenario) -> None:
    result, _, _ = failover.run_trial(scn, "link-down")
    exp = expected_outage("link-down")
    assert result.new_master not in (None, result.old_master)
    assert exp.earliest_outage_s * 1000 - SLACK_MS <= result.outage_ms <= exp.outage_ms + SLACK_MS
    assert result.lost >= 0.8 * exp.earliest_outage_s * 200
    assert result.duplicate_vip_ms == 0.0
    # Afterwards the lost node is back and the VIP is served again.
    assert scn.wait_for_single_master(10.0) == result.new_master
    assert scn.curl_from_bastion().startswith(scenario.DEMO_BODY)


def test_sub_second_adverts_shrink_the_hard_failover() -> None:
    spec = scenario.ScenarioSpec(prefix=f"kalab-t{os.getpid()}-v3-", advert_int=0.1, vrrp_version=3)
    with scenario.start(spec) as fast:
        result, _, _ = failover.run_trial(fast, "link-down")
    exp = expected_outage("link-down", 0.1, version=3)
    assert exp.earliest_outage_s * 1000 - 100 <= result.outage_ms <= exp.outage_ms + SLACK_MS

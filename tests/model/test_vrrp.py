import pytest

from kalab.model.errors import KalabError
from kalab.model.vrrp import (
    FailureKind,
    check_timing,
    expected_outage,
    master_down_interval,
    skew_time,
)


def test_keepalived_defaults_give_the_facts_hard_failure_outage() -> None:
    # keepalived itself reports "Master down timer = 3609375 usecs" for priority 100, advert_int 1.
    assert master_down_interval(1.0, 100) == pytest.approx(3.609375)
    assert skew_time(1.0, 100) == pytest.approx(0.609375)


def test_vrrp_v3_sub_second_adverts_shrink_the_hard_failover() -> None:
    assert master_down_interval(0.1, 100) == pytest.approx(0.3609375)


def test_higher_backup_priority_takes_over_sooner() -> None:
    assert skew_time(1.0, 200) < skew_time(1.0, 100)
    assert master_down_interval(1.0, 254) == pytest.approx(3 + 2 / 256)


def test_graceful_takeover_is_skew_time_and_leaves_no_duplicate() -> None:
    exp = expected_outage("graceful")
    assert exp.kind is FailureKind.GRACEFUL
    assert exp.takeover_ms == pytest.approx(609.375)
    assert exp.earliest_takeover_s == exp.takeover_s  # priority 0 is sent at once: no advert phase involved
    assert exp.duplicate_vip_s == 0.0


def test_graceful_outage_depends_on_whether_every_node_serves_the_vip() -> None:
    # kube-proxy DNATs the VIP on every node: the old node keeps serving until ARP moves clients away.
    assert expected_outage("graceful").outage_s == 0.0
    assert expected_outage("graceful", kube_proxy=False).outage_ms == pytest.approx(609.375)


def test_hard_failures_land_within_one_advert_of_master_down() -> None:
    exp = expected_outage("link-down", 1.0)
    assert exp.earliest_outage_s == pytest.approx(2.609375)
    assert exp.outage_s == pytest.approx(3.609375)
    crash = expected_outage("crash", 0.1, version=3)
    assert crash.earliest_takeover_s == pytest.approx(0.2609375)


def test_crash_costs_clients_nothing_but_opens_a_duplicate_window() -> None:
    exp = expected_outage(FailureKind.CRASH, 1.0)
    assert exp.outage_s == 0.0
    assert exp.takeover_ms == pytest.approx(3609.375)
    assert exp.duplicate_vip_s is None  # unbounded until something removes the stale VIP
    assert "stale" in exp.explanation


def test_link_down_costs_master_down_interval() -> None:
    exp = expected_outage("link-down", 0.1, version=3)
    assert exp.outage_ms == pytest.approx(360.9375)
    assert exp.takeover_s == exp.outage_s


@pytest.mark.parametrize(
    ("advert", "priority", "version", "needle"),
    [
        (0.5, 100, 2, "version 3"),
        (0.005, 100, 3, "centiseconds"),
        (1.0, 255, 2, "reserved"),
        (1.0, 100, 4, "use 2 or 3"),
        (0.0, 100, 2, "positive"),
        (300.0, 100, 2, "longer than"),
    ],
)
def test_impossible_timings_are_refused_with_the_fix(advert: float, priority: int, version: int, needle: str) -> None:
    with pytest.raises(KalabError, match=needle):
        check_timing(advert, priority, version)


def test_unknown_failure_kind_names_the_choices() -> None:
    with pytest.raises(KalabError, match="graceful, crash, link-down"):
        expected_outage("explode")

import pandas as pd
import pytest

from kalab.model.errors import KalabError
from kalab.model.failover import (
    analyse_outage,
    duplicate_vip_ms,
    masters_at,
    new_master,
    trials_frame,
)


def timeline(pattern: str, interval: float = 0.01, start: float = 100.0) -> pd.DataFrame:
    """'a' / 'b' = answered by pod a / b, '.' = failed; one character per request."""
    rows = [
        {"t": start + i * interval, "ok": ch != ".", "backend": None if ch == "." else f"pod-{ch}"}
        for i, ch in enumerate(pattern)
    ]
    return pd.DataFrame(rows)


def test_one_gap_is_measured_from_first_failure_to_first_success() -> None:
    out = analyse_outage(timeline("abab" + "." * 36 + "abab"), injected_at=100.035)
    assert out.lost == 36
    assert out.start == pytest.approx(100.04)
    assert out.end == pytest.approx(100.40)
    assert out.outage_ms == pytest.approx(360.0)
    assert out.recovered
    assert out.backends_before == ("pod-a", "pod-b")
    assert out.backends_after == ("pod-a", "pod-b")


def test_failures_before_the_injection_are_not_the_failover() -> None:
    out = analyse_outage(timeline("a" + "." * 10 + "aaaa" + "..." + "aa"), injected_at=100.14)
    assert out.lost == 3
    assert out.failed_total == 3


def test_longest_run_wins_and_total_counts_every_failure() -> None:
    out = analyse_outage(timeline("aa..a.....aa"))
    assert out.lost == 5
    assert out.failed_total == 7


def test_no_failure_means_zero_outage() -> None:
    out = analyse_outage(timeline("abababab"), injected_at=100.02)
    assert out.outage_ms == 0.0
    assert out.lost == 0
    assert out.start is None


def test_unrecovered_outage_is_flagged() -> None:
    out = analyse_outage(timeline("aa......"))
    assert not out.recovered
    assert out.lost == 6
    assert out.backends_after == ()


def test_unsorted_input_is_ordered_by_send_time() -> None:
    frame = timeline("aa...bb").iloc[::-1]
    assert analyse_outage(frame).lost == 3


def test_missing_columns_get_one_sentence() -> None:
    with pytest.raises(KalabError, match="lacks the column"):
        analyse_outage(pd.DataFrame({"t": [1.0]}))


def states() -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"t": 0.0, "node": "master-1", "state": "MASTER"},
            {"t": 0.0, "node": "master-2", "state": "BACKUP"},
            {"t": 5.0, "node": "master-1", "state": "FAULT"},
            {"t": 8.6, "node": "master-2", "state": "MASTER"},
        ]
    )


def test_who_is_master_when() -> None:
    assert masters_at(states(), 1.0) == ["master-1"]
    assert masters_at(states(), 6.0) == []
    assert masters_at(states(), 9.0) == ["master-2"]


def test_new_master_is_the_first_other_node_to_take_over() -> None:
    assert new_master(states(), "master-1", 5.0) == ("master-2", 8.6)
    assert new_master(states(), "master-2", 9.0) == (None, None)


def test_duplicate_vip_window_counts_overlapping_holders() -> None:
    rows = []
    for step in range(10):
        t = step * 0.1
        rows.append({"t": t, "node": "master-1", "holds": True})
        rows.append({"t": t, "node": "master-2", "holds": step >= 4})
    assert duplicate_vip_ms(pd.DataFrame(rows)) == pytest.approx(500.0)


def test_trials_frame_ratio_skips_zero_expectations() -> None:
    frame = trials_frame([{"outage_ms": 700.0, "expected_ms": 609.375}, {"outage_ms": 3.0, "expected_ms": 0.0}])
    assert frame.loc[0, "ratio"] == pytest.approx(700 / 609.375)
    assert pd.isna(frame.loc[1, "ratio"])


def test_duplicate_window_from_address_events_clipped_to_the_trial() -> None:
    events = pd.DataFrame(
        [
            {"t": 0.0, "node": "master-2", "holds": True},
            {"t": 0.0, "node": "master-1", "holds": False},
            {"t": 3.6, "node": "master-1", "holds": True},  # backup claims the VIP; the stale copy stays
            {"t": 5.0, "node": "master-2", "holds": False},  # restarted keepalived removes the stale VIP
        ]
    )
    assert duplicate_vip_ms(events) == pytest.approx(1400.0)
    assert duplicate_vip_ms(events, start=4.0, end=4.5) == pytest.approx(500.0)
    assert duplicate_vip_ms(events.iloc[:3], end=6.0) == pytest.approx(2400.0)

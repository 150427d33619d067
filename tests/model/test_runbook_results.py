"""The pure pieces behind notebook 05 and the run summary: timing from annotations, advert rates, formula fit."""

from __future__ import annotations

import pandas as pd
import pytest

from kalab.model.errors import KalabError
from kalab.model.failover import compare_with_formula
from kalab.model.operator import GROUP_ANNOTATION, VERBATIM_ANNOTATION, CarriedService, carried_service, vrrp_timing
from kalab.model.prometheus import advert_rates
from kalab.model.summary import SUMMARY_MIME, collect, summary_lines
from kalab.model.vrrp import timing_from_verbatim


def test_a_services_verbatim_lines_win_over_the_groups_defaults() -> None:
    assert timing_from_verbatim({}, {}) == (1.0, 2)
    assert timing_from_verbatim({}, {"vrrp_version": "3"}) == (1.0, 3)
    assert timing_from_verbatim({"advert_int": "0.1", "version": "3"}, {"vrrp_version": "2"}) == (0.1, 3)
    assert timing_from_verbatim({"advert_int": "2"}, {}) == (2.0, 2)


def scrape(t: float, node: str, state: str, sent: float, metric: str = "advert_sent") -> dict[str, object]:
    return {
        "metric": f"keepalived_vrrp_{metric}",
        "name": "demo/demo",
        "node": node,
        "state": state,
        "value": sent,
        "scraped_at": pd.Timestamp(t, unit="s", tz="UTC"),
    }


def test_advert_rate_is_the_counters_slope_per_node() -> None:
    frame = pd.DataFrame(
        [
            scrape(0, "master-1", "MASTER", 10),
            scrape(0, "master-2", "BACKUP", 0),
            scrape(2, "master-1", "MASTER", 30),
            scrape(2, "master-2", "BACKUP", 0),
            scrape(0, "master-2", "BACKUP", 100, "advert_rcvd"),
            scrape(2, "master-2", "BACKUP", 119, "advert_rcvd"),
            {
                "metric": "keepalived_up",
                "name": None,
                "node": "master-1",
                "state": None,
                "value": 1.0,
                "scraped_at": pd.Timestamp(2, unit="s", tz="UTC"),
            },
        ]
    )
    rates = advert_rates(frame, "demo/demo").set_index("node")
    assert rates.loc["master-1", "adverts_per_s"] == pytest.approx(10.0)
    assert rates.loc["master-2", "adverts_per_s"] == 0.0 and rates.loc["master-2", "state"] == "BACKUP"
    assert rates.loc["master-2", "received_per_s"] == pytest.approx(9.5)  # the BACKUP hears the MASTER
    assert pd.isna(rates.loc["master-1", "received_per_s"])  # no advert_rcvd samples for it here
    assert advert_rates(frame, "demo/other").empty
    one = advert_rates(frame.iloc[:1], "demo/demo")
    assert one["adverts_per_s"].isna().all()  # one scrape has no slope
    assert advert_rates(pd.DataFrame({"metric": []}), "demo/demo").empty


def trial(kind: str, takeover: float | None, advert_int: float = 1.0) -> dict[str, object]:
    latest = 609.4 if kind == "graceful" else 3609.4 * advert_int
    earliest = 609.4 if kind == "graceful" else 2609.4 * advert_int
    return {
        "kind": kind,
        "advert_int": advert_int,
        "vrrp_version": 2 if advert_int >= 1 else 3,
        "takeover_ms": takeover,
        "expected_takeover_ms": latest,
        "expected_min_takeover_ms": earliest,
        "outage_ms": 0.0,
        "expected_ms": 0.0,
    }


def test_takeovers_are_judged_against_the_formulas_window() -> None:
    frame = pd.DataFrame(
        [
            trial("graceful", 615.0),
            trial("graceful", 640.0),
            trial("link-down", 3368.0),
            trial("link-down", 265.0, 0.1),
            trial("crash", 1200.0),
        ]
    )
    table = compare_with_formula(frame).set_index(["kind", "advert_int"])
    assert table.loc[("graceful", 1.0), "trials"] == 2
    assert table.loc[("graceful", 1.0), "takeover_ms"] == pytest.approx(627.5)  # the median
    assert table.loc[("graceful", 1.0), "within_formula"]
    assert table.loc[("link-down", 1.0), "within_formula"] and table.loc[("link-down", 0.1), "within_formula"]
    assert not table.loc[("crash", 1.0), "within_formula"]  # far earlier than three missed adverts allow
    late = compare_with_formula(pd.DataFrame([trial("link-down", 4200.0)]))
    assert not late["within_formula"].iloc[0]
    never = compare_with_formula(pd.DataFrame([trial("link-down", None)]))
    assert never["takeover_ms"].isna().all() and not never["within_formula"].iloc[0]
    assert compare_with_formula(pd.DataFrame()).empty


def test_the_summary_gathers_sections_and_prints_the_headlines() -> None:
    outputs = [
        {"output_type": "stream", "text": "noise"},
        {"data": {SUMMARY_MIME: {"demo": {"vip": "172.21.6.33", "service": "demo/demo"}}, "text/plain": "x"}},
        {"data": {SUMMARY_MIME: {"metrics": {"master": "master-1", "adverts_per_s": 0.99}}}},
        {"data": {SUMMARY_MIME: {"traffic": {"requests": 200, "pods": [
            {"pod": "test-0", "requests": 104, "share": 0.52}, {"pod": "test-1", "share": 0.48}]}}}},
        {"data": {SUMMARY_MIME: {"failover": {"comparison": [
            {"kind": "link-down", "advert_int": 1.0, "vrrp_version": 2, "takeover_ms": 3368.0,
             "expected_min_takeover_ms": 2609.4, "expected_takeover_ms": 3609.4, "outage_ms": 3364.0,
             "within_formula": True},
            {"kind": "crash", "advert_int": 1.0, "vrrp_version": 2, "takeover_ms": None,
             "expected_min_takeover_ms": 2609.4, "expected_takeover_ms": 3609.4, "outage_ms": 0.0,
             "within_formula": False}]}}}},
        {"data": {"text/plain": "not a summary"}},
    ]  # fmt: skip
    summary = collect(outputs)
    assert list(summary) == ["demo", "metrics", "traffic", "failover"]
    lines = summary_lines(summary)
    assert lines[0] == "VIP            172.21.6.33 (service demo/demo)"
    assert lines[1] == "MASTER node    master-1 (advertising 0.99/s)"
    assert lines[2] == "traffic        200 requests: test-0 104 (52%), test-1 48%"
    assert lines[3] == (
        "failover       link-down advert_int 1 s v2: takeover 3368 ms (formula 2609 ms–3609 ms), clients lost 3364 ms"
    )
    assert lines[4].startswith("failover       crash ") and "takeover — " in lines[4]
    assert lines[4].endswith("⚠ outside the formula")
    assert summary_lines({}) == []


def test_a_carried_service_names_its_vip_group_and_timing() -> None:
    svc = {
        "metadata": {"name": "demo", "namespace": "demo", "annotations": {
            GROUP_ANNOTATION: "keepalived-operator/keepalivedgroup-workers",
            VERBATIM_ANNOTATION: '{"advert_int": "0.1", "version": "3"}'}},
        "spec": {"externalIPs": ["172.21.6.33"]},
        "status": {"loadBalancer": {"ingress": [{"ip": "172.21.6.33"}]}},
    }  # fmt: skip
    assert carried_service(svc) == CarriedService("172.21.6.33", "keepalived-operator", "keepalivedgroup-workers")
    group = {"spec": {"verbatimConfig": {"vrrp_version": "2"}}}
    assert vrrp_timing(svc, group) == (0.1, 3)
    del svc["metadata"]["annotations"][VERBATIM_ANNOTATION]
    assert vrrp_timing(svc, {"spec": {"verbatimConfig": {"vrrp_version": "3"}}}) == (1.0, 3)
    del svc["metadata"]["annotations"][GROUP_ANNOTATION]
    with pytest.raises(KalabError, match="Service demo/demo has no EXTERNAL-IP carried by keepalived yet"):
        carried_service(svc)
    with pytest.raises(KalabError, match="no EXTERNAL-IP carried"):
        carried_service({"metadata": {"name": "x", "annotations": {GROUP_ANNOTATION: "a/b"}}})

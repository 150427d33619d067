"""keepalived's dumps → keepalived_exporter 0.5.0 samples and exposition, pinned to dumps of the real keepalived."""

import json
from pathlib import Path
from typing import Any

import pytest

from kalab.model.errors import KalabError
from kalab.model.exporter import (
    COUNTERS,
    METRICS,
    InstanceState,
    Sample,
    down_samples,
    format_go_float,
    instances_from_json,
    render_exposition,
    samples_from_json,
    samples_from_text_dumps,
    vrrp_states,
)
from kalab.model.prometheus import parse_exposition, samples_from_exposition

DEMO = {"name": "demo/demo", "intf": "eth0", "vrid": "1", "state": "MASTER"}


def _read(fixtures: Path, name: str) -> str:
    return (fixtures / name).read_text()


def _value(samples: list[Sample], metric: str, **labels: str) -> float:
    [match] = [s for s in samples if s.name == metric and all(s.label(k) == v for k, v in labels.items())]
    return match.value


def _entry(iname: str, vrid: int, state: int, **stats: int) -> dict[str, dict[str, Any]]:
    counters = {m.stat: 0 for m in COUNTERS} | stats
    data = {
        "iname": iname, "ifp_ifname": "eth0", "vrid": vrid, "state": state, "last_transition": 1.5,
        "vips": [f"172.21.6.{49 + vrid} dev eth0 scope global"], "base_priority": 100,
        "effective_priority": 100, "adver_int": 1,
    }  # fmt: skip
    return {"data": data, "stats": counters}


def test_json_fixture_gives_the_exporters_samples(fixtures: Path) -> None:
    samples = samples_from_json(_read(fixtures, "keepalived.json"))
    assert samples[0] == Sample("keepalived_up", {}, 1)
    assert len(samples) == 1 + 14
    assert {s.label_dict.get("name") for s in samples[1:]} == {"demo/demo"}
    assert all(s.label_dict == DEMO for s in samples[1:])
    assert _value(samples, "keepalived_vrrp_advert_sent") == 2
    assert _value(samples, "keepalived_vrrp_become_master") == 1
    assert _value(samples, "keepalived_vrrp_advert_rcvd") == 0
    assert [s.name for s in samples[1:]] == [m.name for m in COUNTERS]


def test_text_dumps_give_the_same_samples_as_json(fixtures: Path) -> None:
    from_text = samples_from_text_dumps(_read(fixtures, "keepalived.data"), _read(fixtures, "keepalived.stats"))
    assert from_text == samples_from_json(_read(fixtures, "keepalived.json"))


def test_samples_are_hashable_and_label_order_does_not_matter() -> None:
    a = Sample("keepalived_vrrp_advert_sent", {"vrid": "1", "name": "x"}, 2)
    b = Sample("keepalived_vrrp_advert_sent", [("name", "x"), ("vrid", "1")], 2.0)
    assert a == b and hash(a) == hash(b)
    assert a.labels == (("name", "x"), ("vrid", "1"))


def test_instances_from_json_keeps_what_failover_analysis_needs(fixtures: Path) -> None:
    [inst] = instances_from_json(_read(fixtures, "keepalived.json"))
    assert (inst.iname, inst.ifp_ifname, inst.vrid, inst.state) == ("demo/demo", "eth0", 1, "MASTER")
    assert inst.last_transition == pytest.approx(1795725723.418638)
    assert inst.vips == ("172.21.6.50 dev eth0 scope global set",)
    assert inst.vip_addresses == ("172.21.6.50",)
    assert (inst.base_priority, inst.effective_priority, inst.adver_int) == (100, 100, 1.0)
    assert inst.stats["advert_sent"] == 2


def test_exposition_prints_bare_counter_names_with_help_and_type(fixtures: Path) -> None:
    text = render_exposition(samples_from_json(_read(fixtures, "keepalived.json")))
    assert "_total" not in text
    assert "# HELP keepalived_up Status\n# TYPE keepalived_up gauge\nkeepalived_up 1\n" in text
    assert "# TYPE keepalived_vrrp_advert_sent counter\n" in text
    assert 'keepalived_vrrp_advert_sent{intf="eth0",name="demo/demo",state="MASTER",vrid="1"} 2\n' in text
    for metric in METRICS:
        assert f"# HELP {metric.name} {metric.help}\n" in text
    families = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert families == sorted(families)  # Go's registry sorts families by name


def test_round_trip_through_parse_exposition_keeps_every_value(fixtures: Path) -> None:
    samples = samples_from_json(_read(fixtures, "keepalived.json"))
    frame = parse_exposition(render_exposition(samples))
    assert sorted(frame["metric"]) == sorted(s.name for s in samples)
    got = {(row.metric, row.state if row.metric != "keepalived_up" else ""): row.value for row in frame.itertuples()}
    assert got == {(s.name, s.label("state")): s.value for s in samples}
    assert set(samples_from_exposition(render_exposition(samples))) == set(samples)


def test_two_instances_master_and_backup() -> None:
    dump = json.dumps([_entry("demo/demo", 1, 2, advert_sent=7), _entry("demo/other", 2, 1, advert_rcvd=9)])
    samples = samples_from_json(dump)
    assert len(samples) == 1 + 2 * 14
    assert vrrp_states(samples) == [
        InstanceState("demo/demo", "eth0", 1, "MASTER"),
        InstanceState("demo/other", "eth0", 2, "BACKUP"),
    ]
    assert _value(samples, "keepalived_vrrp_advert_rcvd", name="demo/other", state="BACKUP") == 9
    text = render_exposition(samples)
    sent = [line for line in text.splitlines() if line.startswith("keepalived_vrrp_advert_sent{")]
    assert sent == [
        'keepalived_vrrp_advert_sent{intf="eth0",name="demo/demo",state="MASTER",vrid="1"} 7',
        'keepalived_vrrp_advert_sent{intf="eth0",name="demo/other",state="BACKUP",vrid="2"} 0',
    ]
    assert vrrp_states(samples_from_exposition(text)) == vrrp_states(samples)


def test_unknown_numeric_state_gets_an_empty_label_like_the_exporter() -> None:
    [inst] = instances_from_json(json.dumps([_entry("x", 3, 97)]))
    assert inst.state == ""
    assert {s.label("state") for s in samples_from_json(json.dumps([_entry("x", 3, 3)]))[1:]} == {"FAULT"}


def test_down_samples_say_only_that_keepalived_did_not_answer() -> None:
    assert (
        render_exposition(down_samples())
        == "# HELP keepalived_up Status\n# TYPE keepalived_up gauge\nkeepalived_up 0\n"
    )


def test_empty_dump_means_up_with_no_instances() -> None:
    assert samples_from_json("[]") == [Sample("keepalived_up", {}, 1)]


def test_label_values_and_help_are_escaped_like_go() -> None:
    text = render_exposition([Sample("keepalived_vrrp_advert_sent", {"name": 'a"b\\c\nd'}, 1)])
    assert 'name="a\\"b\\\\c\\nd"' in text
    [back] = samples_from_exposition(text)
    assert back.label("name") == 'a"b\\c\nd'


@pytest.mark.parametrize(
    ("value", "printed"),
    [
        (0.0, "0"),
        (2.0, "2"),
        (-3.5, "-3.5"),
        (100000.0, "100000"),
        (1e6, "1e+06"),
        (1234567.0, "1.234567e+06"),
        (0.0001, "0.0001"),
        (1e-05, "1e-05"),
        (0.1, "0.1"),
        (1795725723.418638, "1.795725723418638e+09"),
        (1.5e300, "1.5e+300"),
        (float("nan"), "NaN"),
        (float("inf"), "+Inf"),
        (float("-inf"), "-Inf"),
    ],
)
def test_values_are_formatted_like_gos_client(value: float, printed: str) -> None:
    assert format_go_float(value) == printed


@pytest.mark.parametrize(
    "dump",
    [
        "",
        "{not json",
        '{"data": {}}',
        "[1]",
        '[{"data": {"iname": "x"}}]',
        json.dumps([{"data": {**_entry("x", 1, 2)["data"], "vrid": "1"}, "stats": _entry("x", 1, 2)["stats"]}]),
        json.dumps([{"data": _entry("x", 1, 2)["data"], "stats": {"advert_sent": 1}}]),
        json.dumps([{"data": {**_entry("x", 1, 2)["data"], "state": True}, "stats": _entry("x", 1, 2)["stats"]}]),
    ],
)
def test_malformed_json_dump_is_one_sentence(dump: str) -> None:
    with pytest.raises(KalabError, match=r"^keepalived's JSON dump is malformed: .*; re-dump it with signal 36"):
        samples_from_json(dump)


def test_malformed_text_dumps_are_refused(fixtures: Path) -> None:
    data, stats = _read(fixtures, "keepalived.data"), _read(fixtures, "keepalived.stats")
    with pytest.raises(KalabError, match="different instances"):
        samples_from_text_dumps(data, stats.replace("demo/demo", "demo/other"))
    with pytest.raises(KalabError, match="Sent"):
        samples_from_text_dumps(data, stats.replace("Sent: 2", "Sent: two"))
    with pytest.raises(KalabError, match="no become_master"):
        samples_from_text_dumps(data, stats.replace("  Became master: 1\n", ""))
    with pytest.raises(KalabError, match="no Virtual Router ID"):
        samples_from_text_dumps(data.replace("   Virtual Router ID = 1\n", ""), stats)


def test_text_data_reads_only_the_topology_section(fixtures: Path) -> None:
    # "State = UP, RUNNING" and "Interface = eth0" also appear under Interfaces and Sockpool.
    data = _read(fixtures, "keepalived.data").replace("   State = MASTER", "   State = BACKUP")
    samples = samples_from_text_dumps(data, _read(fixtures, "keepalived.stats"))
    assert vrrp_states(samples) == [InstanceState("demo/demo", "eth0", 1, "BACKUP")]


def test_render_refuses_unknown_metrics_and_duplicates() -> None:
    with pytest.raises(KalabError, match="not a keepalived_exporter metric"):
        render_exposition([Sample("go_goroutines", {}, 1)])
    with pytest.raises(KalabError, match="same labels"):
        render_exposition([Sample("keepalived_up", {}, 1), Sample("keepalived_up", {}, 0)])

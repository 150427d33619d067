"""Prometheus text → tidy frames, with the metric names the exporter printed (no invented _total)."""

from datetime import UTC, datetime

import pandas as pd
import pytest

from kalab.model.errors import KalabError
from kalab.model.exporter import Sample, render_exposition
from kalab.model.prometheus import parse_exposition, samples_from_exposition, samples_to_frame

# What keepalived_exporter serves for two instances, written by hand in the Go client's layout.
GO_STYLE = """\
# HELP keepalived_up Status
# TYPE keepalived_up gauge
keepalived_up 1
# HELP keepalived_vrrp_advert_sent Advertisements sent
# TYPE keepalived_vrrp_advert_sent counter
keepalived_vrrp_advert_sent{intf="eth0",name="demo/demo",state="MASTER",vrid="1"} 1.234567e+06
keepalived_vrrp_advert_sent{intf="eth0",name="demo/other",state="BACKUP",vrid="2"} 0
# HELP keepalived_vrrp_become_master Became master
# TYPE keepalived_vrrp_become_master counter
keepalived_vrrp_become_master{intf="eth0",name="demo/demo",state="MASTER",vrid="1"} 1
keepalived_vrrp_become_master{intf="eth0",name="demo/other",state="BACKUP",vrid="2"} 0
"""


def test_parser_names_bare_counters_as_printed() -> None:
    frame = parse_exposition(GO_STYLE)
    assert list(frame.columns) == ["metric", "value", "intf", "name", "state", "vrid"]
    assert list(frame["metric"]) == [
        "keepalived_up",
        "keepalived_vrrp_advert_sent",
        "keepalived_vrrp_advert_sent",
        "keepalived_vrrp_become_master",
        "keepalived_vrrp_become_master",
    ]
    assert not frame["metric"].str.endswith("_total").any()
    sent = frame[frame["metric"] == "keepalived_vrrp_advert_sent"].set_index("name")["value"]
    assert sent["demo/demo"] == 1234567.0
    assert frame["value"].dtype == float


def test_counters_that_do_print_total_keep_it() -> None:
    text = '# TYPE http_requests_total counter\nhttp_requests_total{code="200"} 3\n'
    assert [s.name for s in samples_from_exposition(text)] == ["http_requests_total"]


def test_labels_missing_on_a_sample_are_missing_in_its_row() -> None:
    frame = parse_exposition(GO_STYLE)
    up = frame[frame["metric"] == "keepalived_up"].iloc[0]
    assert up["value"] == 1.0
    assert all(pd.isna(up[c]) for c in ("intf", "name", "state", "vrid"))


def test_extra_columns_are_constant_and_last() -> None:
    when = datetime(2021, 6, 9, 8, 52, tzinfo=UTC)
    frame = parse_exposition(GO_STYLE, node="master-1", scraped_at=when)
    assert list(frame.columns)[-2:] == ["node", "scraped_at"]
    assert set(frame["node"]) == {"master-1"}
    assert (frame["scraped_at"] == when).all()


def test_samples_to_frame_has_the_same_shape_as_a_scrape() -> None:
    samples = samples_from_exposition(GO_STYLE)
    from_scrape = parse_exposition(GO_STYLE, node="master-2")
    from_model = samples_to_frame(samples, node="master-2")
    pd.testing.assert_frame_equal(from_scrape, from_model)
    rendered = parse_exposition(render_exposition(samples), node="master-2")
    pd.testing.assert_frame_equal(
        rendered.sort_values(["metric", "name"], ignore_index=True),
        from_model.sort_values(["metric", "name"], ignore_index=True),
    )


def test_empty_exposition_gives_an_empty_frame_with_the_base_columns() -> None:
    frame = parse_exposition("", node="master-0")
    assert list(frame.columns) == ["metric", "value", "node"]
    assert frame.empty


def test_special_values_and_untyped_samples() -> None:
    frame = parse_exposition('a_metric NaN\nb_metric +Inf\n# TYPE c gauge\nc{x="1"} -2.5e-05\n')
    values = frame.set_index("metric")["value"]
    assert pd.isna(values["a_metric"])
    assert values["b_metric"] == float("inf")
    assert values["c"] == -2.5e-05


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("keepalived_up 1\nkeepalived_up abc\n", "keepalived_up abc"),
        ('keepalived_vrrp_advert_sent{name="x} 1\n', 'keepalived_vrrp_advert_sent{name="x} 1'),
        ("# TYPE ok gauge\nok 1\nnot-a-metric 1\n", "not-a-metric 1"),
    ],
)
def test_bad_text_names_the_offending_line(text: str, line: str) -> None:
    with pytest.raises(KalabError, match=r"^This is not Prometheus text exposition format") as err:
        parse_exposition(text)
    assert repr(line) in str(err.value)


def test_extra_column_may_not_shadow_a_label_or_base_column() -> None:
    with pytest.raises(KalabError, match="'name' clashes"):
        parse_exposition(GO_STYLE, name="x")
    with pytest.raises(KalabError, match="'value' clashes"):
        samples_to_frame([Sample("a", {}, 1)], value=2)
    with pytest.raises(KalabError, match="A label is called 'metric'"):
        samples_to_frame([Sample("a", {"metric": "m"}, 1)])

from typing import Any

import matplotlib
import pandas as pd
import pytest
from matplotlib.collections import PathCollection, PolyCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from kalab.model.cidr import size_rows
from kalab.model.exporter import COUNTERS, UP, Sample, render_exposition
from kalab.model.failover import trials_frame
from kalab.model.prometheus import parse_exposition
from kalab.model.vrrp import expected_outage
from kalab.ui.plots import (
    exporter_states,
    plot_cidr_sizes,
    plot_exporter_metrics,
    plot_failover_distribution,
    plot_failover_timeline,
    plot_traffic_spread,
)

matplotlib.use("Agg")

START = 100.0
INTERVAL = 0.005  # 200 Hz, as the probes run
INJECTED = 101.0


def failover_timeline() -> pd.DataFrame:
    """2 s before the injection alternating pod-a/pod-b, 0.6 s of failures from 101.1, then pod-a/pod-b again."""
    rows = []
    for i in range(800):
        t = START + i * INTERVAL
        failed = 101.1 <= t < 101.7 - 1e-9
        rows.append({"t": t, "ok": not failed, "backend": None if failed else ("pod-a", "pod-b")[i % 2]})
    return pd.DataFrame(rows)


def spread_timeline() -> pd.DataFrame:
    backends = ["pod-a"] * 30 + ["pod-b"] * 20 + ["pod-c"] * 10 + [None] * 5
    return pd.DataFrame(
        [{"t": START + i * INTERVAL, "ok": b is not None, "backend": b} for i, b in enumerate(backends)]
    )


def vip_events() -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"t": 99.0, "node": "master-0", "holds": True},
            {"t": 99.0, "node": "master-1", "holds": False},
            {"t": 101.0, "node": "master-0", "holds": False},
            {"t": 101.62, "node": "master-1", "holds": True},
        ]
    )


def legend_labels(ax: Any) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_traffic_spread_has_one_bar_per_pod_with_its_count() -> None:
    fig = plot_traffic_spread(spread_timeline())
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    bars = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert [b.get_height() for b in bars] == [30, 20, 10]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["pod-a", "pod-b", "pod-c"]
    assert "65 requests, 5 failed" in ax.get_title()


def test_failover_timeline_shades_the_outage_and_marks_the_expectation() -> None:
    expected = expected_outage("link-down", advert_int=1.0, priority=100)
    fig = plot_failover_timeline(failover_timeline(), INJECTED, expected)
    ax = fig.axes[0]
    labels = legend_labels(ax)
    assert labels[:3] == ["pod-a", "pod-b", "failed"]
    assert "outage 600 ms" in labels
    assert "expected takeover 3609 ms" in labels

    # One point series per pod plus the failures, with the right number of points each.
    points = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert [len(c.get_offsets()) for c in points] == [340, 340, 120]
    failed_x = points[2].get_offsets()[:, 0]
    assert failed_x.min() == pytest.approx(0.1) and failed_x.max() == pytest.approx(0.695)

    # The shaded outage runs from the first failed send to the first successful one, in seconds since injection.
    outage = next(p for p in ax.patches if p.get_label().startswith("outage"))
    xs = outage.get_path().transformed(outage.get_patch_transform()).vertices[:, 0]
    if isinstance(outage, Rectangle):  # axvspan draws a Rectangle on matplotlib ≥ 3.9, a Polygon before
        xs = [outage.get_x(), outage.get_x() + outage.get_width()]
    assert min(xs) == pytest.approx(0.1) and max(xs) == pytest.approx(0.7)

    takeover = next(line for line in ax.lines if line.get_label().startswith("expected takeover"))
    assert list(takeover.get_xdata()) == pytest.approx([expected.takeover_s] * 2)
    injected = next(line for line in ax.lines if line.get_linestyle() == "--" and len(line.get_xdata()) == 2)
    assert list(injected.get_xdata()) == [0.0, 0.0]


def test_failover_timeline_draws_vip_holder_bands_per_node() -> None:
    fig = plot_failover_timeline(failover_timeline(), INJECTED, None, vip_events())
    assert len(fig.axes) == 2
    holders = fig.axes[1]
    bands = {c.get_label(): c for c in holders.collections if isinstance(c, PolyCollection)}
    assert sorted(bands) == ["master-0", "master-1"]
    m0 = bands["master-0"].get_paths()[0].vertices[:, 0]
    assert (m0.min(), m0.max()) == pytest.approx((-2.0, 0.0))
    m1 = bands["master-1"].get_paths()[0].vertices[:, 0]
    assert m1.min() == pytest.approx(0.62)
    assert [t.get_text() for t in holders.get_yticklabels()] == ["master-0", "master-1"]


def trial(kind: str, n: int, outage: float, takeover: float | None) -> dict[str, Any]:
    e = expected_outage(kind)
    return {
        "kind": kind,
        "trial": n,
        "outage_ms": outage,
        "expected_ms": e.outage_ms,
        "expected_min_ms": e.earliest_outage_s * 1000,
        "takeover_ms": takeover,
        "expected_takeover_ms": e.takeover_ms,
        "expected_min_takeover_ms": e.earliest_takeover_s * 1000,
    }


def test_failover_distribution_has_one_point_per_trial_and_the_expected_lines() -> None:
    frame = trials_frame(
        [
            trial("graceful", 1, 5.0, 10.0),
            trial("graceful", 2, 10.0, 12.0),
            trial("link-down", 1, 3100.0, 3120.0),
            trial("link-down", 2, 3500.0, 3520.0),
            trial("link-down", 3, 2900.0, 2950.0),
        ]
    )
    fig = plot_failover_distribution(frame)
    outage_ax, takeover_ax = fig.axes
    assert [t.get_text() for t in outage_ax.get_xticklabels()] == ["graceful", "link-down"]
    points = [c for c in outage_ax.collections if isinstance(c, PathCollection)]
    assert [sorted(c.get_offsets()[:, 1]) for c in points] == [[5.0, 10.0], [2900.0, 3100.0, 3500.0]]
    expected_lines = [c for c in outage_ax.collections if c.get_label() == "expected"]
    assert len(expected_lines) == 1
    highs = [
        seg[0][1] for c in outage_ax.collections if type(c).__name__ == "LineCollection" for seg in c.get_segments()
    ]
    assert highs == pytest.approx([0.0, expected_outage("link-down").outage_ms])
    takeover_points = [c for c in takeover_ax.collections if isinstance(c, PathCollection)]
    assert sorted(takeover_points[1].get_offsets()[:, 1]) == [2950.0, 3120.0, 3520.0]


def scrape(node: str, at: float, state: str | None, sent: int, rcvd: int) -> pd.DataFrame:
    """One exporter scrape as the runbook gets it: render the exposition, parse it, tag node and time."""
    if state is None:
        samples = [Sample(UP, {}, 0)]
    else:
        labels = {"name": "demo_vip", "intf": "eth0", "vrid": "50", "state": state}
        values = {"keepalived_vrrp_advert_sent": sent, "keepalived_vrrp_advert_rcvd": rcvd}
        samples = [Sample(UP, {}, 1), *(Sample(m.name, labels, values.get(m.name, 0)) for m in COUNTERS)]
    return parse_exposition(render_exposition(samples), node=node, scraped_at=at)


def exporter_frames() -> list[pd.DataFrame]:
    frames = []
    for i in range(6):
        t = 1000.0 + 2 * i
        master0_alive = i < 3
        frames.append(scrape("master-0", t, "MASTER" if master0_alive else None, 2 * i, 0))
        frames.append(scrape("master-1", t, "BACKUP" if master0_alive else "MASTER", 0 if master0_alive else i, 2 * i))
        frames.append(scrape("master-2", t, "BACKUP", 0, 2 * i))
    return frames


def test_exporter_states_read_each_scrape() -> None:
    states = exporter_states(exporter_frames())
    at_4 = states[states["scraped_at"] == 1004.0].set_index("node")["state"].to_dict()
    at_6 = states[states["scraped_at"] == 1006.0].set_index("node")["state"].to_dict()
    assert at_4 == {"master-0": "MASTER", "master-1": "BACKUP", "master-2": "BACKUP"}
    assert at_6 == {"master-0": "DOWN", "master-1": "MASTER", "master-2": "BACKUP"}


def test_exporter_metrics_plot_one_state_line_per_node_and_advert_rates() -> None:
    fig = plot_exporter_metrics(exporter_frames())
    state_ax, counter_ax = fig.axes
    assert [line.get_label() for line in state_ax.lines] == ["master-0", "master-1", "master-2"]
    master1 = state_ax.lines[1]
    assert list(master1.get_xdata()) == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    assert [round(y) for y in master1.get_ydata()] == [3, 3, 3, 4, 4, 4]  # BACKUP then MASTER
    assert [round(y) for y in state_ax.lines[0].get_ydata()] == [4, 4, 4, 0, 0, 0]  # MASTER then DOWN
    labels = [line.get_label() for line in counter_ax.lines]
    assert "master-0 advert_sent" in labels and "master-2 advert_rcvd" in labels
    sent0 = next(line for line in counter_ax.lines if line.get_label() == "master-0 advert_sent")
    # The counter reads 0, 2, 4 at 0, 2, 4 s: one advert a second, drawn from the second scrape on.
    assert list(sent0.get_xdata()) == [2.0, 4.0] and list(sent0.get_ydata()) == [1.0, 1.0]
    assert counter_ax.get_ylabel() == "adverts per second"


def test_exporter_metrics_accept_timestamps_and_one_frame() -> None:
    frame = pd.concat(exporter_frames(), ignore_index=True)
    frame["scraped_at"] = pd.to_datetime(frame["scraped_at"], unit="s")
    fig = plot_exporter_metrics(frame)
    assert list(fig.axes[0].lines[2].get_xdata()) == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]


def test_cidr_sizes_has_a_bar_per_prefix() -> None:
    fig = plot_cidr_sizes(size_rows(), highlight=27)
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert heights == [256, 128, 64, 32, 16, 254, 126, 62, 30, 14]


def test_every_figure_renders_and_shows_itself_in_jupyter() -> None:
    """Drawing catches what building does not (layout, legends, empty spans): render each one to PNG.

    Without pyplot no inline backend registers a formatter for them, so each must offer `_repr_png_` itself,
    which IPython's display (and so nbconvert's HTML) uses.
    """
    from IPython.core.formatters import PNGFormatter

    from kalab.ui.live import figure_png

    expected = expected_outage("crash")
    figures = [
        plot_traffic_spread(spread_timeline()),
        plot_failover_timeline(failover_timeline(), INJECTED, expected, vip_events()),
        plot_failover_timeline(spread_timeline(), None),
        plot_failover_distribution(trials_frame([trial("crash", 1, 0.0, None)])),
        plot_exporter_metrics(exporter_frames()),
        plot_cidr_sizes(size_rows()),
    ]
    for fig in figures:
        assert figure_png(fig).startswith(b"\x89PNG")
        assert PNGFormatter()(fig).startswith(b"\x89PNG")

"""The runbook's plots; each returns a matplotlib Figure and draws nothing on screen by itself.

Figures are built with matplotlib.figure.Figure rather than pyplot, so no global figure is left behind for an
inline backend to show a second time and a long notebook does not accumulate open figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
from matplotlib.axes import Axes

from kalab.model.errors import KalabError
from kalab.model.failover import PROBE_COLUMNS, analyse_outage
from kalab.model.vrrp import Expectation
from kalab.ui.figure import Figure

FAILED_COLOUR = "#d62728"
OUTAGE_COLOUR = "#d62728"
EXPECTED_COLOUR = "#6a3d9a"
# Ordered so that the plot reads bottom-up from "not running" to "holds the VIP".
STATE_LEVELS: dict[str, int] = {"DOWN": 0, "FAULT": 1, "INIT": 2, "BACKUP": 3, "MASTER": 4}
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KalabError(f"The {what} lacks the column(s) {', '.join(missing)}; it needs {', '.join(columns)}.")


def _colours(names: Sequence[str]) -> dict[str, str]:
    """A fixed colour per name (sorted), so the same pod has the same colour in every plot of a notebook."""
    return {name: _PALETTE[i % len(_PALETTE)] for i, name in enumerate(sorted(names))}


def _answered(timeline: pd.DataFrame) -> pd.DataFrame:
    ok = timeline["ok"].astype(bool)
    return timeline[ok & timeline["backend"].notna()]


# --- traffic spread ------------------------------------------------------------------------------------


def plot_traffic_spread(timeline: pd.DataFrame, title: str = "Requests answered per pod") -> Figure:
    """One bar per backend with the number of requests it answered; failures are counted in the title."""
    _require(timeline, PROBE_COLUMNS, "probe timeline")
    answered = _answered(timeline)
    counts = answered["backend"].astype(str).value_counts().sort_index()
    failed = int((~timeline["ok"].astype(bool)).sum())
    fig = Figure(figsize=(6, 3.5), layout="constrained")
    ax = fig.add_subplot()
    colours = _colours(list(counts.index))
    bars = ax.bar(list(counts.index), counts.to_list(), color=[colours[b] for b in counts.index])
    ax.bar_label(bars, labels=[f"{n} ({n / max(len(timeline), 1):.0%})" for n in counts.to_list()])
    ax.set_ylabel("requests answered")
    ax.set_title(f"{title}\n{len(timeline)} requests, {failed} failed")
    ax.margins(y=0.15)
    return fig


# --- failover timeline ---------------------------------------------------------------------------------


def plot_failover_timeline(
    timeline: pd.DataFrame,
    injected_at: float | None,
    expected: Expectation | None = None,
    vip_events: pd.DataFrame | None = None,
    title: str = "Failover as the client saw it",
) -> Figure:
    """Requests over time (seconds since the injection), one row of points per answering pod, failures in red.

    The measured outage (kalab.model.failover.analyse_outage) is shaded; the expected takeover is a vertical
    line at `expected.takeover_s`, with a band back to `earliest_takeover_s` when the two differ. With
    `vip_events` (t, node, holds) a second panel shows which node held the VIP when.
    """
    _require(timeline, PROBE_COLUMNS, "probe timeline")
    ordered = timeline.sort_values("t", kind="stable")
    origin = float(injected_at) if injected_at is not None else float(ordered["t"].min())
    rows = 2 if vip_events is not None else 1
    fig = Figure(figsize=(9, 4 + (1.2 if rows == 2 else 0)), layout="constrained")
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False, height_ratios=[3, 1][:rows])
    ax: Axes = axes[0][0]

    answered = _answered(ordered)
    backends = sorted(answered["backend"].astype(str).unique())
    colours = _colours(backends)
    lanes = {name: i + 1 for i, name in enumerate(backends)}  # lane 0 is for failures
    for name in backends:
        times = answered.loc[answered["backend"].astype(str) == name, "t"].astype(float) - origin
        ax.scatter(times, [lanes[name]] * len(times), s=6, color=colours[name], label=name)
    failed = ordered[~ordered["ok"].astype(bool)]
    if not failed.empty:
        ax.scatter(failed["t"].astype(float) - origin, [0] * len(failed), s=6, color=FAILED_COLOUR, label="failed")
    ax.set_yticks([0, *lanes.values()], ["failed", *lanes])
    ax.set_ylim(-0.7, len(lanes) + 0.7)

    outage = analyse_outage(ordered, injected_at)
    if outage.start is not None and outage.end is not None:
        ax.axvspan(
            outage.start - origin,
            outage.end - origin,
            color=OUTAGE_COLOUR,
            alpha=0.15,
            label=f"outage {outage.outage_ms:.0f} ms" + ("" if outage.recovered else " (not recovered)"),
        )
    if injected_at is not None:
        for a in axes[:, 0]:
            a.axvline(0.0, color="black", linestyle="--", linewidth=1)
        ax.plot([], [], color="black", linestyle="--", linewidth=1, label=f"{_kind(expected)} injected")
    if expected is not None:
        _mark_expected(axes[:, 0], expected)
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", markerscale=2)

    if vip_events is not None:
        _plot_vip_holders(axes[1][0], vip_events, origin)
    axes[-1][0].set_xlabel("seconds since injection" if injected_at is not None else "seconds")
    return fig


def _kind(expected: Expectation | None) -> str:
    return str(expected.kind.value) if expected is not None else "failure"


def _mark_expected(axes: Any, expected: Expectation) -> None:
    for i, a in enumerate(axes):
        label = f"expected takeover {expected.takeover_s * 1000:.0f} ms" if i == 0 else None
        if expected.earliest_takeover_s < expected.takeover_s:
            a.axvspan(expected.earliest_takeover_s, expected.takeover_s, color=EXPECTED_COLOUR, alpha=0.08)
        a.axvline(expected.takeover_s, color=EXPECTED_COLOUR, linestyle=":", linewidth=1.5, label=label)


def _plot_vip_holders(ax: Axes, events: pd.DataFrame, origin: float) -> None:
    """A band per node while it held the VIP; a node keeps its last reported state until its next event."""
    _require(events, ("t", "node", "holds"), "VIP holder timeline")
    ordered = events.sort_values("t", kind="stable")
    nodes = sorted(ordered["node"].astype(str).unique())
    end = float(ordered["t"].max()) - origin
    xlim = ax.get_xlim()
    end = max(end, xlim[1])
    colours = _colours(nodes)
    for i, node in enumerate(nodes):
        mine = ordered[ordered["node"].astype(str) == node]
        spans = []
        start: float | None = None
        for t, holds in zip(mine["t"].astype(float) - origin, mine["holds"].astype(bool), strict=True):
            if holds and start is None:
                start = t
            elif not holds and start is not None:
                spans.append((start, t - start))
                start = None
        if start is not None:
            spans.append((start, end - start))
        ax.broken_barh(spans, (i - 0.35, 0.7), color=colours[node], label=node)
    ax.set_yticks(range(len(nodes)), nodes)
    ax.set_ylim(-0.6, len(nodes) - 0.4)
    ax.set_ylabel("holds VIP")


# --- failover distribution -----------------------------------------------------------------------------


def plot_failover_distribution(trials: pd.DataFrame, title: str = "Failover over trials") -> Figure:
    """Measured outage and takeover per failure kind (one point per trial), with the expected values marked.

    Takes kalab.model.failover.trials_frame rows (TrialResult fields): the expected maximum is a line, the range
    down to the expected minimum a band, so a measurement inside the band agrees with the VRRP formula.
    """
    _require(trials, ("kind", "outage_ms", "expected_ms"), "trials table")
    kinds = list(dict.fromkeys(trials["kind"].astype(str)))
    panels = [("outage_ms", "expected_ms", "expected_min_ms", "client outage (ms)")]
    if "takeover_ms" in trials.columns and trials["takeover_ms"].notna().any():
        panels.append(("takeover_ms", "expected_takeover_ms", "expected_min_takeover_ms", "backup takeover (ms)"))
    fig = Figure(figsize=(4 + 1.5 * len(kinds) * len(panels), 4), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (measured, high, low, label) in zip(axes, panels, strict=True):
        for x, kind in enumerate(kinds):
            rows = trials[trials["kind"].astype(str) == kind]
            values = rows[measured].dropna().astype(float)
            # Spread points sideways a little so equal measurements stay visible.
            jitter = [x + (i - (len(values) - 1) / 2) * 0.04 for i in range(len(values))]
            ax.scatter(jitter, values, color=_PALETTE[x % len(_PALETTE)], zorder=3, label=f"{kind} measured")
            if high in rows.columns and rows[high].notna().any():
                hi = float(rows[high].dropna().iloc[0])
                lo = float(rows[low].dropna().iloc[0]) if low in rows.columns and rows[low].notna().any() else hi
                if lo < hi:
                    ax.fill_between([x - 0.3, x + 0.3], lo, hi, color=EXPECTED_COLOUR, alpha=0.12)
                ax.hlines(
                    hi, x - 0.3, x + 0.3, color=EXPECTED_COLOUR, linestyle=":", label="expected" if x == 0 else None
                )
        ax.set_xticks(range(len(kinds)), kinds)
        ax.set_xlim(-0.6, len(kinds) - 0.4)
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
    axes[0].legend(fontsize="small")
    fig.suptitle(title)
    return fig


# --- exporter metrics ----------------------------------------------------------------------------------


def exporter_states(frames: pd.DataFrame | Sequence[pd.DataFrame], instance: str | None = None) -> pd.DataFrame:
    """One row per (scraped_at, node): the VRRP state that scrape reported, "DOWN" when keepalived_up was 0.

    With several VRRP instances per node, `instance` picks one by name; otherwise the first by name is used.
    """
    frame = _concat(frames)
    _require(frame, ("metric", "value", "node", "scraped_at"), "exporter scrapes")
    vrrp = frame[frame["metric"].astype(str).str.startswith("keepalived_vrrp_")]
    if "state" not in frame.columns or vrrp.empty:
        vrrp = frame.iloc[0:0].assign(state=pd.Series(dtype=str), name=pd.Series(dtype=str))
    if instance is not None:
        vrrp = vrrp[vrrp["name"] == instance]
    chosen = vrrp.sort_values(["name"], kind="stable").groupby(["scraped_at", "node"], sort=False)["state"].first()
    rows: list[dict[str, Any]] = [
        {"scraped_at": key[0], "node": key[1], "state": s}  # type: ignore[index]
        for key, s in chosen.items()
    ]
    up = frame[frame["metric"] == "keepalived_up"]
    seen = {(r["scraped_at"], r["node"]) for r in rows}
    rows += [
        {"scraped_at": t, "node": n, "state": "DOWN"}
        for t, n, v in up[["scraped_at", "node", "value"]].itertuples(index=False, name=None)
        if float(v) == 0 and (t, n) not in seen
    ]
    return pd.DataFrame(rows, columns=["scraped_at", "node", "state"]).sort_values(["scraped_at", "node"])


def _concat(frames: pd.DataFrame | Sequence[pd.DataFrame]) -> pd.DataFrame:
    if isinstance(frames, pd.DataFrame):
        return frames
    if not frames:
        raise KalabError("There are no exporter scrapes to plot; scrape the exporter at least once.")
    return pd.concat(list(frames), ignore_index=True)


def _seconds(values: pd.Series[Any], origin: Any) -> list[float]:
    """Scrape times as seconds since the first scrape, whether they are epoch floats or timestamps."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return [float(d.total_seconds()) for d in (values - origin)]
    return [float(v) - float(origin) for v in values]


def plot_exporter_metrics(
    frames: pd.DataFrame | Sequence[pd.DataFrame],
    instance: str | None = None,
    counters: Sequence[str] = ("keepalived_vrrp_advert_sent", "keepalived_vrrp_advert_rcvd"),
    title: str = "keepalived_exporter over time",
) -> Figure:
    """VRRP state per node as steps (top) and adverts sent/received per second per node (bottom), over time.

    `frames` are parse_exposition frames with `node` and `scraped_at` columns (one per scrape, or already
    concatenated). Each node's state line is nudged vertically so that nodes in the same state stay distinct.
    """
    frame = _concat(frames)
    states = exporter_states(frame, instance)
    origin = frame["scraped_at"].min()
    nodes = sorted(frame["node"].astype(str).unique())
    colours = _colours(nodes)
    fig = Figure(figsize=(9, 6), layout="constrained")
    state_ax, counter_ax = fig.subplots(2, 1, sharex=True)
    for i, node in enumerate(nodes):
        mine = states[states["node"].astype(str) == node]
        nudge = (i - (len(nodes) - 1) / 2) * 0.06
        levels = [STATE_LEVELS.get(str(s), STATE_LEVELS["INIT"]) + nudge for s in mine["state"]]
        state_ax.step(_seconds(mine["scraped_at"], origin), levels, where="post", color=colours[node], label=node)
    state_ax.set_yticks(list(STATE_LEVELS.values()), list(STATE_LEVELS))
    state_ax.set_ylim(-0.5, max(STATE_LEVELS.values()) + 0.5)
    state_ax.set_ylabel("VRRP state")
    state_ax.set_title(title)
    state_ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")

    styles = ("-", "--", ":", "-.")
    vrrp = frame[frame["metric"].isin(list(counters))]
    if instance is not None and "name" in vrrp.columns:
        vrrp = vrrp[vrrp["name"] == instance]
    for j, metric in enumerate(counters):
        for node in nodes:
            mine = vrrp[(vrrp["metric"] == metric) & (vrrp["node"].astype(str) == node)]
            # Sum over instances: with one instance per node (the usual case) this is just its counter.
            series = mine.groupby("scraped_at")["value"].sum().sort_index()
            if len(series) < 2:
                continue
            # The counters only ever grow (to about a thousand after a quarter of an hour), so their slope is what
            # shows anything: adverts per second between consecutive scrapes, drawn at the later one.
            seconds = _seconds(pd.Series(series.index), origin)
            values = [float(v) for v in series]
            pairs = zip(values[:-1], values[1:], seconds[:-1], seconds[1:], strict=True)
            rates = [(b - a) / (t1 - t0) if t1 > t0 else 0.0 for a, b, t0, t1 in pairs]
            counter_ax.plot(
                seconds[1:],
                rates,
                color=colours[node],
                linestyle=styles[j % len(styles)],
                marker=".",
                label=f"{node} {metric.removeprefix('keepalived_vrrp_')}",
            )
    counter_ax.set_ylabel("adverts per second")
    counter_ax.set_ylim(bottom=0)
    counter_ax.set_xlabel("seconds since first scrape")
    if counter_ax.lines:
        counter_ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    return fig


# --- CIDR sizes ----------------------------------------------------------------------------------------


def plot_cidr_sizes(rows: Sequence[dict[str, int]], highlight: int | None = None) -> Figure:
    """The prefix → addresses table (kalab.model.cidr.size_rows) as bars, usable addresses inside each bar."""
    if not rows:
        raise KalabError("There are no prefix lengths to plot; pass kalab.model.cidr.size_rows().")
    labels = [f"/{r['prefix']}" for r in rows]
    fig = Figure(figsize=(6, 3.5), layout="constrained")
    ax = fig.add_subplot()
    colours = [EXPECTED_COLOUR if r["prefix"] == highlight else "#4c72b0" for r in rows]
    bars = ax.bar(labels, [r["addresses"] for r in rows], color=colours, alpha=0.35, label="addresses")
    ax.bar(labels, [r["usable"] for r in rows], color=colours, width=0.5, label="usable")
    ax.bar_label(bars, labels=[f"{r['addresses']} ({r['usable']} usable)" for r in rows], fontsize="small")
    ax.set_ylabel("addresses")
    ax.set_xlabel("prefix length")
    ax.margins(y=0.15)
    ax.legend()
    return fig

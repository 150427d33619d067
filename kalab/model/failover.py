"""From a probe timeline to what a client lived through during a failover.

A timeline is one row per request: `t` (send time, seconds), `ok` (bool), `backend` (who answered, or None),
optionally `node`. A VRRP state timeline (`t`, `node`, `state`) tells who held the VIP when.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from kalab.model.errors import KalabError

PROBE_COLUMNS = ("t", "ok", "backend")
STATE_COLUMNS = ("t", "node", "state")


@dataclass(frozen=True)
class Outage:
    """The client's view of one failover; times are on the timeline's clock, durations in ms."""

    injected_at: float | None
    start: float | None  # send time of the first failed request
    end: float | None  # send time of the first successful request after the failures
    outage_ms: float
    lost: int  # failed requests in the longest run of failures
    failed_total: int  # every failed request after the injection
    requests: int
    recovered: bool
    backends_before: tuple[str, ...]
    backends_after: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_columns(frame: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KalabError(f"The {what} lacks the column(s) {', '.join(missing)}; record {', '.join(columns)}.")


def _backends(frame: pd.DataFrame) -> tuple[str, ...]:
    answered = frame.loc[frame["ok"].astype(bool), "backend"].dropna()
    return tuple(sorted({str(b) for b in answered}))


def analyse_outage(probes: pd.DataFrame, injected_at: float | None = None) -> Outage:
    """Find the longest run of failed requests at or after `injected_at` and measure it.

    The outage runs from the first failed send to the next successful send, so its resolution is the probe
    interval; a run still failing at the end of the timeline is reported with `recovered=False`.
    """
    _check_columns(probes, PROBE_COLUMNS, "probe timeline")
    ordered = probes.sort_values("t", kind="stable").reset_index(drop=True)
    window = ordered if injected_at is None else ordered[ordered["t"] >= injected_at].reset_index(drop=True)
    before = ordered if injected_at is None else ordered[ordered["t"] < injected_at]
    ok = window["ok"].astype(bool).tolist()
    times = window["t"].astype(float).tolist()

    best: tuple[int, int] | None = None  # [first failure, first success after) of the longest run
    i = 0
    while i < len(ok):
        if ok[i]:
            i += 1
            continue
        j = i
        while j < len(ok) and not ok[j]:
            j += 1
        if best is None or j - i > best[1] - best[0]:
            best = (i, j)
        i = j

    if best is None:
        return Outage(injected_at, None, None, 0.0, 0, 0, len(window), True, _backends(before), _backends(window))
    first, after = best
    recovered = after < len(times)
    end = times[after] if recovered else times[-1]
    return Outage(
        injected_at=injected_at,
        start=times[first],
        end=end,
        outage_ms=(end - times[first]) * 1000.0,
        lost=after - first,
        failed_total=ok.count(False),
        requests=len(window),
        recovered=recovered,
        backends_before=_backends(before),
        backends_after=_backends(window.iloc[after:]) if recovered else (),
    )


def masters_at(states: pd.DataFrame, t: float) -> list[str]:
    """Nodes whose latest known VRRP state at time `t` is MASTER."""
    _check_columns(states, STATE_COLUMNS, "VRRP state timeline")
    known = states[states["t"] <= t].sort_values("t", kind="stable").groupby("node")["state"].last()
    return sorted(str(node) for node, state in known.items() if state == "MASTER")


def new_master(states: pd.DataFrame, old_master: str | None, injected_at: float) -> tuple[str | None, float | None]:
    """The first node other than `old_master` to become MASTER after the injection, and when."""
    _check_columns(states, STATE_COLUMNS, "VRRP state timeline")
    later = states[(states["t"] >= injected_at) & (states["state"] == "MASTER") & (states["node"] != old_master)]
    if later.empty:
        return None, None
    row = later.sort_values("t", kind="stable").iloc[0]
    return str(row["node"]), float(row["t"])


def duplicate_vip_ms(holders: pd.DataFrame, start: float | None = None, end: float | None = None) -> float:
    """How long two or more nodes held the VIP at once, in ms, within [start, end].

    Rows (`t`, `node`, `holds`) are changes: a node keeps its last reported state until its next row, so both
    address events and periodic samples of every node work. `end` defaults to the last row's time.
    """
    _check_columns(holders, ("t", "node", "holds"), "VIP holder timeline")
    if holders.empty:
        return 0.0
    rows = holders.sort_values("t", kind="stable")
    times = rows["t"].astype(float).tolist()
    lo = times[0] if start is None else start
    hi = times[-1] if end is None else end
    state: dict[str, bool] = {}
    total = 0.0
    for (t, node, holds), t_next in zip(
        rows[["t", "node", "holds"]].itertuples(index=False, name=None), [*times[1:], hi], strict=True
    ):
        state[str(node)] = bool(holds)
        if sum(state.values()) >= 2:
            total += max(0.0, min(t_next, hi) - max(float(t), lo))
    return total * 1000.0


def trials_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Failover trials as a table, one row per trial, with measured/expected ratio where it means something."""
    frame = pd.DataFrame(list(rows))
    if not frame.empty and {"outage_ms", "expected_ms"} <= set(frame.columns):
        expected = frame["expected_ms"].where(frame["expected_ms"] > 0)
        frame["ratio"] = frame["outage_ms"] / expected
    return frame


TAKEOVER_SLACK_MS = 500.0  # beyond the formula: gratuitous ARPs and, through the API, one exporter scrape round


def compare_with_formula(trials: pd.DataFrame, slack_ms: float = TAKEOVER_SLACK_MS) -> pd.DataFrame:
    """Per kind and VRRP timing: median measured takeover against the formula's window, and whether it fits.

    A takeover fits when it lies between 80 % of the earliest the formula allows (timers start between adverts)
    and the latest plus `slack_ms` (gratuitous ARPs and, through the API, one exporter scrape round).
    """
    columns = ["kind", "advert_int", "vrrp_version", "trials", "takeover_ms", "expected_takeover_ms",
               "expected_min_takeover_ms", "outage_ms", "expected_ms", "within_formula"]  # fmt: skip
    if trials.empty:
        return pd.DataFrame(columns=columns)
    grouped = trials.groupby(["kind", "advert_int", "vrrp_version"], sort=False)
    rows = []
    for (kind, advert_int, version), group in grouped:
        takeover = group["takeover_ms"].dropna()
        median = float(takeover.median()) if len(takeover) else None
        latest = float(group["expected_takeover_ms"].iloc[0])
        earliest = float(group["expected_min_takeover_ms"].iloc[0])
        rows.append(
            {
                "kind": kind,
                "advert_int": advert_int,
                "vrrp_version": version,
                "trials": len(group),
                "takeover_ms": median,
                "expected_takeover_ms": latest,
                "expected_min_takeover_ms": earliest,
                "outage_ms": float(group["outage_ms"].median()),
                "expected_ms": float(group["expected_ms"].iloc[0]),
                "within_formula": median is not None and 0.8 * earliest <= median <= latest + slack_ms,
            }
        )
    return pd.DataFrame(rows, columns=columns)


def comparison_view(comparison: pd.DataFrame) -> pd.DataFrame:
    """compare_with_formula's result narrowed to what a reader compares, in whole ms, to fit a notebook page.

    `window_ms` is the takeover the formula allows (earliest … latest); `fits` says whether the measured median
    lies in it, with TAKEOVER_SLACK_MS allowed beyond its end.
    """
    earliest, latest = comparison["expected_min_takeover_ms"], comparison["expected_takeover_ms"]
    view = pd.DataFrame(
        {
            "kind": comparison["kind"],
            "advert_int": comparison["advert_int"],
            "trials": comparison["trials"],
            "takeover_ms": comparison["takeover_ms"].round(0),
            "window_ms": [f"{lo:.0f} … {hi:.0f}" for lo, hi in zip(earliest, latest, strict=True)],
            "outage_ms": comparison["outage_ms"].round(0),
            "fits": comparison["within_formula"],
        }
    )
    return view

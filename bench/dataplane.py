"""Data-plane benchmark: lab build/teardown, probe rate, and measured vs expected failover (JSON + a summary).

    sudo .venv/bin/python bench/dataplane.py [--trials 5] [--out bench/results/dataplane.json]

Every figure comes from the real data plane on this machine; nothing here asserts, it measures.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from kalab.cluster import failover
from kalab.cluster.probejob import probe_timeline
from kalab.lab import scenario
from kalab.lab.dataplane.topology import TopologySpec, measure_build_teardown
from kalab.model.vrrp import expected_outage

PREFIX = "kalab-bench-"


def stats(values: list[float]) -> dict[str, float]:
    return {
        "mean": round(statistics.fmean(values), 3),
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def topology_timing(rounds: int) -> dict[str, Any]:
    return measure_build_teardown(TopologySpec.seed(PREFIX), rounds=rounds)


def probe_rate(rate: float, seconds: float) -> dict[str, Any]:
    with scenario.start(scenario.ScenarioSpec(prefix=PREFIX)) as scn:
        frame = probe_timeline(scn.url, seconds, rate, 1.0, place=scn.clients)
    return dict(frame.attrs["summary"])


def failover_series(kind: str, advert_int: float, version: int, trials: int) -> dict[str, Any]:
    spec = scenario.ScenarioSpec(prefix=PREFIX, advert_int=advert_int, vrrp_version=version)
    exp = expected_outage(kind, advert_int, version=version)
    with scenario.start(spec) as scn:
        experiment = failover.run_experiment(scn, kind, trials)
    outages = [r.outage_ms for r in experiment.results]
    takeovers = [r.takeover_ms or 0.0 for r in experiment.results]
    series: dict[str, Any] = {
        "kind": kind,
        "advert_int": advert_int,
        "vrrp_version": version,
        "trials": trials,
        "outage_ms": stats(outages),
        "takeover_ms": stats(takeovers),
        "expected_outage_ms": round(exp.outage_ms, 1),
        "expected_takeover_ms": round(exp.takeover_ms, 1),
        # A failure strikes at a random point between adverts, so the mean expected hard failover is half an
        # advert interval shorter than the formula's Master_Down_Interval.
        "expected_mean_takeover_ms": round((exp.takeover_s + exp.earliest_takeover_s) / 2 * 1000, 1),
        "takeover_ratio_to_formula": round(statistics.fmean(takeovers) / exp.takeover_ms, 3),
        "duplicate_vip_ms": stats([r.duplicate_vip_ms for r in experiment.results]),
        "results": [r.to_dict() for r in experiment.results],
    }
    if exp.outage_ms > 0:
        series["outage_ratio_to_formula"] = round(statistics.fmean(outages) / exp.outage_ms, 3)
        series["outage_ratio_to_mean"] = round(statistics.fmean(outages) / series["expected_mean_takeover_ms"], 3)
    return series


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=10, help="topology build/teardown rounds")
    parser.add_argument("--out", default="bench/results/dataplane.json")
    args = parser.parse_args()
    started = time.time()
    report: dict[str, Any] = {"machine": {"python": sys.version.split()[0], "kernel": platform.release()}}
    report["topology"] = topology_timing(args.rounds)
    print(f"topology build/teardown: {report['topology']}", flush=True)
    report["probe_200hz"] = probe_rate(200.0, 5.0)
    print(f"probe at 200 Hz: {report['probe_200hz']}", flush=True)
    report["failover"] = []
    for kind, advert, version in (
        ("link-down", 1.0, 2),
        ("link-down", 0.1, 3),
        ("graceful", 1.0, 2),
        ("crash", 1.0, 2),
    ):
        series = failover_series(kind, advert, version, args.trials)
        report["failover"].append(series)
        print(
            f"{kind:9} advert {advert:g}s v{version}: outage {series['outage_ms']['mean']:.0f} ms "
            f"(formula {series['expected_outage_ms']:.0f}, ratio {series.get('outage_ratio_to_formula', '–')}), "
            f"takeover {series['takeover_ms']['mean']:.0f} ms (formula {series['expected_takeover_ms']:.0f}, "
            f"ratio {series['takeover_ratio_to_formula']}), two holders {series['duplicate_vip_ms']['mean']:.0f} ms",
            flush=True,
        )
    report["seconds"] = round(time.time() - started, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out} in {report['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

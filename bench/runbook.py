"""Runbook benchmark: the whole runbook headless on a fresh lab, `rounds` times; per-notebook time and the summary.

.venv/bin/python bench/runbook.py [--rounds 3] [--out bench/results/runbook.json]

Each round is `kalab run --lab --name bench-runbook` (what `make demo` does): a fresh lab, notebooks 00–06, the lab
taken down. It reports how long each notebook took and what notebook 05 measured, against VRRP's formulas, round by
round. The lab lives under a temporary $KALAB_HOME, so no real lab is seen or touched.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

NAME = "bench-runbook"


def one_round(work: Path, number: int) -> dict[str, Any]:
    out = work / f"round{number}"
    argv = [sys.executable, "-m", "kalab", "run", "--lab", "--name", NAME, "--out", str(out)]
    env = {**os.environ, "KALAB_HOME": str(work / "labs")}  # `kalab run --lab` takes its lab down even on failure
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=1800, env=env)
    if done.returncode != 0:
        raise SystemExit(f"round {number} failed: {done.stderr.strip().splitlines()[-1:]}")
    runs = json.loads((out / "run.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    return {
        "total_s": time.perf_counter() - started,
        "notebooks_s": {r["notebook"].removesuffix(".ipynb"): r["seconds"] for r in runs},
        "failover": summary["failover"]["comparison"],
        "traffic": summary["traffic"]["pods"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="bench/results/runbook.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kalab-bench-runbook-") as tmp:
        rounds = [one_round(Path(tmp), n) for n in range(1, args.rounds + 1)]
    print(f"runbook on a fresh lab, {args.rounds} rounds (median, min–max):")
    columns = {"total (lab up, 00–06, lab down)": [r["total_s"] for r in rounds]}
    columns.update({name: [r["notebooks_s"][name] for r in rounds] for name in rounds[0]["notebooks_s"]})
    for name, times in columns.items():
        print(f"  {name:<32} {statistics.median(times):6.1f} s  ({min(times):.1f}–{max(times):.1f})")
    print("failover takeover measured by notebook 05 (each round), against the formula:")
    for i, row in enumerate(rounds[0]["failover"]):
        takeovers = ", ".join(f"{r['failover'][i]['takeover_ms']:.0f}" for r in rounds)
        fits = sum(bool(r["failover"][i]["within_formula"]) for r in rounds)
        label = f"{row['kind']} @{row['advert_int']:g}s v{row['vrrp_version']}"
        window = f"{row['expected_min_takeover_ms']:.0f}–{row['expected_takeover_ms']:.0f} ms"
        print(f"  {label:<24} {takeovers} ms  (formula {window}; {fits}/{len(rounds)} within)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rounds": rounds}, indent=2) + "\n")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

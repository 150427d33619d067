"""`kalab lab reset` benchmark: from a fresh lab to `deployed` (the state after notebook 03), then back to `fresh`.

.venv/bin/python bench/reset.py [--rounds 5] [--out bench/results/reset.json]

Each round runs the real command (`python -m kalab lab reset --to …`) on one lab named bench-reset, under a fresh
temporary $KALAB_HOME, so no real lab is seen or touched. `deployed` means a node holds the demo's VIP.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kalab.lab import control

NAME = "bench-reset"


def timed_reset(stage: str) -> tuple[float, dict[str, object]]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "kalab", "lab", "reset", "--name", NAME, "--to", stage, "--json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"kalab lab reset --to {stage} failed: {done.stderr.strip()}")
    said: dict[str, object] = json.loads(done.stdout)
    return seconds, said


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default="bench/results/reset.json")
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="kalab-bench-reset-")
    os.environ["KALAB_HOME"] = home  # read by `control` here and by the `kalab` subprocesses
    rounds = []
    try:
        control.up(NAME)
        for _ in range(args.rounds):
            up, said = timed_reset("deployed")
            down, _ = timed_reset("fresh")
            rounds.append({"fresh_to_deployed_s": up, "deployed_to_fresh_s": down, "holder": said["holder"]})
            print(f"fresh → deployed {up:.1f} s (VIP {said['vip']} on {said['holder']}), deployed → fresh {down:.1f} s")
    finally:
        control.down(NAME)
        shutil.rmtree(home, ignore_errors=True)
    report: dict[str, object] = {
        key: {
            "median": round(statistics.median(float(r[key]) for r in rounds), 2),
            "min": round(min(float(r[key]) for r in rounds), 2),
            "max": round(max(float(r[key]) for r in rounds), 2),
        }
        for key in ("fresh_to_deployed_s", "deployed_to_fresh_s")
    }
    report["rounds"] = args.rounds
    print(json.dumps(report, indent=2))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

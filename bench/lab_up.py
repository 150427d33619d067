"""Lab start-up benchmark: `kalab lab up` until the API serves and every node is Ready, then `down` (JSON out).

.venv/bin/python bench/lab_up.py [--rounds 5] [--out bench/results/lab_up.json]

The lab is named bench-up and lives under a fresh temporary $KALAB_HOME, so no real lab is seen or touched.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from kubernetes import client, config

from kalab.lab import control

NAME = "bench-up"


def nodes_ready(kubeconfig: Path) -> bool:
    api = client.CoreV1Api(config.new_client_from_config(str(kubeconfig)))
    nodes = api.list_node().items
    return len(nodes) == 3 and all(
        any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or []) for n in nodes
    )


def one_round() -> dict[str, float]:
    started = time.perf_counter()
    info = control.up(NAME)
    served = time.perf_counter()
    assert info.kubeconfig is not None
    while not nodes_ready(info.kubeconfig):  # `up` returns when it serves; the nodes are Ready from the start
        time.sleep(0.01)
    ready = time.perf_counter()
    control.down(NAME)
    return {"up_s": served - started, "ready_s": ready - started, "down_s": time.perf_counter() - ready}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default="bench/results/lab_up.json")
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="kalab-bench-up-")
    os.environ["KALAB_HOME"] = home  # read by `control` at each call
    try:
        rounds = [one_round() for _ in range(args.rounds)]
    finally:
        control.down(NAME)  # a no-op unless a round failed half-way
        shutil.rmtree(home, ignore_errors=True)
    report = {
        key: {
            "median": round(statistics.median(r[key] for r in rounds), 3),
            "max": round(max(r[key] for r in rounds), 3),
        }
        for key in ("up_s", "ready_s", "down_s")
    }
    report["rounds"] = args.rounds
    print(json.dumps(report, indent=2))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

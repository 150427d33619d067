"""Browser benchmark: each notebook's Run All in JupyterLab (Chromium) against the same notebook headless, one lab.

.venv/bin/python -m bench.browser [--out bench/results/browser.json]   (from the repository root)

One embedded lab serves three passes in a row: headless on the fresh lab (`kalab run`, which sets the lab up as an
attendee's first run does), then in the browser (JupyterLab served as `make lab` serves it, each notebook opened and
Run All clicked, as the browser tests do), then headless again. The browser pass and the second headless pass find
the lab in the same state, so their difference is what the browser costs. Browser time is split into opening the
notebook (page and kernel start) and Run All (click to the last output drawn). The lab lives under a temporary
$KALAB_HOME, so no real lab is seen or touched.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.browser.chromium import chromium
from tests.browser.jupyterlab import served_lab
from tests.browser.notebook_page import NotebookPage

ROOT = Path(__file__).resolve().parents[1]

NAME = "bench-browser"


def headless(out: Path) -> dict[str, float]:
    """`kalab run` on the lab NAME (attached by name, as the notebooks in JupyterLab are): seconds per notebook."""
    argv = [sys.executable, "-m", "kalab", "run", "--out", str(out), "-p", f"lab_name={NAME}"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"kalab run failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")
    runs = json.loads((out / "run.json").read_text())
    return {r["notebook"]: float(r["seconds"]) for r in runs}


def in_browser(page: NotebookPage, notebooks: list[str]) -> dict[str, dict[str, float]]:
    times: dict[str, dict[str, float]] = {}
    for notebook in notebooks:
        started = time.perf_counter()
        page.open(notebook)
        opened = time.perf_counter()
        shown = page.run_all()
        finished = time.perf_counter()
        page.server.shut_down_kernel(notebook)
        if shown.tracebacks or not all(c.executed for c in shown.cells):
            raise SystemExit(f"{notebook} failed in the browser; run tests/browser to see why")
        times[notebook] = {"open_s": opened - started, "run_all_s": finished - opened, "total_s": finished - started}
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results/browser.json")
    args = parser.parse_args()
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    notebooks = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    with tempfile.TemporaryDirectory(prefix="kalab-bench-browser-") as tmp:
        work = Path(tmp)
        os.environ["KALAB_HOME"] = str(work / "labs")  # JupyterLab, its kernels and `kalab run` all inherit it
        try:
            started = time.perf_counter()
            with served_lab(work / "jupyterlab", NAME) as server:
                served_s = time.perf_counter() - started
                first = headless(work / "headless-first")
                with chromium(work / "chromium-profile") as context:
                    browser = in_browser(NotebookPage(context.new_page(), server), notebooks)
                again = headless(work / "headless-again")
        finally:
            subprocess.run([sys.executable, "-m", "kalab", "lab", "down", "--name", NAME], capture_output=True)
    result: dict[str, Any] = {
        "jupyterlab_and_lab_up_s": served_s,
        "notebooks": {
            n: {"headless_fresh_s": first[n], "browser": browser[n], "headless_s": again[n]} for n in notebooks
        },
    }
    print(f"JupyterLab served (make serve-lab, with `kalab lab up`): {served_s:.1f} s")
    print("per notebook, seconds: headless on the fresh lab | browser open + Run All = total | headless again")
    for n in notebooks:
        b = browser[n]
        print(
            f"  {n.removesuffix('.ipynb'):<26} {first[n]:6.1f} | {b['open_s']:5.1f} + {b['run_all_s']:6.1f} = "
            f"{b['total_s']:6.1f} | {again[n]:6.1f}"
        )
    totals = {
        "headless_fresh_s": sum(first.values()),
        "browser_s": sum(b["total_s"] for b in browser.values()),
        "headless_s": sum(again.values()),
    }
    result["totals"] = totals
    print(
        f"  {'all':<26} {totals['headless_fresh_s']:6.1f} | {'':>15}{totals['browser_s']:6.1f} | "
        f"{totals['headless_s']:6.1f}   (browser/headless {totals['browser_s'] / totals['headless_s']:.2f}x)"
    )
    tmp_out = out_path.with_suffix(".tmp")
    tmp_out.write_text(json.dumps(result, indent=2) + "\n")
    tmp_out.replace(out_path)
    print(f"written to {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

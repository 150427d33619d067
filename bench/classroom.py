"""What each attendee of a class costs: a real JupyterHub, N throwaway users, each running notebooks 00–03 at once.

Run as root (it creates and removes the users), from the repository root: `python -m bench.classroom
[--attendees 3]`. For every attendee it sums the memory (RSS, PSS) of their Jupyter server, their kernels (one per
notebook, left open as JupyterLab leaves them) and their lab (every process of the lab's namespace tree), and the
CPU the whole machine spent while the class ran the runbook. It prints a table and a sizing line, and writes
bench/results/classroom.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from tests.support.hub import Hub, Kernel, running_hub
from tests.support.users import User, notebooks_copy, processes_of, run_as, shared_venv, throwaway_users

ROOT = Path(__file__).resolve().parents[1]

RUNBOOK = ("00-connect", "01-install-operator", "02-externalip-cidr", "03-demo-deploy")
MB = 1024 * 1024


def _cpu_seconds() -> float:
    """Busy CPU time of the whole machine so far (user+nice+system+irq+softirq+steal), in seconds."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6] + fields[7]
    return busy / os.sysconf("SC_CLK_TCK")


def _memory(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of one process in MB; zeros when it is gone."""
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0.0, 0.0
    values = {line.split(":")[0]: int(line.split()[1]) for line in rollup.splitlines()[1:] if ":" in line}
    return values.get("Rss", 0) / 1024, values.get("Pss", 0) / 1024


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def attendee_memory(user: User) -> dict[str, dict[str, float]]:
    """Memory of everything the attendee runs, grouped: server, kernels, lab."""
    groups: dict[str, dict[str, float]] = {}
    for pid in processes_of(user.uid):
        args = _cmdline(pid)
        group = "server" if "jupyterhub-singleuser" in args else "kernels" if "ipykernel" in args else "lab"
        rss, pss = _memory(pid)
        entry = groups.setdefault(group, {"processes": 0, "rss_mb": 0.0, "pss_mb": 0.0})
        entry["processes"] += 1
        entry["rss_mb"] += rss
        entry["pss_mb"] += pss
    return groups


def run_runbook(hub: Hub, user: User, notebooks: Path, failures: dict[str, str], kernels: list[Kernel]) -> None:
    """Run All in each notebook; the kernels stay running, as an open notebook's do (closed at the end)."""
    try:
        for name in RUNBOOK:
            kernel = hub.kernel(user.name)
            kernels.append(kernel)
            failure = kernel.run_notebook(notebooks / f"{name}.ipynb")
            if failure:
                failures[user.name] = failure
                return
    except Exception as err:
        failures[user.name] = f"{type(err).__name__}: {err}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attendees", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "classroom.json")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/classroom.py creates throwaway users: run it as root.")
    venv = shared_venv()
    result: dict[str, Any] = {"attendees": args.attendees, "cores": os.cpu_count()}
    kernels: list[Kernel] = []
    with throwaway_users(args.attendees) as users, notebooks_copy() as notebooks, running_hub(venv) as hub:
        try:
            for user in users:
                shutil.copytree(notebooks, user.home / "notebooks")
                shutil.chown(user.home / "notebooks", user.name, user.name)
                hub.start_server(user.name)
            server_only = {u.name: attendee_memory(u) for u in users}
            failures: dict[str, str] = {}
            cpu_before, started = _cpu_seconds(), time.monotonic()
            threads = [
                threading.Thread(target=run_runbook, args=(hub, u, u.home / "notebooks", failures, kernels))
                for u in users
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            wall = time.monotonic() - started
            busy = _cpu_seconds() - cpu_before
            if failures:
                raise SystemExit(f"the runbook failed: {failures}")
            time.sleep(5)  # let the labs settle into their steady state before reading memory
            cpu_idle_before = _cpu_seconds()
            time.sleep(10)
            idle = (_cpu_seconds() - cpu_idle_before) / 10
            memory = {u.name: attendee_memory(u) for u in users}
        finally:
            for kernel in kernels:
                kernel.close()  # shut down as an attendee closing the notebook would
            for user in users:
                run_as(user, ["kalab", "lab", "down"], venv=venv)
                hub.stop_server(user.name)
    per = list(memory.values())

    def mean(group: str, key: str, source: list[dict[str, dict[str, float]]]) -> float:
        return sum(m.get(group, {}).get(key, 0.0) for m in source) / len(source)

    table = {
        group: {key: round(mean(group, key, per), 1) for key in ("processes", "rss_mb", "pss_mb")}
        for group in ("server", "kernels", "lab")
    }
    total_pss = sum(v["pss_mb"] for v in table.values())
    total_rss = sum(v["rss_mb"] for v in table.values())
    mem_total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / MB
    result.update(
        {
            "runbook_wall_s": round(wall, 1),
            "runbook_cpu_core_s_per_attendee": round(busy / args.attendees, 1),
            "idle_cpu_cores_for_class": round(idle, 3),
            "server_only_mb": {k: v.get("server", {}) for k, v in server_only.items()},
            "per_attendee_mean": table,
            "per_attendee_total": {"rss_mb": round(total_rss, 1), "pss_mb": round(total_pss, 1)},
            "machine_mb": round(mem_total),
            # TLJH's rule: RAM = concurrent users × per-user maximum + 128 MB
            "attendees_fitting_by_pss": int((mem_total * 0.9 - 128) // total_pss),
        }
    )
    print(f"{args.attendees} attendees ran notebooks 00–03 at once in {wall:.1f} s on {os.cpu_count()} cores;")
    print(f"  CPU: {busy / args.attendees:.1f} core-seconds per attendee for the runbook, {idle:.3f} cores idle")
    print(f"  {'per attendee (mean)':<20} {'procs':>5} {'RSS MB':>8} {'PSS MB':>8}")
    for group, values in table.items():
        print(f"  {group:<20} {values['processes']:>5.0f} {values['rss_mb']:>8.1f} {values['pss_mb']:>8.1f}")
    print(f"  {'total':<20} {'':>5} {total_rss:>8.1f} {total_pss:>8.1f}")
    print(f"  fits: {result['attendees_fitting_by_pss']} attendees in 90 % of {mem_total:.0f} MB (by PSS, +128 MB)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

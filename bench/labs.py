"""Many-labs benchmark: `lab up` time, eight labs started at once, and memory per idle and per seeded lab (JSON out).

.venv/bin/python bench/labs.py [--rounds 3] [--labs 8] [--settle 5] [--out bench/results/labs.json]

Runs with $KALAB_HOME set to a fresh temporary directory, so it never sees nor touches anyone's real labs, and
takes every lab it started down at the end, whatever happens. What it measures (issue 9's benchmark):

- one lab: `control.up(name)` until the API serves and 3 nodes are Ready, then `down` (median of `rounds`);
- `labs` labs started at once, each by its own `kalab lab up --name bN` (as that many attendees would), and per lab
  the time until its daemon says it serves, until the kubernetes client sees 3 Ready nodes, and until the command
  returns; then the CPU the idle labs use;
- memory of a lab: every process in its PID namespace (the lab's top process and all below it) plus its `unshare`,
  summed as RSS, PSS (shared pages split among the processes sharing them, the fair share) and USS (private pages:
  what ending the lab gives back); idle among `labs` labs, idle alone, and alone with the seed deployed (notebooks
  00–03 run headless against it), with the biggest processes by command;
- how many seeded labs fit in 75 % of this machine's RAM, by PSS.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

FIT_SHARE = 0.75  # share of RAM a trainer would give to labs
START_TIMEOUT = 120.0
SEED = ("00", "01", "02", "03")

# KALAB_HOME before kalab is imported anywhere, and inherited by every command this script starts.
HOME = Path(tempfile.mkdtemp(prefix="kalab-bench-labs-"))
os.environ["KALAB_HOME"] = str(HOME)
os.environ.pop("KALAB_LAB", None)

from kubernetes import client, config  # noqa: E402

from kalab.lab import control  # noqa: E402
from kalab.lab.dataplane import procfs  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------------- helpers


def stats(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def machine() -> dict[str, Any]:
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    return {
        "cores": os.cpu_count(),
        "mem_total_mb": round(int(meminfo["MemTotal"].split()[0]) / 1024),
        "mem_available_mb": round(int(meminfo["MemAvailable"].split()[0]) / 1024),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "other_labs_running": other_labs(),
        "kernel": os.uname().release,
    }


def other_labs() -> int:
    """Labs on this machine that are not this benchmark's (they share its CPU, and pages with its labs)."""
    count = 0
    for pid in procfs.all_pids():
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"kalab.lab.daemon" in argv and not any(str(HOME).encode() in a for a in argv):
                count += 1
    return count


def nodes_ready(kubeconfig: Path) -> bool:
    """The lab's API answers and lists exactly 3 nodes, all Ready."""
    api_client = config.new_client_from_config(str(kubeconfig))
    try:
        nodes = client.CoreV1Api(api_client).list_node(_request_timeout=5).items
    except Exception:  # not serving yet, or the connection was refused: keep waiting
        return False
    finally:
        api_client.close()
    return len(nodes) == 3 and all(
        any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or []) for n in nodes
    )


def wait_nodes_ready(kubeconfig: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not nodes_ready(kubeconfig):
        if time.monotonic() > deadline:
            raise RuntimeError(f"3 Ready nodes not seen within {timeout:g} s ({kubeconfig})")
        time.sleep(0.02)


# ---------------------------------------------------------------------------------------------------- processes


def ns_id(pid: int) -> tuple[int, int] | None:
    try:
        st = os.stat(f"/proc/{pid}/ns/pid")
    except OSError:
        return None
    return st.st_dev, st.st_ino


def lab_pids(name: str) -> list[int]:
    """The lab's processes: all in the PID namespace of its top process, plus its `unshare` parent."""
    top = json.loads((control.state_dir(name) / control.LAB_FILE).read_text())
    wanted = ns_id(top["pid"])
    if wanted is None:
        raise RuntimeError(f"lab {name}: its top process {top['pid']} is gone")
    pids = [pid for pid in procfs.all_pids() if ns_id(pid) == wanted]
    unshare = top.get("unshare")
    if isinstance(unshare, int) and procfs.starttime(unshare) is not None and unshare not in pids:
        pids.append(unshare)
    return sorted(pids)


def label(pid: int) -> str:
    """A short name for what the process runs: `python -m module [subcommand]`, else the program's name."""
    try:
        argv = [a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    except OSError:
        return "?"
    if not argv:
        return "?"
    program = os.path.basename(argv[0])
    if program.startswith("python") and "-m" in argv:
        at = argv.index("-m")
        module = argv[at + 1] if at + 1 < len(argv) else "?"
        sub = argv[at + 2] if at + 2 < len(argv) and not argv[at + 2].startswith("-") else ""
        if module == "kalab.lab.images.operator_image" and sub:  # one image, several containers
            return f"{module} {sub}"
        return module
    if program == "ip" and "monitor" in argv:
        return "ip monitor"
    return program


def memory_kb(pid: int) -> dict[str, int] | None:
    """Rss, Pss and USS (private clean + dirty) of a process in kB, from /proc/<pid>/smaps_rollup."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:  # ended meanwhile
        return None
    fields = {}
    for line in text.splitlines()[1:]:
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            fields[key] = int(parts[0])
    if "Rss" not in fields:  # a zombie, or a kernel thread
        return None
    return {
        "rss": fields["Rss"],
        "pss": fields.get("Pss", 0),
        "uss": fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0),
    }


def lab_memory(name: str, top: int = 10) -> dict[str, Any]:
    """Memory of every process of the lab, summed, by command, and its biggest processes."""
    procs = []
    for pid in lab_pids(name):
        mem = memory_kb(pid)
        if mem is not None:
            procs.append({"pid": pid, "command": label(pid), **mem})
    by_command: dict[str, dict[str, int]] = defaultdict(lambda: {"count": 0, "rss": 0, "pss": 0, "uss": 0})
    for proc in procs:
        entry = by_command[proc["command"]]
        entry["count"] += 1
        for key in ("rss", "pss", "uss"):
            entry[key] += proc[key]

    def mb(kb: int) -> float:
        return round(kb / 1024, 1)

    return {
        "processes": len(procs),
        "rss_mb": mb(sum(p["rss"] for p in procs)),
        "pss_mb": mb(sum(p["pss"] for p in procs)),
        "uss_mb": mb(sum(p["uss"] for p in procs)),
        "by_command": [
            {
                "command": cmd,
                "count": e["count"],
                "rss_mb": mb(e["rss"]),
                "pss_mb": mb(e["pss"]),
                "uss_mb": mb(e["uss"]),
            }
            for cmd, e in sorted(by_command.items(), key=lambda item: -item[1]["pss"])
        ],
        "biggest": [
            {"pid": p["pid"], "command": p["command"], "rss_mb": mb(p["rss"]), "pss_mb": mb(p["pss"])}
            for p in sorted(procs, key=lambda p: -p["pss"])[:top]
        ],
    }


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            raw = Path(f"/proc/{pid}/stat").read_bytes()
        except OSError:
            continue
        fields = raw[raw.rindex(b")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total


def idle_cpu(names: list[str], seconds: float) -> dict[str, Any]:
    """Share of one core each lab uses while idle, over `seconds` (processes born meanwhile are not counted)."""
    pids = {name: lab_pids(name) for name in names}
    before = {name: cpu_ticks(p) for name, p in pids.items()}
    time.sleep(seconds)
    used = [(cpu_ticks(pids[name]) - before[name]) / CLK_TCK / seconds * 100 for name in names]
    return {"seconds": seconds, "percent_of_a_core": stats(used)}


# ---------------------------------------------------------------------------------------------------- phases


def one_lab(rounds: int) -> dict[str, Any]:
    """`control.up` → 3 Ready nodes → `control.down`, `rounds` times."""
    results = []
    for number in range(rounds):
        name = f"one{number}"
        started = time.perf_counter()
        info = control.up(name)
        served = time.perf_counter()
        assert info.kubeconfig is not None
        wait_nodes_ready(info.kubeconfig)
        ready = time.perf_counter()
        control.down(name)
        results.append({"up_s": served - started, "ready_s": ready - started, "down_s": time.perf_counter() - ready})
    return {"rounds": rounds, **{key: stats([r[key] for r in results]) for key in ("up_s", "ready_s", "down_s")}}


def watch_lab(name: str, t0: float, command: subprocess.Popen[str], out: dict[str, Any]) -> None:
    """Record when the lab's daemon says it serves, and when the kubernetes client sees its 3 Ready nodes."""
    deadline = t0 + START_TIMEOUT
    while time.perf_counter() < deadline:
        info = control.status(name)
        if info.ready and info.kubeconfig is not None:
            out.setdefault("serving_s", time.perf_counter() - t0)
            if nodes_ready(info.kubeconfig):
                out["ready_s"] = time.perf_counter() - t0
                with contextlib.suppress(subprocess.TimeoutExpired):
                    command.wait(timeout=max(1.0, deadline - time.perf_counter()))
                if command.returncode == 0:  # when `kalab lab up` returned, as its user sees it
                    out["command_s"] = time.perf_counter() - t0
                return
        elif command.poll() not in (None, 0):  # `kalab lab up` gave up
            out["error"] = (command.stdout.read() if command.stdout else "").strip().splitlines()[-1:]
            return
        time.sleep(0.05)
    out["error"] = f"not ready within {START_TIMEOUT:g} s"


def many_labs(names: list[str], commands: dict[str, subprocess.Popen[str]]) -> dict[str, Any]:
    """Start every lab by its own `kalab lab up` at the same moment and time each one."""
    load = round(os.getloadavg()[0], 2)
    t0 = time.perf_counter()
    for name in names:
        commands[name] = subprocess.Popen(
            [sys.executable, "-m", "kalab", "lab", "up", "--name", name],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    per_lab: dict[str, dict[str, Any]] = {name: {} for name in names}
    watchers = [threading.Thread(target=watch_lab, args=(n, t0, commands[n], per_lab[n])) for n in names]
    for watcher in watchers:
        watcher.start()
    for watcher in watchers:
        watcher.join()
    failed = {name: r["error"] for name, r in per_lab.items() if "error" in r}
    if failed:
        raise RuntimeError(f"labs failed to start: {failed}")
    serving = [r["serving_s"] for r in per_lab.values()]
    ready = [r["ready_s"] for r in per_lab.values()]
    return {
        "labs": len(names),
        "loadavg_1m_before": load,
        "serving_s": stats(serving),
        "ready_s": stats(ready),
        "all_ready_s": round(max(ready), 3),
        "goal_s": 20.0,
        "command_s": stats([r["command_s"] for r in per_lab.values() if "command_s" in r] or [0.0]),
        "per_lab": {name: {k: round(v, 3) for k, v in r.items()} for name, r in per_lab.items()},
    }


def kernel_sampler(root: int, stop: threading.Event, peak: dict[str, float]) -> None:
    """While notebooks run, the biggest RSS/PSS any Jupyter kernel below `root` reaches (an attendee's kernel)."""
    while not stop.wait(0.5):
        parents: dict[int, int] = {}
        for pid in procfs.all_pids():
            with contextlib.suppress(OSError, ValueError, IndexError):
                raw = Path(f"/proc/{pid}/stat").read_bytes()
                parents[pid] = int(raw[raw.rindex(b")") + 2 :].split()[1])
        below, frontier = set(), {root}
        while frontier:
            frontier = {pid for pid, parent in parents.items() if parent in frontier} - below
            below |= frontier
        for pid in below:
            if label(pid) == "ipykernel_launcher":
                mem = memory_kb(pid)
                if mem:
                    peak["rss_mb"] = max(peak.get("rss_mb", 0.0), round(mem["rss"] / 1024, 1))
                    peak["pss_mb"] = max(peak.get("pss_mb", 0.0), round(mem["pss"] / 1024, 1))


def deploy_seed(name: str, out: Path) -> dict[str, Any]:
    """Notebooks 00–03 headless against the running lab (not `--lab`, which would restart it and stop it after)."""
    info = control.status(name)
    argv = [sys.executable, "-m", "kalab", "run", "--out", str(out)]
    argv += [arg for nb in SEED for arg in ("--only", nb)]
    argv += ["-p", f"kubeconfig={info.kubeconfig}", "-p", f"lab_name={name}"]
    peak: dict[str, float] = {}
    stop = threading.Event()
    started = time.perf_counter()
    with open(out / "kalab-run.log", "w") as log:
        run = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        sampler = threading.Thread(target=kernel_sampler, args=(run.pid, stop, peak))
        sampler.start()
        try:
            code = run.wait(timeout=1800)
        finally:
            stop.set()
            sampler.join()
            if run.poll() is None:
                run.kill()
                run.wait()
    if code != 0:
        tail = (out / "kalab-run.log").read_text(errors="replace").strip().splitlines()[-5:]
        raise RuntimeError("kalab run (seed) failed:\n  " + "\n  ".join(tail))
    notebooks = {r["notebook"].removesuffix(".ipynb"): r["seconds"] for r in json.loads((out / "run.json").read_text())}
    return {"seconds": round(time.perf_counter() - started, 1), "notebooks_s": notebooks, "kernel_peak": peak}


def down_all(commands: dict[str, subprocess.Popen[str]]) -> list[str]:
    """Stop every `kalab lab up` still running and every lab under $KALAB_HOME; the names that were still up."""
    for command in commands.values():
        if command.poll() is None:
            command.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                command.wait(timeout=10)
            if command.poll() is None:
                command.kill()
                command.wait()
    names = [info.name for info in control.list_labs()]
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
        were_up = list(pool.map(control.down, names))
    return [name for name, up in zip(names, were_up, strict=True) if up]


# ---------------------------------------------------------------------------------------------------- report


def show(report: dict[str, Any]) -> None:
    m = report["machine"]
    print(
        f"machine: {m['cores']} cores, {m['mem_total_mb']} MB RAM, load {m['loadavg_1m']} at start, "
        f"{m['other_labs_running']} other lab(s) running (kernel {m['kernel']})"
    )
    one = report["one_lab"]
    print(
        f"one lab (median of {one['rounds']}): up {one['up_s']['median']:.2f} s, "
        f"3 nodes Ready {one['ready_s']['median']:.2f} s, down {one['down_s']['median']:.2f} s"
    )
    many = report["many_labs"]
    verdict = "met" if many["all_ready_s"] <= many["goal_s"] else "MISSED"
    print(
        f"{many['labs']} labs at once: serving median {many['serving_s']['median']:.2f} s / max "
        f"{many['serving_s']['max']:.2f} s; 3 nodes Ready median {many['ready_s']['median']:.2f} s / max "
        f"{many['ready_s']['max']:.2f} s (goal ≤ {many['goal_s']:g} s: {verdict})"
    )
    cpu = report["idle_cpu"]["percent_of_a_core"]
    print(f"idle CPU per lab: median {cpu['median']:.1f} % / max {cpu['max']:.1f} % of one core")
    print()
    print(f"{'memory per lab (MB)':<34}{'procs':>6}{'RSS':>9}{'PSS':>9}{'USS':>9}")
    for key, title in (
        ("idle_among_many", f"idle, among {many['labs']} (median)"),
        ("idle_alone", "idle, alone"),
        ("seeded_alone", "seed deployed, alone"),
    ):
        mem = report["memory"][key]
        print(f"{title:<34}{mem['processes']:>6}{mem['rss_mb']:>9.1f}{mem['pss_mb']:>9.1f}{mem['uss_mb']:>9.1f}")
    goal = report["memory"]["idle_goal_rss_mb"]
    idle_rss = report["memory"]["idle_alone"]["rss_mb"]
    print(f"goal: idle ≤ {goal} MB RSS: {'met' if idle_rss <= goal else 'MISSED'} ({idle_rss:.1f} MB)")
    print()
    print("seeded lab by command (MB):")
    print(f"  {'command':<50}{'n':>3}{'RSS':>9}{'PSS':>9}{'USS':>9}")
    for row in report["memory"]["seeded_alone"]["by_command"]:
        print(f"  {row['command']:<50}{row['count']:>3}{row['rss_mb']:>9.1f}{row['pss_mb']:>9.1f}{row['uss_mb']:>9.1f}")
    seed = report["seed"]
    kernel = seed["kernel_peak"]
    print(
        f"seed (notebooks {', '.join(SEED)}): {seed['seconds']:.1f} s; the notebook kernel (outside the lab) peaked "
        f"at {kernel.get('rss_mb', 0):.1f} MB RSS / {kernel.get('pss_mb', 0):.1f} MB PSS"
    )
    fit = report["fit"]
    print(
        f"fit: {fit['labs_by_pss']} seeded labs in {fit['share'] * 100:.0f} % of RAM by PSS "
        f"({fit['budget_mb']} MB / {fit['per_lab_pss_mb']} MB); "
        f"{fit['labs_with_kernel_by_pss']} counting each attendee's notebook kernel; "
        f"{fit['labs_by_uss']} by USS ({fit['per_lab_uss_mb']} MB, the floor as labs share more pages)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of one lab up→down (default: %(default)s)")
    parser.add_argument("--labs", type=int, default=8, help="labs started at once (default: %(default)s)")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds to wait before measuring an idle lab")
    parser.add_argument("--out", default="bench/results/labs.json")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` takes the labs down

    report: dict[str, Any] = {"machine": machine(), "kalab_home": str(HOME)}
    commands: dict[str, subprocess.Popen[str]] = {}
    work = Path(tempfile.mkdtemp(prefix="kalab-bench-labs-run-"))
    try:
        print(f"▶ one lab, {args.rounds} rounds …", flush=True)
        report["one_lab"] = one_lab(args.rounds)

        names = [f"b{i}" for i in range(args.labs)]
        print(f"▶ {args.labs} labs at once …", flush=True)
        report["many_labs"] = many_labs(names, commands)
        time.sleep(args.settle)
        print("▶ idle labs: memory and CPU …", flush=True)
        report["idle_cpu"] = idle_cpu(names, 10.0)
        idle_many = [lab_memory(name) for name in names]
        median_lab = sorted(idle_many, key=lambda mem: mem["pss_mb"])[len(idle_many) // 2]
        memory: dict[str, Any] = {
            "idle_goal_rss_mb": 100,
            "idle_among_many": median_lab,
            "idle_among_many_pss_mb": stats([mem["pss_mb"] for mem in idle_many]),
            "idle_among_many_rss_mb": stats([mem["rss_mb"] for mem in idle_many]),
        }
        kept = names[0]
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(names) - 1)) as pool:
            list(pool.map(control.down, names[1:]))
        time.sleep(args.settle)
        memory["idle_alone"] = lab_memory(kept)

        print(f"▶ seed (notebooks {', '.join(SEED)}) on {kept} …", flush=True)
        report["seed"] = deploy_seed(kept, work)
        time.sleep(args.settle)
        memory["seeded_alone"] = lab_memory(kept)
        report["memory"] = memory

        budget = report["machine"]["mem_total_mb"] * FIT_SHARE
        per_lab = memory["seeded_alone"]["pss_mb"]
        kernel = report["seed"]["kernel_peak"].get("pss_mb", 0.0)
        report["fit"] = {
            "share": FIT_SHARE,
            "budget_mb": round(budget),
            "per_lab_pss_mb": per_lab,
            "labs_by_pss": int(budget // per_lab),
            "kernel_pss_mb": kernel,
            "labs_with_kernel_by_pss": int(budget // (per_lab + kernel)),
            "per_lab_uss_mb": memory["seeded_alone"]["uss_mb"],
            "labs_by_uss": int(budget // memory["seeded_alone"]["uss_mb"]),
        }
    finally:
        leftover = down_all(commands)
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(HOME, ignore_errors=True)
        if leftover:
            print(f"▶ taken down at the end: {', '.join(leftover)}", flush=True)

    print()
    show(report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n→ {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

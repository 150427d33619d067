"""How long `kalab doctor` takes: its whole run on a healthy seeded lab, and on one broken by the slowest faults.

    python bench/doctor.py [--runs 5] [--faults vip-nowhere vrrp-blocked vrid-collision]

Starts a lab (under a temporary KALAB_HOME) and brings it to the seed's end state as the notebooks do (operator,
two loadbalancer nodes, the KeepalivedGroup, the privileged SCC, the auto-assign block, the demo and its VIP). Then
times `doctor()` (every check of the catalog, as `kalab doctor` runs them) `--runs` times on the healthy lab, and,
for each fault, breaks it with `kalab lab break`, waits until the doctor names it, times `--runs` more runs on the
broken lab, and heals it. A broken lab's checks read pods that do not answer or exec into keepalived pods that are
in FAULT: the figure shows every check stays bounded. Writes bench/results/doctor.json. Measures only; asserts
nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from kalab.cluster import demo, exporter, keepalived, network, nodes, olm, scc
from kalab.cluster.connect import Cluster, connect
from kalab.cluster.diagnose.doctor import CHECK_TIMEOUT, doctor
from kalab.cluster.diagnose.verdicts import Verdict, failing
from kalab.lab import control, faults
from kalab.lab.dataplane.naming import POD_INTERFACE

ROOT = Path(__file__).resolve().parents[1]
LAB = "bench-doctor"
NAMESPACE = "keepalived-operator"
SLOWEST = ("vip-nowhere", "vrrp-blocked", "vrid-collision")
T = TypeVar("T")


def seed(cluster: Cluster) -> None:
    """The seed's end state, as tests/cluster/seeded.py walks it."""
    olm.install_operator(cluster, namespace=NAMESPACE, timeout=300)
    nodes.label_nodes(cluster, ["master-1", "master-2"])
    keepalived.apply_keepalived_group(cluster, interface=POD_INTERFACE)
    scc.grant_privileged(cluster, NAMESPACE)
    keepalived.wait_keepalived_pods(cluster, 2, timeout=60)
    network.patch_external_ip(cluster, "172.21.6.32/27", "172.21.6.32/27")
    demo.deploy_demo(cluster, timeout=120)
    demo.service_vip(cluster, timeout=60)
    exporter.wait_for_master(cluster, timeout=60)


def wait(until: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = until()
        if found is not None:
            return found
        time.sleep(0.5)
    raise SystemExit(f"gave up after {timeout:g} s waiting for {what}")


def healthy(cluster: Cluster) -> list[Verdict] | None:
    pods = keepalived.keepalived_pods(cluster)
    if len(pods) != 2 or not pods["ready"].all():
        return None
    verdicts = doctor(cluster)
    return verdicts if all(v.status == "ok" for v in verdicts) else None


def named(cluster: Cluster, fault_id: str) -> list[Verdict] | None:
    verdicts = doctor(cluster)
    return verdicts if fault_id in {v.id for v in verdicts if v.status != "ok"} else None


def timed_runs(cluster: Cluster, runs: int) -> tuple[list[float], list[Verdict]]:
    seconds, verdicts = [], []
    for _ in range(runs):
        started = time.monotonic()
        verdicts = doctor(cluster)
        seconds.append(time.monotonic() - started)
    return seconds, verdicts


def figures(seconds: list[float], verdicts: list[Verdict]) -> dict[str, Any]:
    return {
        "median_s": round(statistics.median(seconds), 2),
        "min_s": round(min(seconds), 2),
        "max_s": round(max(seconds), 2),
        "checks": len(verdicts),
        "failing": sorted({v.id for v in failing(verdicts)}),
        "not_finished": sorted({v.id for v in verdicts if "did not finish" in v.summary + v.evidence}),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--faults", nargs="*", default=list(SLOWEST))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "doctor.json")
    args = parser.parse_args()
    result: dict[str, Any] = {"runs": args.runs, "check_timeout_s": CHECK_TIMEOUT, "healthy": {}, "broken": {}}
    with tempfile.TemporaryDirectory(prefix="kalab-bench-doctor-") as tmp:
        os.environ[control.HOME_ENV] = tmp
        info = control.up(LAB)
        try:
            assert info.kubeconfig is not None
            cluster = connect(str(info.kubeconfig))
            seed(cluster)
            wait(lambda: healthy(cluster), 120, "the doctor all ok on the seeded lab")
            result["healthy"] = figures(*timed_runs(cluster, args.runs))
            for fault_id in args.faults:
                faults.break_fault(LAB, fault_id)
                try:
                    wait(partial(named, cluster, fault_id), 90, f"the doctor to name {fault_id}")
                    result["broken"][fault_id] = figures(*timed_runs(cluster, args.runs))
                finally:
                    faults.heal(LAB)
                wait(lambda: healthy(cluster), 120, f"the doctor all ok after healing {fault_id}")
        finally:
            control.down(LAB)
    ok = result["healthy"]
    print(
        f"doctor on a healthy seeded lab ({ok['checks']} checks, {args.runs} runs): "
        f"median {ok['median_s']} s ({ok['min_s']}–{ok['max_s']} s)"
    )
    for fault_id, each in result["broken"].items():
        unfinished = ", ".join(each["not_finished"]) or "none"
        print(
            f"doctor with {fault_id:<16} broken: median {each['median_s']} s (max {each['max_s']} s), "
            f"failing {', '.join(each['failing'])}; unfinished checks: {unfinished}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The runbook's notebooks, executed headless against one lab, twice; assert on what they recorded."""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

from kalab.cluster import network
from kalab.cluster.connect import connect
from kalab.lab import control
from kalab.lab.dataplane import netlink
from tests.support.kalabcli import run_kalab as kalab
from tests.support.labs import processes_mentioning, running_lab
from tests.support.markers import needs_lab_tools

pytestmark = needs_lab_tools("keepalived", "iptables-restore", "ip", "curl")
LAB = "t-runbook"
FRESH = "t-fresh"  # the lab `kalab run --lab` starts and stops, beside LAB
NOTEBOOKS = [
    "00-connect",
    "01-install-operator",
    "02-externalip-cidr",
    "03-demo-deploy",
    "04-traffic-analysis",
    "05-metrics-and-failover",
    "06-troubleshooting",
]


def outputs_text(path: Path) -> str:
    """Everything a notebook recorded: printed text, and each display's plain-text form."""
    nb = nbformat.read(str(path), as_version=4)
    chunks = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            chunks.append(out.get("text", "") or data.get("text/plain", "") or json.dumps(data))
    return "\n".join(chunks)


def images(path: Path) -> int:
    """How many PNG images (plots) a notebook recorded."""
    nb = nbformat.read(str(path), as_version=4)
    return sum("image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", []))


@pytest.fixture(scope="module")
def lab() -> Iterator[control.LabInfo]:
    with running_lab(LAB) as info:
        yield info


def run_all(lab: control.LabInfo, out: Path, *extra: str) -> dict[str, str]:
    # By name only: each notebook attaches to the running lab (`control.up` is a no-op), as in JupyterLab.
    params = ["-p", f"lab_name={lab.name}", *extra]
    result = kalab("run", "--out", str(out), *params)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "❌" not in result.stdout and "Summary (also in summary.json):" in result.stdout
    runs = json.loads((out / "run.json").read_text())
    assert [(r["notebook"], r["ok"]) for r in runs] == [(f"{n}.ipynb", True) for n in NOTEBOOKS]
    return {n: outputs_text(out / f"{n}.ipynb") for n in NOTEBOOKS}


def test_notebooks_run_in_order_and_a_second_run_changes_nothing(lab: control.LabInfo, tmp_path: Path) -> None:
    first = run_all(lab, tmp_path / "first")

    connected = first["00-connect"]
    assert "✅ nodes Ready: 3 nodes Ready: master-0, master-1, master-2" in connected
    assert "✅ OpenShift-like" in connected
    assert "Requests to VIPs will be sent from the lab's bastion (network namespace kalab-bastion" in connected
    assert f"{lab.state_dir}/kubeconfig" in connected  # the lab of that name, not another one

    install = first["01-install-operator"]
    assert re.search(r"✅ operator installed: CSV keepalived-operator\.v[\d.]+ Succeeded", install)
    assert "created Subscription keepalived-operator" in install
    lb = "node-role.kubernetes.io/loadbalancer"
    assert f"✅ nodes labelled: exactly the picked nodes carry {lb}: master-1, master-2" in install
    assert "✅ FailedCreate explained: " in install and "security context constraint" in install
    assert "✅ privileged SCC granted" in install
    assert "✅ keepalived pods running: keepalived Running and Ready on master-1, master-2" in install

    cidr = first["02-externalip-cidr"]
    assert "172.21.6.32/27: 32 addresses, services get 172.21.6.33 … 172.21.6.62" in cidr
    assert "has host bits set" in cidr
    assert "spec.externalIP is not set" in cidr
    assert "✅ dry run: 2 change(s) validated, nothing applied" in cidr
    assert (
        "✅ network config holds the CIDRs: autoAssignCIDRs 172.21.6.33/27, allowedCIDRs 172.21.6.33/27; "
        "2 field(s) changed now" in cidr
    )
    assert "Plan the externalIP CIDRs" in (tmp_path / "first" / "02-externalip-cidr.html").read_text()
    journal = lab.state_dir / "externalip-undo.json"
    assert json.loads(journal.read_text())["externalIP"] is None  # the lab started without externalIP

    deploy = first["03-demo-deploy"]
    assert "created Pod test-0" in deploy and "created Service demo" in deploy
    assert "✅ demo pods pinned: 2 pods Running on master-0, master-2" in deploy
    found = re.search(r"✅ EXTERNAL-IP assigned: EXTERNAL-IP (\S+) is inside 172\.21\.6\.32/27", deploy)
    assert found and ipaddress.ip_address(found[1]) in ipaddress.ip_network("172.21.6.32/27")
    vip = found[1]
    assert re.search(rf"demo\s+LoadBalancer\s+172\.30\.\S+\s+{re.escape(vip)},{re.escape(vip)}\s+80:\d+/TCP", deploy)

    traffic = first["04-traffic-analysis"]
    assert f"{vip} is on master-" in traffic
    assert "Clients run on the lab's bastion" in traffic
    assert re.search(r"✅ both pods answered: test-\d \d+ \(\d+%\), test-\d \d+", traffic)
    assert "✅ no request failed: 0 of 200 requests failed" in traffic
    assert traffic.count("✅ VIP reaches the demo pods: DNAT to 10.254.") == 1
    assert "'KUBE-FW-ZFZLPEKTCJ3DBGAL'" in traffic and "/* demo/demo:http loadbalancer IP */" in traffic
    assert "✅ KUBE-FW counters 0 0: KUBE-FW-ZFZLPEKTCJ3DBGAL" in traffic
    assert "✅ KUBE-FW reaches the demo pods: DNAT to 10.254." in traffic
    assert "✅ keepalived pod as in the seed: keepalivedgroup-workers-" in traffic
    assert images(tmp_path / "first" / "04-traffic-analysis.ipynb") == 1

    metrics = first["05-metrics-and-failover"]
    assert "clients run from the lab's bastion" in metrics
    master = re.search(r"✅ exporter shows one MASTER: (master-\d) is MASTER and sends (\S+) adverts/s", metrics)
    assert master and master[1] in ("master-1", "master-2") and 0.7 <= float(master[2]) <= 1.3
    assert re.search(rf"✅ VIP on the MASTER: {re.escape(vip)} is on master-\d's kalab-eth0", metrics)
    for kind in ("graceful", "crash", "link-down"):
        assert re.search(rf"{kind} trial 1: master-\d → master-\d: outage \d+ ms, takeover \d+ ms", metrics), kind
    assert "✅ takeover as VRRP predicts: graceful " in metrics
    assert "annotated Service demo/demo: advert_int 0.1, version 3" in metrics
    tuned = re.search(r"✅ tuned failover measured: link-down (\d+) → (\d+) ms; original timing restored", metrics)
    assert tuned and int(tuned[2]) < 1000 < 2500 < int(tuned[1])  # 0.1 s adverts: ≤ 0.36 s; 1 s adverts: ≥ 2.6 s
    assert "restored Service demo/demo: no verbatim lines" in metrics
    assert images(tmp_path / "first" / "05-metrics-and-failover.ipynb") == 5  # metrics, 3 timelines, distribution

    trouble = first["06-troubleshooting"]
    assert f"✅ EXTERNAL-IP diagnosis: all 4 checks ok: demo/demo has EXTERNAL-IP {vip}" in trouble
    assert "✅ keepalived pods diagnosis: all 9 checks ok: 2 Running and Ready on master-1, master-2" in trouble
    assert re.search(rf"✅ VIP diagnosis: all 8 checks ok: MASTER on (master-\d); {re.escape(vip)} on \1", trouble)
    assert "✅ scratch namespace: namespace kalab-troubleshoot is Active" in trouble
    nowhere = re.search(r"✅ VIP nowhere diagnosed: group annotation: kalab-troubleshoot/no-group has no (.*)", trouble)
    assert nowhere and "172.21.6." in nowhere[1] and "is on none of the keepalived nodes" in nowhere[1]
    assert "✅ refused externalIP explained: " in trouble and "192.0.2.10 is outside allowedCIDRs" in trouble
    assert "✅ scratch namespace removed: namespace kalab-troubleshoot is gone" in trouble
    assert f"✅ demo unchanged: all 21 checks ok; demo/demo has EXTERNAL-IP {vip}" in trouble
    assert re.search(r"✅ the doctor's diagnosis: \d+ checks, none fails", trouble)
    assert re.search(r"✅ healthy again: (\d+) of \1 checks ok", trouble)

    summary = json.loads((tmp_path / "first" / "summary.json").read_text())
    assert summary["demo"] == {"vip": vip, "service": "demo/demo"}
    assert summary["metrics"]["master"] == master[1]
    assert sorted(p["pod"] for p in summary["traffic"]["pods"]) == ["test-0", "test-1"]
    assert sum(p["share"] for p in summary["traffic"]["pods"]) == pytest.approx(1.0)
    compared = [(r["kind"], r["advert_int"], r["within_formula"]) for r in summary["failover"]["comparison"]]
    assert compared == [("graceful", 1, True), ("crash", 1, True), ("link-down", 1, True), ("link-down", 0.1, True)]

    cluster = connect(str(lab.kubeconfig))
    network_before = network.read_network(cluster)["spec"]
    demo_service = cluster.core.read_namespaced_service("demo", "demo").to_dict()

    # The second run checks that nothing changes; one failure kind (and the tuned one) is enough for 05's part.
    second = run_all(lab, tmp_path / "second", "-p", 'failover_kinds=["graceful"]', "-p", "metrics_seconds=3")
    install = second["01-install-operator"]
    assert "is already up to date" in install and "created" not in install
    assert "nothing is refused" in install and "already in SCC privileged's users" in install
    cidr = second["02-externalip-cidr"]
    assert "✅ dry run: 0 change(s) validated, nothing applied" in cidr
    assert "0 field(s) changed now" in cidr
    assert json.loads(journal.read_text())["externalIP"] is None  # the journal keeps the very original
    deploy = second["03-demo-deploy"]
    assert "Pod test-0 already exists" in deploy and "Service demo already exists" in deploy
    assert "created" not in deploy
    assert f"EXTERNAL-IP {vip} is inside 172.21.6.32/27" in deploy
    assert "✅ no request failed: 0 of 200 requests failed" in second["04-traffic-analysis"]
    assert "original timing restored" in second["05-metrics-and-failover"]
    assert "✅ scratch namespace removed: namespace kalab-troubleshoot is gone" in second["06-troubleshooting"]
    assert [ns.metadata.name for ns in cluster.core.list_namespace().items if "troubleshoot" in ns.metadata.name] == []
    assert network.read_network(cluster)["spec"] == network_before
    after = cluster.core.read_namespaced_service("demo", "demo").to_dict()
    assert after["metadata"]["annotations"] == demo_service["metadata"]["annotations"]  # 05 put its timing back
    assert after["spec"] == demo_service["spec"]
    assert "skipped (restore_cluster = False)" in second["06-troubleshooting"]

    # 06 as the troubleshooting exercise: a fault broken for real, its symptoms seen, the doctor naming it, healed.
    params = ["-p", f"lab_name={lab.name}"]
    result = kalab("run", "--only", "06", "--out", str(tmp_path / "exercise"), "-p", "fault=vrrp-blocked", *params)
    assert result.returncode == 0, result.stderr + result.stdout
    exercise = outputs_text(tmp_path / "exercise" / "06-troubleshooting.ipynb")
    assert "vrrp-blocked is broken" in exercise
    assert "requests answered, from the lab's bastion" in exercise  # the curl from where the clients are
    assert re.search(r"✅ the doctor's diagnosis: .*vrrp-blocked \(.*\): fix with ", exercise)
    assert re.search(r"✅ healthy again: (\d+) of \1 checks ok; healed vrrp-blocked", exercise)

    # The end of a workshop: 06 with restore_cluster deletes the demo and undoes 02's patch.
    result = kalab("run", "--only", "06", "--out", str(tmp_path / "restore"), "-p", "restore_cluster=true", *params)
    assert result.returncode == 0, result.stderr + result.stdout
    restored = outputs_text(tmp_path / "restore" / "06-troubleshooting.ipynb")
    assert "deleted Pod test-0" in restored and "restored the original spec.externalIP (absent)" in restored
    assert "✅ cluster restored: demo deleted; spec.externalIP is absent again" in restored
    assert network.read_external_ip(cluster) is None and not journal.exists()
    assert [p.metadata.name for p in cluster.core.list_namespaced_pod("demo").items] == []


def test_lab_flag_starts_a_fresh_lab_and_always_stops_it(tmp_path: Path) -> None:
    state_dir = control.state_dir(FRESH)
    host_namespaces = netlink.list_netns()
    lab_args = ["--lab", "--name", FRESH]
    result = kalab("run", "--only", "00", "--out", str(tmp_path), *lab_args)
    assert result.returncode == 0, result.stderr
    assert f"starting a fresh lab {FRESH}" in result.stdout and f"lab {FRESH} stopped" in result.stdout
    assert f"kubeconfig    {state_dir}/kubeconfig" in outputs_text(tmp_path / "00-connect.ipynb")
    assert_gone(FRESH, host_namespaces)

    # A failing notebook still stops the lab.
    failed = kalab("run", "--only", "02", "--out", str(tmp_path), *lab_args, "-p", "auto_assign_cidr=172.30.0.0/24")
    assert failed.returncode == 1 and "02-externalip-cidr.ipynb failed" in failed.stderr
    assert_gone(FRESH, host_namespaces)


def assert_gone(name: str, host_namespaces: list[str]) -> None:
    """Nothing of the lab `name` is left: no state directory, no process of its daemon, no namespace on the host."""
    state_dir = control.state_dir(name)
    assert control.status(name).state == "down" and not state_dir.exists()
    assert processes_mentioning(str(state_dir)) == []  # the lab daemon's command line names its state directory
    assert set(netlink.list_netns()) <= set(host_namespaces)

"""The runbook notebooks 00–03, executed headless against one lab, twice; assert on what they recorded."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from conftest import needs_root_tools
from kalabcli import run_kalab as kalab

from kalab.cluster import network
from kalab.cluster.connect import connect
from kalab.lab import control

pytestmark = needs_root_tools("keepalived", "iptables-restore", "ip", "curl")
PREFIX = f"kalab-t{os.getpid()}-nb-"
STATE_DIR = Path("/tmp") / f"kalab-t{os.getpid()}-nb-state"
NOTEBOOKS = ["00-connect", "01-install-operator", "02-externalip-cidr", "03-demo-deploy"]


def outputs_text(path: Path) -> str:
    """Everything a notebook recorded: printed text, and each display's plain-text form."""
    nb = nbformat.read(str(path), as_version=4)
    chunks = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            chunks.append(out.get("text", "") or data.get("text/plain", "") or json.dumps(data))
    return "\n".join(chunks)


def lab_namespaces() -> list[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in listed.splitlines() if line.startswith(PREFIX)]


@pytest.fixture(scope="module")
def lab() -> Iterator[control.LabInfo]:
    try:
        yield control.up(STATE_DIR, PREFIX)
    finally:
        control.down(STATE_DIR, PREFIX)
        assert not STATE_DIR.exists()
        assert lab_namespaces() == []


def run_all(lab: control.LabInfo, out: Path) -> dict[str, str]:
    params = ["-p", f"kubeconfig={lab.kubeconfig}", "-p", f"lab_state_dir={STATE_DIR}", "-p", f"lab_prefix={PREFIX}"]
    result = kalab("run", "--out", str(out), *params)
    assert result.returncode == 0, result.stderr + result.stdout
    runs = json.loads((out / "run.json").read_text())
    assert [(r["notebook"], r["ok"]) for r in runs] == [(f"{n}.ipynb", True) for n in NOTEBOOKS]
    return {n: outputs_text(out / f"{n}.ipynb") for n in NOTEBOOKS}


def test_notebooks_run_in_order_and_a_second_run_changes_nothing(lab: control.LabInfo, tmp_path: Path) -> None:
    first = run_all(lab, tmp_path / "first")

    assert "✅ nodes Ready: 3 nodes Ready: master-0, master-1, master-2" in first["00-connect"]
    assert "✅ OpenShift-like" in first["00-connect"]

    install = first["01-install-operator"]
    assert re.search(r"✅ operator installed: CSV keepalived-operator\.v[\d.]+ Succeeded", install)
    assert "created Subscription keepalived-operator" in install
    assert "✅ nodes labelled: loadbalancer nodes: master-1, master-2" in install
    assert "✅ FailedCreate explained: " in install and "security context constraint" in install
    assert "✅ privileged SCC granted" in install
    assert "✅ keepalived pods running: keepalived Running and Ready on master-1, master-2" in install

    cidr = first["02-externalip-cidr"]
    assert "172.21.6.32/27: 32 addresses, services get 172.21.6.33 … 172.21.6.62" in cidr
    assert "has host bits set" in cidr
    assert "spec.externalIP is not set" in cidr
    assert "✅ dry run: 2 change(s) validated, nothing applied" in cidr
    assert "✅ network config holds the CIDRs: autoAssignCIDRs 172.21.6.33/27, allowedCIDRs 172.21.6.33/27; " \
        "2 field(s) changed now" in cidr  # fmt: skip
    assert "Plan the externalIP CIDRs" in (tmp_path / "first" / "02-externalip-cidr.html").read_text()
    journal = STATE_DIR / "externalip-undo.json"
    assert json.loads(journal.read_text())["externalIP"] is None  # the lab started without externalIP

    deploy = first["03-demo-deploy"]
    assert "created Pod test-0" in deploy and "created Service demo" in deploy
    assert "✅ demo pods pinned: 2 pods Running on master-0, master-2" in deploy
    found = re.search(r"✅ EXTERNAL-IP assigned: EXTERNAL-IP (\S+) is inside 172\.21\.6\.32/27", deploy)
    assert found and ipaddress.ip_address(found[1]) in ipaddress.ip_network("172.21.6.32/27")
    vip = found[1]
    assert re.search(rf"demo\s+LoadBalancer\s+172\.30\.\S+\s+{re.escape(vip)},{re.escape(vip)}\s+80:\d+/TCP", deploy)

    cluster = connect(str(lab.kubeconfig))
    network_before = network.read_network(cluster)["spec"]

    second = run_all(lab, tmp_path / "second")
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
    assert network.read_network(cluster)["spec"] == network_before


def test_lab_flag_starts_a_fresh_lab_and_always_stops_it(tmp_path: Path) -> None:
    lab_args = ["--lab", "--lab-prefix", PREFIX, "--lab-state-dir", str(STATE_DIR)]
    result = kalab("run", "--only", "00", "--out", str(tmp_path), *lab_args)
    assert result.returncode == 0, result.stderr
    assert f"kubeconfig    {STATE_DIR}/kubeconfig" in outputs_text(tmp_path / "00-connect.ipynb")
    assert not STATE_DIR.exists() and lab_namespaces() == []

    # A failing notebook still stops the lab.
    failed = kalab("run", "--only", "02", "--out", str(tmp_path), *lab_args, "-p", "auto_assign_cidr=172.30.0.0/24")
    assert failed.returncode == 1 and "02-externalip-cidr.ipynb failed" in failed.stderr
    assert not STATE_DIR.exists() and lab_namespaces() == []

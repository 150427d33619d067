"""`kalab lab reset` and kalab.cluster.stages on the session's shared lab: up and down between the runbook's stages,
each time reading back from the cluster what that stage means (not just the exit code)."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest

from kalab.cluster import demo, keepalived, network, nodes, olm, scc, stages
from kalab.cluster.connect import Cluster
from kalab.model.errors import KalabError
from tests.support.kalabcli import one_stderr_line, run_kalab, run_kalab_here
from tests.support.labs import SharedLab
from tests.support.markers import needs_lab_tools
from tests.support.waiting import wait_for

pytestmark = needs_lab_tools("keepalived", "iptables-restore", "ip", "curl")
NS = "keepalived-operator"
LB = nodes.LOADBALANCER_LABEL
BLOCK = ipaddress.ip_network("172.21.6.32/27")


def _namespaced(cluster: Cluster, plural: str) -> list[str]:
    found: Any = cluster.custom.list_namespaced_custom_object(olm.OLM_GROUP, olm.OLM_VERSION, NS, plural)
    return sorted(item["metadata"]["name"] for item in found["items"])


def operator_cluster_roles(cluster: Cluster) -> list[Any]:
    return list(cluster.rbac.list_cluster_role(label_selector=f"olm.owner.namespace={NS}").items)


def facts(cluster: Cluster, journal: Path) -> dict[str, Any]:
    """What the stages differ in, read straight from the cluster's objects."""
    namespaces = {ns.metadata.name for ns in cluster.core.list_namespace().items}
    table = nodes.nodes(cluster)
    operator_rbac = operator_cluster_roles(cluster)
    pods = keepalived.keepalived_pods(cluster) if NS in namespaces else None
    ready = [] if pods is None else sorted(pods[(pods["phase"] == "Running") & pods["ready"]]["node"])
    demo_pods = demo.demo_pods(cluster) if "demo" in namespaces else None
    return {
        "operator namespace": NS in namespaces,
        "subscriptions": _namespaced(cluster, "subscriptions") if NS in namespaces else [],
        "csvs": len(_namespaced(cluster, "clusterserviceversions")) if NS in namespaces else 0,
        "operator cluster roles": len(operator_rbac),
        "labelled": sorted(n for n, labels in zip(table["name"], table["labels"], strict=True) if LB in labels),
        "group": _group_exists(cluster),
        "privileged": scc.has_privileged(cluster, NS),
        "keepalived ready on": ready,
        "externalIP": network.read_external_ip(cluster),
        "journal": journal.exists(),
        "demo namespace": "demo" in namespaces,
        "demo pods on": None if demo_pods is None else sorted(demo_pods[demo_pods["phase"] == "Running"]["node"]),
    }


def _group_exists(cluster: Cluster) -> bool:
    try:
        keepalived.group_status(cluster)
    except KalabError:
        return False
    return True


def facts_at(cluster: Cluster, journal: Path, stage: str) -> dict[str, Any]:
    """facts() once OLM has caught up with the stage: OLM itself deletes the operator's ClusterRoles when it sees the
    CSV gone, after reset has deleted it (reset waits for the namespace, not for OLM), so they may outlive it."""
    roles = expected(stage)["operator cluster roles"]
    wait_for(lambda: len(operator_cluster_roles(cluster)) == roles, 15, f"{roles} operator ClusterRole(s)", 0.1)
    return facts(cluster, journal)


def expected(stage: str, cidr: str = "172.21.6.33/27") -> dict[str, Any]:
    at = stages.stage_index(stage)
    installed, patched, deployed = at >= 1, at >= 2, at >= 3
    return {
        "operator namespace": installed,
        "subscriptions": ["keepalived-operator"] if installed else [],
        "csvs": 1 if installed else 0,
        "operator cluster roles": 1 if installed else 0,
        "labelled": ["master-1", "master-2"] if installed else [],
        "group": installed,
        "privileged": installed,
        "keepalived ready on": ["master-1", "master-2"] if installed else [],
        "externalIP": {"policy": {"allowedCIDRs": [cidr]}, "autoAssignCIDRs": [cidr]} if patched else None,
        "journal": patched,
        "demo namespace": deployed,
        "demo pods on": ["master-0", "master-2"] if deployed else None,
    }


def reset(shared_lab: SharedLab, stage: str, as_a_user: bool = False) -> dict[str, Any]:
    """`kalab lab reset --to STAGE --json` on the shared lab, found by its name: the real command when `as_a_user`,
    else its main() in this process (the same code without a Python start-up and its imports, 1.5 s a call)."""
    argv = ("lab", "reset", "--name", shared_lab.info.name, "--to", stage, "--json")
    result = run_kalab(*argv, timeout=180) if as_a_user else run_kalab_here(*argv)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    said: dict[str, Any] = json.loads(result.stdout)
    assert said["name"] == shared_lab.info.name and said["stage"] == stage
    return said


def holds_vip(cluster: Cluster, node: str, vip: str) -> bool:
    """Whether `vip` sits on the node's interfaces (read with `ip -j addr` in its keepalived pod)."""
    frame = nodes.node_interfaces(cluster, node)
    return vip in frame["address"].tolist()


def test_reset_goes_up_and_down_between_the_stages(shared_lab: SharedLab) -> None:
    cluster, journal = shared_lab.cluster, shared_lab.runbook.journal
    assert journal == shared_lab.info.state_dir / "externalip-undo.json"  # where notebook 02 keeps it in a lab

    reset(shared_lab, "fresh")  # whatever modules ran before left it at some stage
    assert facts_at(cluster, journal, "fresh") == expected("fresh")
    again = reset(shared_lab, "fresh")
    assert again["changes"] == [] and again["vip"] is None

    up = reset(shared_lab, "deployed", as_a_user=True)
    assert facts_at(cluster, journal, "deployed") == expected("deployed")
    assert any("installed the operator" in line for line in up["changes"]), up["changes"]
    assert ipaddress.ip_address(up["vip"]) in BLOCK and up["holder"] in ("master-1", "master-2")
    assert demo.service_vip(cluster, timeout=1) == up["vip"]
    # The exporter's MASTER (what reset waited for) really holds the address; the other node does not.
    other = "master-2" if up["holder"] == "master-1" else "master-1"
    assert holds_vip(cluster, up["holder"], up["vip"]) and not holds_vip(cluster, other, up["vip"])
    assert json.loads(journal.read_text())["externalIP"] is None  # the original: absent
    assert reset(shared_lab, "deployed")["changes"] == []

    down = reset(shared_lab, "patched")  # undoes 03: only the demo goes
    assert facts_at(cluster, journal, "patched") == expected("patched")
    assert down["changes"] == ["deleted the demo (namespace demo and everything in it)"]
    down = reset(shared_lab, "installed")  # undoes 02: the network as the journal recorded it
    assert facts_at(cluster, journal, "installed") == expected("installed")
    assert down["changes"] == ["restored the original spec.externalIP (absent)"]

    reset(shared_lab, "patched")
    assert facts_at(cluster, journal, "patched") == expected("patched")
    reset(shared_lab, "fresh")  # undoes 02 and 01
    assert facts_at(cluster, journal, "fresh") == expected("fresh")
    assert reset(shared_lab, "installed")["vip"] is None
    assert facts_at(cluster, journal, "installed") == expected("installed")


def test_stages_through_the_module_with_other_parameters(shared_lab: SharedLab) -> None:
    """The stages take the notebooks' parameters: here the seed's CIDRs in network form and one loadbalancer node."""
    cluster, journal = shared_lab.cluster, shared_lab.runbook.journal
    runbook = stages.Runbook(
        journal,
        loadbalancer_nodes=("master-2",),
        allowed_cidr="172.21.6.32/27",
        auto_assign_cidr="172.21.6.32/27",
        timeout=60,
    )
    steps: list[str] = []
    done = stages.reset(cluster, "patched", runbook, progress=steps.append)
    assert done.changes == steps and done.vip is None
    assert nodes.nodes(cluster).set_index("name")["labels"].map(lambda labels: LB in labels).to_dict() == {
        "master-0": False,
        "master-1": False,
        "master-2": True,
    }
    pods = keepalived.keepalived_pods(cluster)
    assert pods["node"].tolist() == ["master-2"] and pods["ready"].all()
    assert network.read_external_ip(cluster) == {
        "policy": {"allowedCIDRs": ["172.21.6.32/27"]},
        "autoAssignCIDRs": ["172.21.6.32/27"],
    }
    stages.reset(cluster, "installed", runbook)
    assert network.read_external_ip(cluster) is None and not journal.exists()


def test_reset_converges_what_an_attendee_changed(shared_lab: SharedLab) -> None:
    """A node labelled by hand loses the label and demo pods pinned elsewhere move back: reset leaves the stage as
    the notebooks describe it, not merely "something deployed". (Last: the modules after this one want `deployed`.)"""
    cluster, journal = shared_lab.cluster, shared_lab.runbook.journal
    reset(shared_lab, "installed")
    nodes.label_nodes(cluster, ["master-0"])
    network.patch_external_ip(cluster, "172.21.6.33/27", "172.21.6.33/27", journal=journal)
    demo.deploy_demo(cluster, nodes=("master-0", "master-1"), timeout=60)

    said = reset(shared_lab, "deployed")
    assert facts_at(cluster, journal, "deployed") == expected("deployed")
    assert any(line.startswith(f"{LB}: removed the label from master-0") for line in said["changes"]), said
    assert "deleted Pod test-1 to move it from master-1 to master-2" in said["changes"]


def test_bad_stage_and_missing_lab_are_one_sentence(shared_lab: SharedLab) -> None:
    bad = run_kalab("lab", "reset", "--name", shared_lab.info.name, "--to", "halfway")
    assert bad.returncode != 0
    assert (
        one_stderr_line(bad) == 'kalab: error: There is no stage "halfway"; pick one of fresh, installed, '
        "patched, deployed."
    )
    missing = run_kalab("lab", "reset", "--name", "t-nolab", "--to", "fresh")
    assert missing.returncode != 0
    assert one_stderr_line(missing) == (
        "kalab: error: The lab t-nolab is not running; start it with `kalab lab up --name t-nolab`."
    )
    with pytest.raises(KalabError, match='no stage "up"'):
        stages.stage_index("up")

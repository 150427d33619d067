"""kalab.cluster's verbs against a real lab, in the seed's order, and the error paths a user can reach."""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kalab.cluster import demo, exporter, keepalived, network, nodes, olm, pods, scc, trace
from kalab.cluster.connect import Cluster, connect
from kalab.lab import control
from kalab.lab.dataplane.naming import POD_INTERFACE
from kalab.model.errors import KalabError
from tests.support.kalabcli import one_sentence
from tests.support.labs import running_lab
from tests.support.markers import needs_lab_tools
from tests.support.waiting import wait_for

pytestmark = needs_lab_tools("keepalived", "iptables-restore", "ip", "curl")
LAB = "t-verbs"
NS = "keepalived-operator"


@pytest.fixture(scope="module")
def lab() -> Iterator[control.LabInfo]:
    with running_lab(LAB) as info:
        yield info


@pytest.fixture(scope="module")
def cluster(lab: control.LabInfo) -> Cluster:
    return connect(str(lab.kubeconfig))


@pytest.fixture
def journal_path() -> Iterator[Path]:
    path = Path("/tmp") / f"kalab-t{os.getpid()}-cl-journal.json"
    path.unlink(missing_ok=True)
    yield path
    path.unlink(missing_ok=True)


def test_connect(lab: control.LabInfo, cluster: Cluster, tmp_path: Path) -> None:
    assert cluster.server == lab.api and cluster.context and cluster.is_openshift()
    frame = nodes.nodes(cluster)
    assert frame["name"].tolist() == ["master-0", "master-1", "master-2"]
    assert frame["internal_ip"].tolist() == ["192.168.7.13", "192.168.7.14", "192.168.7.15"]
    assert frame["ready"].all()

    with pytest.raises(KalabError, match="kalab lab up") as missing:
        connect(str(tmp_path / "nope"))
    one_sentence(missing)

    config = lab.kubeconfig.read_text()
    unreachable = tmp_path / "unreachable"
    unreachable.write_text(config.replace(str(lab.api), "https://127.0.0.1:9"))
    with pytest.raises(KalabError, match="Cannot reach the API server") as down:
        connect(str(unreachable))
    one_sentence(down)

    with pytest.raises(KalabError, match="no context") as ctx:
        connect(str(lab.kubeconfig), context="nope")
    one_sentence(ctx)


def test_the_seed_through_the_verbs(lab: control.LabInfo, cluster: Cluster, journal_path: Path) -> None:
    steps: list[str] = []

    # Install through OLM, twice: the second run changes nothing and returns at once.
    csv = olm.install_operator(cluster, timeout=60, progress=steps.append)
    assert any("Succeeded" in s for s in steps) and any("Pending" in s or "Installing" in s for s in steps)
    assert olm.install_operator(cluster, timeout=10) == csv

    # Label the loadbalancer nodes.
    assert nodes.label_nodes(cluster, ["master-2", "master-1"]) == ["master-2", "master-1"]
    labelled = nodes.nodes(cluster).set_index("name")["labels"]
    assert [n for n, lbl in labelled.items() if nodes.LOADBALANCER_LABEL in lbl] == ["master-1", "master-2"]
    with pytest.raises(KalabError, match="Unknown node master-9") as unknown:
        nodes.label_nodes(cluster, ["master-9"])
    one_sentence(unknown)

    # The group's DaemonSet fails before the SCC grant, and runs after it.
    keepalived.apply_keepalived_group(cluster, interface=POD_INTERFACE)
    again: list[str] = []
    keepalived.apply_keepalived_group(cluster, interface=POD_INTERFACE, progress=again.append)
    assert again == [f"KeepalivedGroup {NS}/keepalivedgroup-workers is already up to date"]
    wait_for(lambda: not keepalived.daemonset_events(cluster).empty, 30, "FailedCreate events", 0.1)
    events = keepalived.daemonset_events(cluster)
    assert "unable to validate against any security context constraint" in events["message"].iloc[0]
    assert keepalived.keepalived_pods(cluster).empty
    assert not scc.has_privileged(cluster, NS)
    with pytest.raises(KalabError, match="FailedCreate") as no_pods:
        keepalived.wait_keepalived_pods(cluster, 2, timeout=0.5)
    one_sentence(no_pods)

    assert scc.grant_privileged(cluster, NS) == "users"
    assert scc.grant_privileged(cluster, NS) == "users"  # idempotent: the user appears once
    users = cluster.dynamic.resources.get(api_version="security.openshift.io/v1", kind="SecurityContextConstraints")
    assert users.get(name="privileged").to_dict()["users"].count(f"system:serviceaccount:{NS}:default") == 1
    assert scc.has_privileged(cluster, NS)
    kpods = keepalived.wait_keepalived_pods(cluster, 2, timeout=30)
    assert kpods["node"].tolist() == ["master-1", "master-2"] and kpods["ready"].all()
    assert kpods["host_ip"].tolist() == ["192.168.7.14", "192.168.7.15"]

    # The RBAC form, on another namespace's account: a RoleBinding, created once.
    assert scc.grant_privileged(cluster, NS, "kalab-rbac", form="rbac") == "rbac"
    assert scc.grant_privileged(cluster, NS, "kalab-rbac", form="rbac") == "rbac"
    assert scc.has_privileged(cluster, NS, "kalab-rbac")

    # The node's interfaces through exec into its keepalived pod.
    ifaces = nodes.node_interfaces(cluster, "master-2")
    assert "192.168.7.15" in ifaces[ifaces["interface"] == POD_INTERFACE]["address"].tolist()
    with pytest.raises(KalabError, match="No running hostNetwork pod on master-0") as no_host:
        nodes.node_interfaces(cluster, "master-0")
    one_sentence(no_host)

    # The externalIP patch: bad CIDRs block, dry run changes nothing, the journal and undo restore exactly.
    original = network.read_network(cluster)["spec"]
    with pytest.raises(KalabError) as bad:
        network.patch_external_ip(cluster, "172.21.6.300/27", "172.21.6.32/27", journal=journal_path)
    one_sentence(bad)
    with pytest.raises(KalabError, match="overlaps the service network") as clash:
        network.patch_external_ip(cluster, "172.30.0.0/16", "172.30.0.0/24", journal=journal_path)
    one_sentence(clash)
    assert not journal_path.exists()
    dry = network.patch_external_ip(cluster, "172.21.6.33/27", "172.21.6.33/27", dry_run=True, journal=journal_path)
    assert dry.dry_run and not dry.applied and dry.server_dry_run
    assert dry.changes == [
        (network.ALLOWED_PATH, None, ["172.21.6.33/27"]),
        (network.AUTO_PATH, None, ["172.21.6.33/27"]),
    ]
    assert any("host bits" in w for w in dry.warnings)
    assert network.read_network(cluster)["spec"] == original and not journal_path.exists()
    done = network.patch_external_ip(cluster, "172.21.6.33/27", "172.21.6.33/27", journal=journal_path)
    assert done.applied and json.loads(journal_path.read_text())["externalIP"] is None
    assert network.read_external_ip(cluster) == {
        "policy": {"allowedCIDRs": ["172.21.6.33/27"]},
        "autoAssignCIDRs": ["172.21.6.33/27"],
    }
    assert network.diff_patch(cluster, "172.21.6.33/27", "172.21.6.33/27") == []
    # A second patch keeps the first journal entry: undo goes back to the very original.
    network.patch_external_ip(cluster, "172.21.6.32/27", "172.21.6.32/27", journal=journal_path)
    assert json.loads(journal_path.read_text())["externalIP"] is None
    assert network.undo_external_ip(cluster, journal_path) is None
    assert network.read_network(cluster)["spec"] == original and not journal_path.exists()
    with pytest.raises(KalabError, match="no undo journal") as no_journal:
        network.undo_external_ip(cluster, journal_path)
    one_sentence(no_journal)

    # Without the CIDRs the demo's service stays pending; with them it gets a VIP from 172.21.6.32/27.
    with pytest.raises(KalabError, match="no service") as no_svc:
        demo.service_vip(cluster, timeout=0.2)
    one_sentence(no_svc)
    with pytest.raises(KalabError, match="Unknown node master-7"):
        demo.deploy_demo(cluster, nodes=("master-0", "master-7"))
    running = demo.deploy_demo(cluster, timeout=60)
    assert sorted(running["node"]) == ["master-0", "master-2"] and (running["phase"] == "Running").all()
    assert demo.deploy_demo(cluster, timeout=10)["pod"].tolist() == running["pod"].tolist()  # idempotent
    with pytest.raises(KalabError, match="EXTERNAL-IP pending") as pending:
        demo.service_vip(cluster, timeout=1)
    one_sentence(pending)
    network.patch_external_ip(cluster, "172.21.6.33/27", "172.21.6.33/27", journal=journal_path)
    vip = demo.service_vip(cluster, timeout=30)
    assert ipaddress.ip_address(vip) in ipaddress.ip_network("172.21.6.32/27")

    # exec and logs; exec returns a failing command's exit code; a missing pod is one sentence.
    pod = kpods["pod"].iloc[0]
    result = pods.exec_in_pod(cluster, NS, pod, ["sh", "-c", "echo out; echo err >&2; exit 3"], container="keepalived")
    assert (result.stdout, result.stderr, result.code) == ("out\n", "err\n", 3)
    assert pods.exec_in_pod(cluster, NS, pod, ["true"], container="keepalived").ok
    assert "keepalived" in pods.pod_logs(cluster, NS, pod, container="keepalived").lower()
    assert len(pods.pod_logs(cluster, NS, pod, container="keepalived", tail=1).strip().splitlines()) <= 1
    with pytest.raises(KalabError, match='no pod "nope"') as no_pod:
        pods.exec_in_pod(cluster, NS, "nope", ["true"])
    one_sentence(no_pod)
    with pytest.raises(KalabError, match='no pod "nope"'):
        pods.pod_logs(cluster, NS, "nope")

    # The exporter through the API proxy: exactly one MASTER for demo/demo.
    def one_master() -> tuple[Any, ...] | bool:
        states = exporter.vrrp_states(cluster)
        demo_states = states[states["instance"] == "demo/demo"]
        return sorted(demo_states["state"]) == ["BACKUP", "MASTER"] and (demo_states,)

    (states,) = wait_for(one_master, 30, "one MASTER and one BACKUP", 0.5)
    assert sorted(states["node"]) == ["master-1", "master-2"]
    frame = exporter.scrape(cluster, pod)
    assert {"pod", "node", "scraped_at"} <= set(frame.columns) and (frame["pod"] == pod).all()
    assert frame[frame["metric"] == "keepalived_up"]["value"].tolist() == [1.0]
    with pytest.raises(KalabError, match='no pod "nope"') as no_scrape:
        exporter.scrape(cluster, "nope")
    one_sentence(no_scrape)
    assert keepalived.group_status(cluster)["routerIDs"] == {"demo/demo": 1}

    # The seed's KUBE-FW chain on master-2 and both endpoints.
    endpoints = {f"{ip}:80" for ip in running["pod_ip"]}

    fw = "KUBE-FW-ZFZLPEKTCJ3DBGAL"

    def fw_rule() -> str | None:
        nat = trace.node_nat_table(cluster, "master-2").table("nat")
        rules = [r.text for r in nat.chains["KUBE-SERVICES"].rules if r.target == fw]
        return rules[0] if rules else None

    rule = wait_for(fw_rule, 30, "the KUBE-FW rule on master-2", 0.5)
    assert vip in rule and "demo/demo:http loadbalancer IP" in rule and "80" in rule
    for start in (None, fw):
        found = trace.trace_vip(cluster, "master-2", vip, start=start)
        assert {d.endpoint for d in found.destinations} == endpoints
        assert sum(d.probability for d in found.destinations) == pytest.approx(1.0)
        assert all("KUBE-SVC-ZFZLPEKTCJ3DBGAL" in d.path for d in found.destinations)
    assert all(d.path[0] == fw for d in found.destinations)
    with pytest.raises(KalabError, match="Unknown node"):
        trace.trace_vip(cluster, "master-9", vip)

    # The pickers' meaning: exactly the chosen nodes carry the role (a deselected node loses it and its keepalived),
    # an empty choice is refused, and the demo's pods follow the nodes chosen for them.
    change = nodes.set_label_on(cluster, ["master-1"])
    assert (change.added, change.removed, change.kept) == ([], ["master-2"], ["master-1"])
    assert keepalived.wait_keepalived_pods(cluster, 1, timeout=60, on=["master-1"])["node"].tolist() == ["master-1"]
    with pytest.raises(KalabError, match="Pick at least one node") as empty:
        nodes.set_label_on(cluster, [])
    one_sentence(empty)
    assert nodes.set_label_on(cluster, ["master-1", "master-2"]).added == ["master-2"]
    keepalived.wait_keepalived_pods(cluster, 2, timeout=60, on=["master-1", "master-2"])
    three = demo.deploy_demo(cluster, nodes=["master-0", "master-1", "master-2"], timeout=60)
    assert sorted(three["node"]) == ["master-0", "master-1", "master-2"]
    moves: list[str] = []
    demo.deploy_demo(cluster, nodes=["master-1", "master-0"], timeout=60, progress=moves.append)
    assert "deleted Pod test-0 to move it from master-0 to master-1" in moves
    assert "deleted Pod test-2 (no pod is wanted on master-2 now)" in moves
    assert demo.pinned_nodes(cluster) == {"test-0": "master-1", "test-1": "master-0"}
    placed = demo.deploy_demo(cluster, timeout=60)  # back to the seed's master-0 and master-2
    assert dict(zip(placed["pod"], placed["node"], strict=True)) == {"test-0": "master-0", "test-1": "master-2"}

    # Cleanup: the seed's "to restore", then undo the network patch.
    demo.cleanup_demo(cluster, timeout=30)
    assert demo.demo_pods(cluster).empty
    with pytest.raises(KalabError, match="no service"):
        demo.service_vip(cluster, timeout=0.2)
    network.undo_external_ip(cluster, journal_path)
    assert network.read_network(cluster)["spec"] == original

"""kalab.cluster.diagnose against a seeded lab: healthy means every check ok; then each symptom, caused and undone.

Every break goes through the lab's API (node labels, services, the network config, exec into a keepalived pod) and
is undone in the same test, which then waits until the whole diagnosis is ok again.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

import pandas as pd
import pytest

from kalab.cluster import demo, diagnose, keepalived, network, nodes, pods
from kalab.cluster.connect import Cluster
from kalab.cluster.diagnose import NO_PODS, NOWHERE, PENDING, TWO_NODES, Finding, exercise
from kalab.model.errors import KalabError
from kalab.model.operator import GROUP_ANNOTATION
from tests.cluster.seeded import SeededLab, seeded_lab
from tests.support.kalabcli import one_sentence, one_stderr_line, run_kalab
from tests.support.labs import SharedLab
from tests.support.markers import needs_lab_tools
from tests.support.waiting import wait_for

pytestmark = needs_lab_tools("keepalived", "iptables-restore", "ip", "curl")
NS = "keepalived-operator"
GROUP_REF = "keepalived-operator/keepalivedgroup-workers"
LB = "node-role.kubernetes.io/loadbalancer="


@pytest.fixture(scope="module")
def seeded(shared_lab: SharedLab) -> SeededLab:
    return seeded_lab(shared_lab)


@pytest.fixture
def scratch(seeded: SeededLab) -> Iterator[str]:
    namespace = diagnose.create_scratch_namespace(seeded.cluster)
    try:
        yield namespace
    finally:
        diagnose.delete_scratch_namespace(seeded.cluster, namespace, timeout=30)
        assert diagnose.namespace_phase(seeded.cluster, namespace) is None


def healthy(cluster: Cluster, settle: float = 0) -> list[Finding] | None:
    findings = diagnose.diagnose(cluster, settle=settle)
    return None if diagnose.problems(findings) else findings


def wait_healthy(cluster: Cluster, timeout: float = 60) -> list[Finding]:
    return wait_for(lambda: healthy(cluster), timeout, "every diagnosis check ok", 0.5)


def evidence(findings: list[Finding], check: str) -> str:
    found = [f.evidence for f in findings if f.check == check]
    assert len(found) == 1, f"{check!r} appears {len(found)} times"
    return found[0]


def with_problems(cluster: Cluster, namespace: str, name: str, symptom: str, checks: set[str]) -> list[Finding] | None:
    findings = diagnose.diagnose_vip(cluster, namespace, name, settle=0)
    return findings if {f.check for f in diagnose.problems(findings, symptom)} >= checks else None


# ------------------------------------------------------------------------------------------- healthy


def healthy_with_both_exporters(cluster: Cluster) -> list[Finding] | None:
    """Healthy, and both exporters list the instance: a keepalived reloading its config reports none for a moment."""
    findings = healthy(cluster)
    if findings is None or evidence(findings, "at most one MASTER").count(" on master-") != 2:
        return None
    return findings


def test_the_seeded_lab_is_ok_on_every_check_with_its_evidence(seeded: SeededLab) -> None:
    findings = wait_for(lambda: healthy_with_both_exporters(seeded.cluster), 60, "both exporters report", 0.5)
    frame = diagnose.table(findings)
    assert list(frame.columns) == diagnose.COLUMNS and (frame["status"] == "ok").all()
    assert set(frame["symptom"]) == set(diagnose.SYMPTOMS)
    assert (frame["what_to_do"] == "").all()
    assert diagnose.all_ok(findings) == f"all {len(findings)} checks ok"

    assert evidence(findings, "auto-assign block") == "autoAssignCIDRs 172.21.6.32/27 (network 172.21.6.32/27)"
    assert evidence(findings, "EXTERNAL-IP assigned") == f"demo/demo has EXTERNAL-IP {seeded.vip}"
    assert evidence(findings, "free addresses in the block") == "1 of 30 usable addresses of 172.21.6.32/27 in use"
    assert re.fullmatch(r"CSV keepalived-operator\.v[\d.]+ Succeeded", evidence(findings, "operator installed"))
    assert evidence(findings, "nodes match the nodeSelector") == f"master-1, master-2 carry {LB}"
    assert evidence(findings, "keepalived pods Ready") == "2 Running and Ready on master-1, master-2"
    assert evidence(findings, "a second node for failover") == "2 nodes can carry the VIPs: master-1, master-2"
    assert "may use SCC privileged" in evidence(findings, "privileged SCC")
    assert evidence(findings, "group annotation") == f"{GROUP_ANNOTATION}: {GROUP_REF}"
    assert evidence(findings, "instance in the group") == "demo/demo has router ID 1"
    assert evidence(findings, "nodes to carry the VIP") == "keepalived Ready on master-1, master-2"
    assert evidence(findings, "interface on the nodes") == "kalab-eth0 exists on master-1, master-2"
    master = re.fullmatch(r"MASTER on (master-[12])", evidence(findings, "a MASTER exists"))
    assert master is not None
    assert evidence(findings, "VIP on a node") == f"{seeded.vip} on {master[1]}"
    assert evidence(findings, "VIP on at most one node") == f"{seeded.vip} on {master[1]}"
    backup = "master-2" if master[1] == "master-1" else "master-1"
    by_node = sorted({master[1]: "MASTER", backup: "BACKUP"}.items())
    assert evidence(findings, "at most one MASTER") == "exporters: " + ", ".join(f"{s} on {n}" for n, s in by_node)
    with pytest.raises(KalabError, match='no "VIP nowhere" problem') as none:
        diagnose.expect_problem(findings, NOWHERE)
    one_sentence(none)


def test_missing_objects_are_findings_or_one_sentence(seeded: SeededLab) -> None:
    cluster = seeded.cluster
    missing = diagnose.diagnose_keepalived(cluster, group="nope")
    assert [f.check for f in diagnose.problems(missing)] == ["KeepalivedGroup exists"]
    assert "there is no KeepalivedGroup keepalived-operator/nope" in diagnose.expect_problem(missing, NO_PODS)
    expected = (
        "no keepalived pods, KeepalivedGroup exists: there is no KeepalivedGroup keepalived-operator/nope; create"
    )
    with pytest.raises(KalabError, match=expected) as first:
        diagnose.all_ok(missing)
    one_sentence(first)
    no_group = diagnose.diagnose_vip(cluster, group="nope")
    assert "there is no KeepalivedGroup keepalived-operator/nope" in diagnose.expect_problem(no_group, NOWHERE)

    with pytest.raises(KalabError, match="no service demo/nope") as no_svc:
        diagnose.diagnose_vip(cluster, name="nope")
    one_sentence(no_svc)
    with pytest.raises(KalabError, match="no service demo/nope"):
        diagnose.diagnose_external_ip(cluster, name="nope")
    # Namespaces without the scratch label are never deleted or used.
    for call in (diagnose.create_scratch_namespace, diagnose.delete_scratch_namespace):
        with pytest.raises(KalabError, match="not a scratch namespace of ours") as not_ours:
            call(cluster, "demo")
        one_sentence(not_ours)
    with pytest.raises(KalabError, match="not a scratch namespace of ours"):
        diagnose.create_scratch_service(cluster, "demo", "web")
    with pytest.raises(KalabError, match="no namespace kalab-nope") as no_ns:
        diagnose.create_scratch_service(cluster, "kalab-nope", "web")
    one_sentence(no_ns)
    assert diagnose.namespace_phase(cluster, "demo") == "Active"
    assert healthy(cluster) is not None


# ------------------------------------------------------------------------------------------- no keepalived pods


def test_unlabelled_nodes_leave_the_group_short_of_pods_and_then_without_any(seeded: SeededLab) -> None:
    cluster = seeded.cluster
    wait_healthy(cluster)
    try:
        nodes.unlabel_nodes(cluster, ["master-1"])
        wait_for(lambda: keepalived.keepalived_pods(cluster)["node"].tolist() == ["master-2"], 30, "one pod left", 0.2)
        one = diagnose.diagnose_keepalived(cluster)
        assert [f.check for f in diagnose.problems(one)] == ["a second node for failover"]
        assert evidence(one, "nodes match the nodeSelector") == f"master-2 carry {LB}"
        assert "keepalived runs only on master-2, so a VIP cannot fail over" in diagnose.expect_problem(one, NO_PODS)

        nodes.unlabel_nodes(cluster, ["master-2"])

        def without_pods() -> list[Finding] | None:
            # The DaemonSet controller writes its status after it has deleted the pods: wait for both.
            findings = diagnose.diagnose_keepalived(cluster)
            shown = (evidence(findings, "keepalived pods Ready"), evidence(findings, "DaemonSet exists"))
            wanted = ("the group has no keepalived pods", "DaemonSet keepalivedgroup-workers: desired 0, ready 0")
            return findings if shown == wanted else None

        none = wait_for(without_pods, 30, "no keepalived pod, and the DaemonSet's status saying so", 0.2)
        text = diagnose.expect_problem(none, NO_PODS)
        assert f"no node carries {LB}, so the DaemonSet schedules no pod" in text
        assert "the group has no keepalived pods" in text
        assert "keepalived runs on no node, so a VIP cannot fail over" in text
        assert evidence(none, "DaemonSet exists") == "DaemonSet keepalivedgroup-workers: desired 0, ready 0"
        # An old FailedCreate (from before the SCC grant) is no problem: the DaemonSet wants no pod.
        assert diagnose.problems(none, NO_PODS)[0].check == "nodes match the nodeSelector"
        vip = diagnose.diagnose_vip(cluster, settle=0)
        nowhere = diagnose.expect_problem(vip, NOWHERE)
        assert "nodes to carry the VIP: no keepalived pod of the group is Running and Ready" in nowhere
        assert f"VIP on a node: {seeded.vip} is on none of the keepalived nodes (no node)" in nowhere
    finally:
        nodes.label_nodes(cluster, ["master-1", "master-2"])
    wait_healthy(cluster)


# ------------------------------------------------------------------------------------------- VIP nowhere


def test_a_service_losing_its_group_annotation_has_its_vip_nowhere(seeded: SeededLab, scratch: str) -> None:
    cluster = seeded.cluster
    attempt = diagnose.create_scratch_service(cluster, scratch, "web", group=GROUP_REF)
    assert attempt.admitted and attempt.message == ""
    vip = demo.service_vip(cluster, scratch, "web", timeout=5)
    assert vip not in (seeded.vip, None)

    # A new instance needs a config reload (up to 5 s) and an election (about 4 s): the diagnosis waits for them.
    ok = diagnose.diagnose_vip(cluster, scratch, "web", settle=30)
    assert diagnose.all_ok(ok) == "all 8 checks ok"
    holder = evidence(ok, "a MASTER exists").removeprefix("MASTER on ")
    assert evidence(ok, "VIP on a node") == f"{vip} on {holder}"
    assert evidence(ok, "instance in the group") == f"{scratch}/web has router ID 2"

    cluster.core.patch_namespaced_service("web", scratch, {"metadata": {"annotations": {GROUP_ANNOTATION: None}}})
    checks = {"group annotation", "instance in the group", "a MASTER exists", "VIP on a node"}

    def reported_by_none() -> list[Finding] | None:
        # Each node's reloader drops the instance on its own 5 s tick: until both have, the other still reports it
        # (BACKUP, so "no MASTER yet"), and a keepalived mid-reload reports nothing; both are problems too, but
        # not the evidence asserted below.
        found = with_problems(cluster, scratch, "web", NOWHERE, checks)
        wanted = f"no keepalived instance reports {scratch}/web (the exporters list demo/demo)"
        return found if found and evidence(found, "a MASTER exists") == wanted else None

    gone = wait_for(reported_by_none, 30, "VIP nowhere, and no exporter reporting the instance", 0.5)
    text = diagnose.expect_problem(gone, NOWHERE)
    assert f"{scratch}/web has no {GROUP_ANNOTATION} annotation, so no KeepalivedGroup makes a VRRP instance" in text
    assert f"status.routerIDs of {GROUP_REF} has no entry for {scratch}/web (it lists demo/demo)" in text
    assert f"no keepalived instance reports {scratch}/web (the exporters list demo/demo)" in text
    assert f"{vip} is on none of the keepalived nodes (master-1, master-2)" in text
    assert not diagnose.problems(gone, TWO_NODES)
    fix = next(f.what_to_do for f in gone if f.check == "group annotation")
    assert fix == f"oc annotate svc web -n {scratch} {GROUP_ANNOTATION}={GROUP_REF}"
    # The service still has its EXTERNAL-IP: only the VIP's carrier is missing.
    assert diagnose.all_ok(diagnose.diagnose_external_ip(cluster, scratch, "web")) == "all 4 checks ok"
    # A keepalived reloading its config (just done on both nodes) answers no exporter scrape for a moment; the
    # diagnosis's settle looks again at exactly such problems, and only at those.
    assert healthy(cluster, settle=15) is not None


def test_symptoms_show_what_a_user_sees_healthy_and_with_the_vip_nowhere(seeded: SeededLab, scratch: str) -> None:
    cluster = seeded.cluster
    # Both exporters' states are asserted: wait out a config reload an earlier test set off.
    wait_for(lambda: healthy_with_both_exporters(cluster), 60, "both exporters report", 0.5)
    seen = dict(exercise.symptoms(cluster).itertuples(index=False))
    assert seen["oc get svc -n demo demo"] == f"EXTERNAL-IP {seeded.vip},{seeded.vip}"
    pods_seen = seen[f"oc get pods -n {NS} -l keepalivedGroup=keepalivedgroup-workers -o wide"]
    assert pods_seen == "2 of 2 ready: master-1 Running, master-2 Running"
    states = seen["the exporters' VRRP state (port 9650, through the pod proxy)"]
    assert sorted(states.split(", ")) in (
        ["master-1 BACKUP", "master-2 MASTER"],
        ["master-1 MASTER", "master-2 BACKUP"],
    )
    answered = re.fullmatch(
        r"(\d+) of (\d+) requests answered, from the lab's bastion .*",
        seen["curl http://VIP/ from where the clients are (1 s)"],
    )
    assert answered and answered[1] == answered[2] and int(answered[1]) >= 3

    # An EXTERNAL-IP that no keepalived carries: the curl goes unanswered, and no exporter knows the instance.
    diagnose.create_scratch_service(cluster, scratch, "stray")
    vip = demo.service_vip(cluster, scratch, "stray", timeout=5)
    # That is the ingress; the controller writes spec.externalIPs apart from it, and `oc get svc` shows both.
    shown = f"{vip},{vip}"
    wait_for(lambda: demo.service_table(cluster, scratch, "stray")["EXTERNAL-IP"].iloc[0] == shown, 5, shown, 0.1)
    seen = dict(exercise.symptoms(cluster, scratch, "stray").itertuples(index=False))
    assert seen[f"oc get svc -n {scratch} stray"] == f"EXTERNAL-IP {vip},{vip}"
    assert seen["the exporters' VRRP state (port 9650, through the pod proxy)"] == (
        f"no exporter reports an instance {scratch}/stray"
    )
    assert re.fullmatch(r"0 of \d+ requests answered, .*", seen["curl http://VIP/ from where the clients are (1 s)"])
    # A service that does not exist is one sentence in its row, and the other looks are still made.
    seen = dict(exercise.symptoms(cluster, scratch, "nothing-here").itertuples(index=False))
    assert seen[f"oc get svc -n {scratch} nothing-here"].startswith("could not look: ")
    assert seen["curl http://VIP/ from where the clients are (1 s)"] == "nothing to curl: no EXTERNAL-IP"
    assert "2 of 2 ready" in seen[f"oc get pods -n {NS} -l keepalivedGroup=keepalivedgroup-workers -o wide"]


# ------------------------------------------------------------------------------------------- EXTERNAL-IP pending


def test_an_external_ip_outside_allowed_cidrs_is_refused_and_explained(seeded: SeededLab, scratch: str) -> None:
    cluster = seeded.cluster
    attempt = diagnose.create_scratch_service(cluster, scratch, "outside", external_ips=["192.0.2.10"])
    assert not attempt.admitted and attempt.external_ips == ("192.0.2.10",)
    assert 'spec.externalIPs[0]: Invalid value: "192.0.2.10": externalIP is not allowed' in attempt.message
    assert cluster.core.list_namespaced_service(scratch).items == []
    findings = diagnose.diagnose_external_ip(cluster, attempt=attempt)
    assert [(f.check, f.status) for f in findings] == [
        ("auto-assign block", "ok"),
        ("API server admission", "problem"),
        ("requested externalIPs allowed", "problem"),
    ]
    text = diagnose.expect_problem(findings, PENDING)
    assert f"the API server refused {scratch}/outside with: {attempt.message.rstrip('.')}" in text
    assert "192.0.2.10 is outside allowedCIDRs 172.21.6.32/27" in text
    todo = findings[2].what_to_do
    assert todo.startswith("request an address inside allowedCIDRs 172.21.6.32/27")

    inside = diagnose.create_scratch_service(cluster, scratch, "inside", external_ips=["172.21.6.40"], kind="ClusterIP")
    assert inside.admitted
    admitted = diagnose.diagnose_external_ip(cluster, attempt=inside)
    assert diagnose.all_ok(admitted) == "all 5 checks ok"
    assert evidence(admitted, "requested externalIPs allowed") == "172.21.6.40 inside allowedCIDRs 172.21.6.32/27"
    assert evidence(admitted, "free addresses in the block") == "2 of 30 usable addresses of 172.21.6.32/27 in use"


def test_an_exhausted_block_leaves_the_next_service_pending(seeded: SeededLab, scratch: str) -> None:
    cluster = seeded.cluster
    assert seeded.vip == "172.21.6.33"
    networks = cluster.dynamic.resources.get(api_version="config.openshift.io/v1", kind="Network")
    original = network.read_external_ip(cluster)
    assert original is not None
    try:
        # A /30 holds two usable addresses: the demo's .33 and one more.
        small = {"spec": {"externalIP": {"autoAssignCIDRs": ["172.21.6.32/30"]}}}
        networks.patch(name="cluster", body=small, content_type="application/merge-patch+json")
        assert diagnose.create_scratch_service(cluster, scratch, "first").admitted
        assert diagnose.create_scratch_service(cluster, scratch, "second", timeout=0).admitted

        def pending_with_event() -> list[Finding] | None:
            findings = diagnose.diagnose_external_ip(cluster, scratch, "second")
            return findings if "IngressIPRangeFull" in evidence(findings, "EXTERNAL-IP assigned") else None

        findings = wait_for(pending_with_event, 15, "the second service pending with an event", 0.25)
        text = diagnose.expect_problem(findings, PENDING)
        held = f"172.21.6.33 by demo/demo, 172.21.6.34 by {scratch}/first"
        assert f"all 2 usable addresses of 172.21.6.32/30 are held ({held})" in text
        assert f"{scratch}/second is <pending>: the block 172.21.6.32/30 is exhausted" in text
        assert f"IngressIPRangeFull: No available ingress ip to allocate to service {scratch}/second" in text
        assert diagnose.table(findings)["status"].tolist() == ["ok", "ok", "problem", "problem"]
        assert diagnose.all_ok(diagnose.diagnose_external_ip(cluster)) == "all 4 checks ok"  # the demo keeps .33
    finally:
        networks.patch(
            name="cluster", body={"spec": {"externalIP": original}}, content_type="application/merge-patch+json"
        )
    assert network.read_external_ip(cluster) == original
    assert demo.service_vip(cluster, scratch, "second", timeout=10) == "172.21.6.35"
    assert demo.service_vip(cluster, timeout=1) == seeded.vip


# ------------------------------------------------------------------------------------------- VIP on two nodes


def test_dropping_vrrp_adverts_on_both_nodes_puts_the_vip_on_both(seeded: SeededLab) -> None:
    """Split brain, through the API: exec into each node's hostNetwork keepalived pod and drop VRRP (protocol 112)
    in that node's INPUT chain; both instances stop hearing each other and both become MASTER."""
    cluster = seeded.cluster
    wait_healthy(cluster)
    rule = ["INPUT", "-p", "112", "-j", "DROP"]
    inserted: list[str] = []
    try:
        for pod in keepalived.keepalived_pods(cluster)["pod"]:
            assert pods.exec_in_pod(cluster, NS, pod, ["iptables", "-w", "-I", *rule], container="keepalived").ok
            inserted.append(pod)
        checks = {"at most one MASTER", "VIP on at most one node"}
        split = wait_for(lambda: with_problems(cluster, "demo", "demo", TWO_NODES, checks), 20, "split brain", 0.5)
        text = diagnose.expect_problem(split, TWO_NODES)
        assert "demo/demo is MASTER on master-1, master-2 at once (split brain)" in text
        assert f"{seeded.vip} is on master-1, master-2 (split brain)" in text
        assert not diagnose.problems(split, NOWHERE)
        assert all(f.what_to_do == diagnose.SPLIT_BRAIN_TODO for f in diagnose.problems(split))
    finally:
        for pod in inserted:
            assert pods.exec_in_pod(cluster, NS, pod, ["iptables", "-w", "-D", *rule], container="keepalived").ok
    wait_healthy(cluster, 30)


# ------------------------------------------------------------------------------------------- pure findings


def frames(**held: list[str]) -> dict[str, pd.DataFrame]:
    """Each node's `ip addr` rows: lo, the node's own address, and the VIPs it holds."""
    found = {}
    for node, ips in held.items():
        rows = [("lo", "127.0.0.1"), ("kalab-eth0", "192.168.7.1"), *(("kalab-eth0", ip) for ip in ips)]
        found[node] = pd.DataFrame(rows, columns=["interface", "address"])
    return found


def states(*rows: tuple[str, str]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"pod": f"kg-{node}", "node": node, "instance": "demo/demo", "state": state} for node, state in rows],
        columns=["pod", "node", "instance", "state"],
    )


def test_a_stale_address_is_told_apart_from_split_brain() -> None:
    vip = "172.21.6.33"
    both = frames(**{"master-1": [vip], "master-2": [vip]})
    stale = diagnose.placement_findings(
        ["demo/demo"], [vip], states(("master-1", "BACKUP"), ("master-2", "MASTER")), both
    )
    assert [f.check for f in diagnose.problems(stale)] == ["VIP on at most one node"]
    problem = diagnose.problems(stale)[0]
    assert problem.symptom == TWO_NODES
    assert "master-1 is not MASTER, so its copy is a stale address left by a keepalived that died" in problem.evidence
    assert problem.what_to_do.startswith("delete the keepalived pod on master-1")

    fault = diagnose.placement_findings(
        ["demo/demo"],
        [vip],
        states(("master-1", "FAULT"), ("master-2", "FAULT")),
        frames(**{"master-1": [], "master-2": []}),
    )
    assert [f.check for f in diagnose.problems(fault)] == ["a MASTER exists", "VIP on a node"]
    assert diagnose.problems(fault)[0].evidence == "FAULT on master-1, FAULT on master-2"
    assert "spec.interface" in diagnose.problems(fault)[0].what_to_do

    wrong = diagnose.interface_finding({"interface": "ens3"}, frames(**{"master-1": [vip]}))
    assert not wrong.ok and wrong.evidence == "interface ens3 does not exist on master-1 (master-1 has kalab-eth0, lo)"
    assert diagnose.interface_finding({"interface": "", "interfaceFromIP": "192.168.7.1"}, {}).ok


def test_policy_and_block_findings() -> None:
    policy = {"policy": {"allowedCIDRs": ["172.21.6.33/27"], "rejectedCIDRs": ["172.21.6.40/29"]}}
    assert diagnose.policy_refusal("172.21.6.34", policy) is None
    assert diagnose.policy_refusal("172.21.6.41", policy) == "172.21.6.41 is inside rejectedCIDRs 172.21.6.40/29"
    assert diagnose.policy_refusal("10.0.0.1", policy) == "10.0.0.1 is outside allowedCIDRs 172.21.6.32/27"
    assert "lists no allowedCIDRs" in str(diagnose.policy_refusal("10.0.0.1", {}))
    assert diagnose.policy_refusal("nope", policy) == "nope is not an IP address"

    none = diagnose.block_finding(None)
    assert not none.ok and "autoAssignCIDRs of network.config/cluster is not set" in none.evidence
    svc = {"metadata": {"name": "demo", "namespace": "demo"}, "spec": {"type": "LoadBalancer"}, "status": {}}
    pending = diagnose.assigned_finding(svc, None, full=False)
    assert pending.evidence == "demo/demo is <pending>: autoAssignCIDRs is not set"
    assert pending.what_to_do == "patch the externalIP CIDRs (notebook 02)"
    plain = diagnose.assigned_finding({**svc, "spec": {"type": "ClusterIP"}}, policy, full=False)
    assert not plain.ok and "is type ClusterIP without spec.externalIPs" in plain.evidence

    block = ipaddress.IPv4Network("172.21.6.32/30")
    full = diagnose.usage_finding(block, {"172.21.6.33": "a/a", "172.21.6.34": "b/b", "10.0.0.1": "c/c"}, True)
    held = "172.21.6.33 by a/a, 172.21.6.34 by b/b"
    assert not full.ok and full.evidence == f"all 2 usable addresses of 172.21.6.32/30 are held ({held})"
    assert diagnose.usage_finding(block, {"172.21.6.33": "a/a", "172.21.6.34": "b/b"}, False).ok


def test_old_failed_create_events_matter_only_while_pods_are_missing() -> None:
    message = "Error creating: unable to validate against any security context constraint."
    events = pd.DataFrame([{"object": "DaemonSet/kg", "reason": "FailedCreate", "message": message, "count": 1}])
    assert diagnose.failed_create_finding(events, "kg", short=False).ok
    short = diagnose.failed_create_finding(events, "kg", short=True)
    assert not short.ok and short.evidence.endswith("unable to validate against any security context constraint")
    assert diagnose.failed_create_finding(events, "other", short=True).ok


def test_kalab_doctor_diagnoses_a_clusters_service(seeded: SeededLab) -> None:
    healthy = run_kalab("doctor", "--kubeconfig", str(seeded.info.kubeconfig))
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "✅ vip-nowhere demo/demo: " in healthy.stdout and "all checks ok" in healthy.stdout
    missing = run_kalab("doctor", "--kubeconfig", str(seeded.info.kubeconfig), "--service", "nope")
    assert missing.returncode == 1 and "There is no service demo/nope to diagnose" in one_stderr_line(missing)
    by_name = run_kalab("doctor", "--name", seeded.info.name)  # the lab's own kubeconfig, found by its name
    assert by_name.returncode == 0 and f"The cluster at {seeded.info.api}" in by_name.stdout, by_name.stdout
    gone = run_kalab("doctor", "--name", "t-no-such-lab")
    assert gone.returncode == 1
    assert one_stderr_line(gone) == (
        "kalab: error: The lab t-no-such-lab is not running; start it with `kalab lab up --name t-no-such-lab`."
    )

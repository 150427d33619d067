"""The runbook's step checks are pure: each verdict and hint is tested here from plain tables, without a cluster."""

from __future__ import annotations

import ast
import inspect

import pandas as pd
import pytest

from kalab.cluster.checks import cidrs, connection, demo, diagnosis, failover, install, traffic
from kalab.cluster.diagnose.catalog import CATALOG
from kalab.cluster.diagnose.findings import Finding
from kalab.cluster.diagnose.verdicts import Verdict
from kalab.model.check import Check, CheckFailed, raise_if_failed
from kalab.model.cidr import plan_cidr

LB = "node-role.kubernetes.io/loadbalancer"
MODULES = (cidrs, connection, demo, diagnosis, failover, install, traffic)


def node_table(ready: dict[str, bool], labelled: set[str]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"name": n, "roles": "master", "ready": r, "labels": {LB: ""} if n in labelled else {}}
            for n, r in ready.items()
        ]
    )


def assert_failure(check: Check, *words: str, fault: str = "") -> None:
    assert not check.passed and check.hint is not None, check
    line = check.line()
    assert line.startswith(f"❌ {check.name}: ") and "Traceback" not in line and "\n" not in line
    for word in words:
        assert word in line, (word, line)
    assert check.hint.fault == fault
    if check.hint.look:
        assert f"Look with `{check.hint.look}`." in line


def test_nodes_ready_names_the_node_that_is_not_and_points_at_node_down() -> None:
    assert connection.nodes_ready(node_table({"master-0": True, "master-1": True}, set())).passed
    check = connection.nodes_ready(node_table({"master-0": True, "master-1": False}, set()))
    assert_failure(check, "Not Ready: master-1", "oc describe node master-1", fault="node-down")
    assert_failure(connection.nodes_ready(node_table({}, set())), "The cluster has no nodes")
    assert_failure(connection.openshift_like(False), "config.openshift.io")


def test_nodes_labelled_wants_exactly_the_picked_nodes() -> None:
    table = node_table({"master-0": True, "master-1": True, "master-2": True}, {"master-1", "master-2"})
    ok = install.nodes_labelled(table, ["master-2", "master-1"], LB)
    assert ok == Check("nodes labelled", True, f"exactly the picked nodes carry {LB}: master-1, master-2")
    # A node deselected but still labelled is what the picker used to leave behind: now a failure.
    assert_failure(install.nodes_labelled(table, ["master-1"], LB), "master-2 also carry", f"oc get nodes -L {LB}")
    missing = install.nodes_labelled(table, ["master-0", "master-1"], LB)
    assert_failure(missing, f"master-0 lack the {LB} label", fault="no-loadbalancer-nodes")
    assert_failure(install.nodes_labelled(table, [], LB), "No node is picked")


def test_keepalived_pods_on_the_picked_nodes_only() -> None:
    pods = pd.DataFrame(
        {
            "pod": ["k-a", "k-b"],
            "node": ["master-1", "master-2"],
            "phase": ["Running", "Running"],
            "ready": [True, True],
        }
    )
    assert install.keepalived_running(pods, ["master-1", "master-2"], "ns").passed
    check = install.keepalived_running(pods, ["master-1"], "ns")
    assert_failure(check, "keepalived runs on master-1, master-2, not on master-1", "oc get pods -n ns -o wide")
    crashing = pods.assign(ready=[True, False])
    assert_failure(install.keepalived_running(crashing, ["master-1", "master-2"], "ns"), fault="wrong-interface")
    empty = pods.iloc[0:0]
    assert_failure(install.keepalived_running(empty, ["master-1"], "ns"), "no node", fault="no-loadbalancer-nodes")


def test_operator_scc_and_failed_create() -> None:
    assert install.operator_installed("op.v1", ["CSV op.v1: Pending", "CSV op.v1: Succeeded"]).passed
    assert_failure(
        install.operator_installed("op.v1", ["CSV op.v1: Failed"]),
        "last: CSV op.v1: Failed",
        fault="operator-not-ready",
    )
    assert_failure(
        install.privileged_granted(False, "ns", "users"), "system:serviceaccount:ns:default", fault="scc-missing"
    )
    events = pd.DataFrame(
        {"message": ["Error creating: pods is forbidden: unable to validate against any security context constraint"]}
    )
    assert install.failed_create_explained(events, False, "ns").passed
    assert install.failed_create_explained(events.iloc[0:0], True, "ns").passed  # granted on an earlier run
    assert_failure(install.failed_create_explained(events.iloc[0:0], False, "ns"), "no events")


def test_cidr_checks() -> None:
    plan = plan_cidr(
        "172.21.6.33/27",
        allowed=["172.21.6.33/27"],
        cluster_network="10.254.0.0/16",
        service_network="172.30.0.0/16",
        machine_network="192.168.7.0/24",
    )
    assert cidrs.block_is_sound(plan).reason.startswith("172.21.6.32/27: 32 addresses")
    clash = plan_cidr("10.254.0.0/24", cluster_network="10.254.0.0/16")
    assert_failure(cidrs.block_is_sound(clash), "Fix the CIDR", "overlaps a network", fault="cidr-overlaps-cluster")
    typo = cidrs.block_is_sound(plan_cidr("nonsense"))
    assert_failure(typo, '"nonsense" is not a CIDR', "Likely cause: a typo in the auto_assign_cidr parameter.")
    held = {"autoAssignCIDRs": ["172.21.6.33/27"], "policy": {"allowedCIDRs": ["172.21.6.33/27"]}}
    assert cidrs.network_holds(held, "172.21.6.33/27", ["172.21.6.33/27"], 2).passed
    assert_failure(cidrs.network_holds(None, "172.21.6.33/27", ["172.21.6.33/27"], 0), fault="autoassign-missing")
    assert_failure(cidrs.dry_run_changed_nothing(False, 2, None, held), "changed during the dry run")
    assert cidrs.dry_run_changed_nothing(False, 2, None, None).reason == "2 change(s) validated, nothing applied"


def test_demo_checks() -> None:
    running = pd.DataFrame({"pod": ["test-0", "test-1"], "node": ["master-2", "master-0"], "phase": ["Running"] * 2})
    assert demo.pods_pinned(running, ["master-0", "master-2"], "demo").passed
    assert_failure(demo.pods_pinned(running, ["master-0", "master-1"], "demo"), "not on master-0, master-1")
    assert (
        demo.vip_in_block("172.21.6.33", ["172.21.6.33/27"]).reason
        == "EXTERNAL-IP 172.21.6.33 is inside 172.21.6.32/27"
    )
    assert_failure(demo.vip_in_block("172.21.6.33", []), "(none)", fault="autoassign-missing")


def test_traffic_checks() -> None:
    per_pod = pd.DataFrame(
        {
            "pod": ["test-0", "test-1"],
            "pod_ip": ["10.254.0.5", "10.254.2.5"],
            "requests": [104, 96],
            "share": [0.52, 0.48],
        }
    )
    assert traffic.both_pods_answered(per_pod, 200, "demo").reason == "test-0 104 (52%), test-1 96 (48%)"
    silent = per_pod.assign(requests=[200, 0], share=[1.0, 0.0])
    assert_failure(traffic.both_pods_answered(silent, 200, "demo"), "test-1 answered none of 200")
    assert_failure(traffic.split_is_even(silent, (0.36, 0.64), "demo"), "outside 36%–64%")
    assert_failure(
        traffic.none_failed(3, 200, {"timeout": 3}, 0, "172.21.6.33"),
        "3 of 200 requests failed (3 timeout)",
        fault="vip-nowhere",
    )
    endpoints = traffic.demo_endpoints(per_pod)
    assert endpoints == ["10.254.0.5:80", "10.254.2.5:80"]
    paths = pd.DataFrame(
        {
            "path": ["KUBE-SVC-X → A", "KUBE-SVC-X → B"],
            "endpoint": endpoints,
            "pod": ["test-0", "test-1"],
            "probability": [0.5, 0.5],
        }
    )
    assert traffic.reaches_the_pods(paths, endpoints).passed
    assert_failure(traffic.reaches_the_pods(paths.iloc[:1], endpoints), "not to the demo pods")
    assert_failure(traffic.reaches_the_pods(paths, endpoints, start="KUBE-FW-Y"), "Not every path starts at KUBE-FW-Y")


def test_failover_checks_say_the_allowance_they_pass_on() -> None:
    rates = pd.DataFrame(
        {"node": ["master-1", "master-2"], "state": ["MASTER", "BACKUP"], "adverts_per_s": [1.02, 0.0]}
    )
    assert failover.one_master_advertising(rates, 1.0, "demo/demo").passed
    both = rates.assign(state=["MASTER", "MASTER"])
    assert_failure(failover.one_master_advertising(both, 1.0, "demo/demo"), "2 nodes are MASTER", fault="vrrp-blocked")
    measured = pd.DataFrame({"kind": ["graceful"], "old_master": ["master-1"], "new_master": ["master-2"]})
    comparison = pd.DataFrame(
        {"kind": ["graceful"], "takeover_ms": [614.0], "expected_takeover_ms": [609.0], "within_formula": [True]}
    )
    check = failover.takeover_within_formula(measured, comparison)
    # 614 ms passes against a formula of 609 ms only through the allowance, so the sentence must say it.
    assert (
        check.passed and "graceful 614 ms (formula ≤ 609 ms)" in check.reason and "500 ms are allowed" in check.reason
    )
    late = comparison.assign(takeover_ms=[1500.0], within_formula=[False])
    assert_failure(failover.takeover_within_formula(measured, late), "fell outside the window")
    never = measured.assign(new_master=[None])
    assert_failure(failover.takeover_within_formula(never, comparison), "never taken over", fault="vrrp-blocked")


def finding(check: str, ok: bool, evidence: str, symptom: str = "VIP nowhere") -> Finding:
    return Finding(symptom, check, "ok" if ok else "problem", evidence, "" if ok else "add the annotation")


def test_diagnosis_checks() -> None:
    healthy = [finding("a MASTER exists", True, "MASTER on master-1"), finding("VIP on a node", True, "x on master-1")]
    ok = diagnosis.all_ok("VIP diagnosis", healthy, "a MASTER exists", "VIP on a node")
    assert ok.reason == "all 2 checks ok: MASTER on master-1; x on master-1"
    broken = [finding("group annotation", False, "no annotation"), *healthy]
    failed = diagnosis.all_ok("VIP diagnosis", broken)
    assert_failure(failed, "VIP nowhere, group annotation: no annotation", "Fix: add the annotation")
    assert diagnosis.symptom_reproduced("n", broken, "VIP nowhere", "annotation").passed
    assert_failure(diagnosis.symptom_reproduced("n", healthy, "VIP nowhere", "annotation"), 'no "VIP nowhere"')
    verdicts = [Verdict("vrrp-blocked", "fail", "two MASTERs", "e", fix="allow protocol 112")]
    assert diagnosis.doctor_named(verdicts, broken=True).passed
    assert_failure(
        diagnosis.doctor_named(verdicts, broken=False),
        "vrrp-blocked (cluster): two MASTERs",
        "Fix: allow protocol 112",
        fault="vrrp-blocked",
    )
    assert diagnosis.restored(False, True, True, None, "j").passed  # nothing asked, nothing checked
    assert_failure(diagnosis.restored(True, False, True, None, "/j"), "The undo journal /j was not used")


def test_every_hinted_fault_is_in_the_catalog_and_checks_fail_as_one_sentence() -> None:
    known = {f.id for f in CATALOG}
    named = set()
    for module in MODULES:
        for call in ast.walk(ast.parse(inspect.getsource(module))):
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "failed"):
                continue
            given = [k.value for k in call.keywords if k.arg == "fault"] + call.args[4:5]
            named |= {
                c.value
                for arg in given
                for c in ast.walk(arg)
                if isinstance(c, ast.Constant) and isinstance(c.value, str) and c.value
            }
    assert named and named <= known, named - known
    failed_check = install.privileged_granted(False, "ns", "users")
    with pytest.raises(CheckFailed) as stopped:
        raise_if_failed([Check("fine", True, "ok"), failed_check])
    message = str(stopped.value)
    assert message.startswith("privileged SCC granted failed: system:serviceaccount:ns:default may not use")
    assert "Troubleshooting catalog: scc-missing" in message and "\n" not in message

"""DaemonSets, Deployments and the scheduler on the store alone: no kernel, no kubelet (readiness is set by hand)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kalab.lab.apiserver.errors import forbidden
from kalab.lab.apiserver.resources import ResourceType
from kalab.lab.apiserver.store import Operation
from kalab.lab.controllers.workloads import (
    DaemonSetController,
    DeploymentController,
    ReplicaSetController,
    Scheduler,
    pinned_node,
)
from kalab.model import manifests, operator_manifests
from tests.lab.controllers.cluster_kit import ControlPlane, wait_for
from tests.support.paths import FIXTURES

Obj = dict[str, Any]
LB = "node-role.kubernetes.io/loadbalancer"
NODES = ("master-0", "master-1", "master-2")
GROUP_NS = "keepalived-operator"
SEED_POD = yaml.safe_load((FIXTURES / "seed_keepalived_pod.yaml").read_text())


@pytest.fixture
def cp(tmp_path: Path) -> Iterator[ControlPlane]:
    plane = ControlPlane(tmp_path)
    for namespace in (GROUP_NS, "demo"):
        plane.namespace(namespace)
    for name in NODES:
        labels = {"kubernetes.io/hostname": name, "node-role.kubernetes.io/master": ""}
        if name != "master-0":  # the seed labels master-1 and master-2 for keepalived
            labels[LB] = ""
        plane.create("/nodes", {"metadata": {"name": name, "labels": labels}})
    plane.start(
        DaemonSetController(plane.ctx),
        ReplicaSetController(plane.ctx),
        DeploymentController(plane.ctx),
        Scheduler(plane.ctx),
    )
    yield plane
    plane.stop()


def group_daemon_set(cp: ControlPlane) -> Obj:
    group = manifests.keepalived_group(interface="kalab-eth0")
    return cp.create("apps/daemonsets", operator_manifests.daemon_set(group), GROUP_NS)


def pods(cp: ControlPlane, namespace: str, labels: str | None = None) -> list[Obj]:
    return cp.store.list(cp.rt("/pods"), namespace, labels=labels)[0]


def bound(cp: ControlPlane, namespace: str, count: int, labels: str | None = None) -> dict[str, Obj]:
    """node → pod once exactly `count` pods exist and all are bound to a node."""
    found = pods(cp, namespace, labels)
    if len(found) != count or not all(p["spec"].get("nodeName") for p in found):
        return {}
    return {p["spec"]["nodeName"]: p for p in found}


def make_ready(cp: ControlPlane, pod: Obj) -> None:
    meta = pod["metadata"]
    cp.patch_status(
        "/pods",
        meta["name"],
        {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
        meta["namespace"],
    )


def events(cp: ControlPlane, namespace: str, reason: str) -> list[Obj]:
    return [e for e in cp.store.list(cp.rt("/events"), namespace)[0] if e["reason"] == reason]


def test_daemon_set_puts_one_seed_like_pod_on_each_labelled_node(cp: ControlPlane) -> None:
    ds = group_daemon_set(cp)

    def scheduled() -> dict[str, Obj]:
        # The binding and the PodScheduled condition are written separately: wait for both.
        on = bound(cp, GROUP_NS, 2)
        return on if all((p.get("status") or {}).get("conditions") for p in on.values()) else {}

    on = wait_for(scheduled, what="a scheduled pod on master-1 and master-2")
    assert sorted(on) == ["master-1", "master-2"]
    for node, pod in on.items():
        meta, spec = pod["metadata"], pod["spec"]
        assert meta["name"].startswith("keepalivedgroup-workers-") and len(meta["name"]) == 29
        assert meta["labels"]["keepalivedGroup"] == "keepalivedgroup-workers"
        assert meta["labels"]["pod-template-generation"] == "1"
        assert len(meta["labels"]["controller-revision-hash"]) == 10
        [owner] = meta["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
            "DaemonSet",
            "keepalivedgroup-workers",
            ds["metadata"]["uid"],
            True,
        )
        # What the DaemonSet controller adds is exactly what the seed's pod shows.
        assert spec["tolerations"] == SEED_POD["spec"]["tolerations"]
        seed_affinity = SEED_POD["spec"]["affinity"]
        seed_affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0][
            "matchFields"
        ][0]["values"] = [node]
        assert spec["affinity"] == seed_affinity
        assert pinned_node(pod) == node
        assert [c["type"] for c in pod["status"]["conditions"]] == ["PodScheduled"]

    def counted() -> Obj | None:
        # The DaemonSet's status catches up with its pods in its own reconcile: wait until it counts both.
        status = (cp.get("apps/daemonsets", "keepalivedgroup-workers", GROUP_NS) or {}).get("status") or {}
        return status if status.get("currentNumberScheduled") == 2 else None

    status = wait_for(counted, what="the DaemonSet's status to count both pods")
    assert status["desiredNumberScheduled"] == 2 and status["currentNumberScheduled"] == 2
    assert status["updatedNumberScheduled"] == 2 and status["numberReady"] == 0
    assert status["observedGeneration"] == 1 and status["numberUnavailable"] == 2
    assert len(events(cp, GROUP_NS, "SuccessfulCreate")) == 2


def test_daemon_set_follows_node_labels_and_counts_ready_pods(cp: ControlPlane) -> None:
    group_daemon_set(cp)
    wait_for(lambda: bound(cp, GROUP_NS, 2))
    cp.patch("/nodes", "master-0", {"metadata": {"labels": {LB: ""}}})
    on = wait_for(lambda: bound(cp, GROUP_NS, 3), what="a third pod once master-0 is labelled")
    cp.patch("/nodes", "master-1", {"metadata": {"labels": {LB: None}}})
    on = wait_for(lambda: bound(cp, GROUP_NS, 2), what="master-1's pod to go once unlabelled")
    assert sorted(on) == ["master-0", "master-2"]
    for pod in on.values():
        make_ready(cp, pod)

    def settled() -> Obj | None:
        status = (cp.get("apps/daemonsets", "keepalivedgroup-workers", GROUP_NS) or {}).get("status") or {}
        return status if status.get("numberReady") == 2 else None

    status = wait_for(settled, what="two ready pods in the DaemonSet's status")
    assert status["numberAvailable"] == 2 and "numberUnavailable" not in status


def test_a_deleted_daemon_pod_comes_back_and_a_cordoned_node_keeps_its_pod(cp: ControlPlane) -> None:
    group_daemon_set(cp)
    on = wait_for(lambda: bound(cp, GROUP_NS, 2))
    cp.patch("/nodes", "master-2", {"spec": {"unschedulable": True}})
    cp.store.delete(cp.rt("/pods"), GROUP_NS, on["master-2"]["metadata"]["name"])
    again = wait_for(
        lambda: (
            (b := bound(cp, GROUP_NS, 2))
            and b["master-2"]["metadata"]["uid"] != on["master-2"]["metadata"]["uid"]
            and b
        ),
        what="a new pod on the cordoned master-2 (DaemonSet pods tolerate node.kubernetes.io/unschedulable)",
    )
    assert sorted(again) == ["master-1", "master-2"]


def test_rejected_pods_give_failed_create_events_until_admission_allows_them(cp: ControlPlane) -> None:
    allowed = False
    message = (
        'pods "keepalivedgroup-workers-" is forbidden: unable to validate against any security context constraint: '
        "[provider restricted: .spec.securityContext.hostNetwork: Invalid value: true: Host network is not allowed "
        "to be used]"
    )

    def scc(op: Operation, rt: ResourceType, obj: Obj, old: Obj | None) -> None:
        if op == "CREATE" and rt.key == "/pods" and not allowed:
            raise forbidden(message)

    cp.store.add_admission(scc)
    group_daemon_set(cp)
    [event] = wait_for(lambda: events(cp, GROUP_NS, "FailedCreate"), what="a FailedCreate event")
    assert event["type"] == "Warning" and event["message"] == f"Error creating: {message}"
    assert event["involvedObject"]["kind"] == "DaemonSet"
    assert event["involvedObject"]["name"] == "keepalivedgroup-workers"
    wait_for(lambda: events(cp, GROUP_NS, "FailedCreate")[0].get("count", 1) >= 2, what="a retry with backoff")
    assert pods(cp, GROUP_NS) == []
    allowed = True  # the grant: `oc adm policy add-scc-to-user privileged -z default`
    on = wait_for(lambda: bound(cp, GROUP_NS, 2), timeout=15, what="pods once admission allows them")
    assert sorted(on) == ["master-1", "master-2"]


def test_a_template_change_rolls_node_by_node(cp: ControlPlane) -> None:
    group_daemon_set(cp)
    old = wait_for(lambda: bound(cp, GROUP_NS, 2))
    for pod in old.values():
        make_ready(cp, pod)
    old_hash = old["master-1"]["metadata"]["labels"]["controller-revision-hash"]
    ds = cp.patch(
        "apps/daemonsets",
        "keepalivedgroup-workers",
        {"spec": {"template": {"metadata": {"annotations": {"kalab.test/rev": "2"}}}}},
        GROUP_NS,
    )
    assert ds["metadata"]["generation"] == 2

    def new_pods() -> list[Obj]:
        return [p for p in pods(cp, GROUP_NS) if p["metadata"]["labels"]["controller-revision-hash"] != old_hash]

    [first] = wait_for(new_pods, what="the first replaced pod")
    # maxUnavailable 1: the other node keeps its ready old pod until the new one is ready.
    old_left = [p for p in pods(cp, GROUP_NS) if p["metadata"]["labels"]["controller-revision-hash"] == old_hash]
    assert len(old_left) == 1 and old_left[0]["spec"]["nodeName"] != pinned_node(first)
    assert first["metadata"]["labels"]["pod-template-generation"] == "2"
    assert first["metadata"]["annotations"] == {"kalab.test/rev": "2"}
    wait_for(lambda: new_pods()[0]["spec"].get("nodeName"))
    make_ready(cp, new_pods()[0])
    on = wait_for(lambda: len(new_pods()) == 2 and bound(cp, GROUP_NS, 2), what="the second node's replacement")
    assert sorted(on) == ["master-1", "master-2"]


def test_deployment_runs_replicas_through_a_replica_set_spread_over_nodes(cp: ControlPlane) -> None:
    labels = {"app": "web"}
    deploy = {
        "metadata": {"name": "web", "namespace": "demo"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels},
                         "spec": {"containers": [{"name": "php", "image": manifests.DEMO_IMAGE}]}},
        },
    }  # fmt: skip
    cp.create("apps/deployments", deploy, "demo")
    on = wait_for(lambda: bound(cp, "demo", 3, "app=web"), what="three web pods, one per node")
    assert sorted(on) == list(NODES)
    [rs] = cp.store.list(cp.rt("apps/replicasets"), "demo")[0]
    template_hash = rs["metadata"]["labels"]["pod-template-hash"]
    assert rs["metadata"]["name"] == f"web-{template_hash}"
    for pod in on.values():
        assert pod["metadata"]["name"].startswith(f"web-{template_hash}-")
        assert pod["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
        make_ready(cp, pod)

    def available() -> Obj | None:
        status = (cp.get("apps/deployments", "web", "demo") or {}).get("status") or {}
        return status if status.get("availableReplicas") == 3 else None

    status = wait_for(available, what="the Deployment to count three available pods")
    assert status["readyReplicas"] == 3 and status["updatedReplicas"] == 3 and status["replicas"] == 3
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Available"]["status"] == "True"
    assert conditions["Available"]["reason"] == "MinimumReplicasAvailable"
    cp.patch("apps/deployments", "web", {"spec": {"replicas": 1}}, "demo")
    wait_for(lambda: bound(cp, "demo", 1, "app=web"), what="scaling down to one pod")


def test_scheduler_honours_node_selectors_and_says_why_a_pod_fits_nowhere(cp: ControlPlane) -> None:
    for obj in manifests.demo():
        if obj["kind"] == "Pod":
            cp.create("/pods", obj, "demo")
    on = wait_for(lambda: bound(cp, "demo", 2, "env=test"), what="the demo pods on their nodes")
    assert {node: pod["metadata"]["name"] for node, pod in on.items()} == {"master-0": "test-0", "master-2": "test-1"}
    assert events(cp, "demo", "Scheduled")
    cp.create(
        "/pods",
        {
            "metadata": {"name": "lost"},
            "spec": {"nodeSelector": {"disk": "ssd"}, "containers": [{"name": "c", "image": "x"}]},
        },
        "demo",
    )

    def refused() -> Obj | None:
        pod = cp.get("/pods", "lost", "demo") or {}
        return next((c for c in (pod.get("status") or {}).get("conditions") or [] if c["type"] == "PodScheduled"), None)

    condition = wait_for(refused, what="PodScheduled False on the pod that fits nowhere")
    assert condition["status"] == "False" and condition["reason"] == "Unschedulable"
    assert condition["message"] == "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
    # The scheduler records the event after it writes the condition: wait for it rather than read it at once.
    failed = wait_for(lambda: events(cp, "demo", "FailedScheduling"), what="a FailedScheduling event")
    assert failed[0]["type"] == "Warning"
    cp.patch("/nodes", "master-1", {"metadata": {"labels": {"disk": "ssd"}}})
    wait_for(
        lambda: (cp.get("/pods", "lost", "demo") or {}).get("spec", {}).get("nodeName") == "master-1",
        what="the pod to be bound once a node fits",
    )

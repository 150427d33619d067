"""The keepalived operator in the lab: installed through OLM, it renders each KeepalivedGroup as FACTS.md §2 says."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kalab.lab.apiserver import defaults
from kalab.lab.apiserver.crds import CrdController
from kalab.lab.apiserver.resources import Registry
from kalab.lab.apiserver.store import Obj, Store
from kalab.lab.context import LabContext
from kalab.lab.controllers.keepalived_operator import KeepalivedOperator, covers
from kalab.lab.controllers.olm import OlmController, seed_catalog
from kalab.model import operator_manifests as om
from kalab.model.manifests import GROUP_ANNOTATION, keepalived_group, olm_install
from tests.support.waiting import wait_for

NS = "keepalived-operator"
GROUP = "keepalivedgroup-workers"
VIP = "172.21.6.50"


class Lab:
    def __init__(self, tmp_path: Path) -> None:
        self.store = Store(Registry())
        self.ctx = LabContext(store=self.store, state_dir=tmp_path, topology=None)
        seed_catalog(self.ctx)
        self.store.create(self.rt("/namespaces"), {"metadata": {"name": "demo"}})
        self.olm = OlmController(self.ctx)
        self.olm.phase_delay = 0.05  # the phases themselves are test_olm's business
        self.operator = KeepalivedOperator(self.ctx)
        self.controllers = [CrdController(self.ctx), self.olm, self.operator]

    def rt(self, key: str) -> Any:
        return self.ctx.rt(key)

    def create(self, obj: Obj) -> Obj:
        return self.store.create(self.store.registry.by_kind(obj["apiVersion"], obj["kind"]), obj)

    def install(self) -> None:
        for obj in olm_install():
            if (
                self.store.try_get(
                    self.store.registry.by_kind(obj["apiVersion"], obj["kind"]), NS, obj["metadata"]["name"]
                )
                is None
            ):
                self.create(obj)
        csvs = self.rt("operators.coreos.com/clusterserviceversions")
        wait_for(
            lambda: (self.store.try_get(csvs, NS, om.csv_name()) or {}).get("status", {}).get("phase") == "Succeeded",
            what="CSV Succeeded",
        )

    def group(self) -> Obj | None:
        return self.store.try_get(self.rt("redhatcop.redhat.io/keepalivedgroups"), NS, GROUP)

    def config(self) -> str | None:
        cm = self.store.try_get(self.rt("/configmaps"), NS, GROUP)
        return cm["data"]["keepalived.conf"] if cm else None

    def router_ids(self) -> dict[str, int] | None:
        group = self.group()
        status = (group or {}).get("status") or {}
        return status.get("routerIDs") if status.get("conditions") else None

    def condition(self) -> dict[str, Any] | None:
        conditions = ((self.group() or {}).get("status") or {}).get("conditions") or []
        return conditions[0] if conditions else None

    def demo_service(self, name: str = "demo", group: str = f"{NS}/{GROUP}") -> Obj:
        """The seed's demo Service after OpenShift gave it 172.21.6.50 (spec.externalIPs and the LB ingress)."""
        svc = self.store.create(
            self.rt("/services"),
            {
                "metadata": {"name": name, "namespace": "demo", "annotations": {GROUP_ANNOTATION: group}},
                "spec": {
                    "type": "LoadBalancer",
                    "externalIPs": [VIP],
                    "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 80}],
                    "selector": {"env": "test"},
                },
            },
        )
        svc["status"] = {"loadBalancer": {"ingress": [{"ip": VIP}]}}
        return self.store.update(self.rt("/services"), svc, subresource="status")

    def keepalived_pod(self, name: str, host_ip: str) -> Obj:
        pod = self.store.create(
            self.rt("/pods"),
            {
                "metadata": {"name": name, "namespace": NS, "labels": {"keepalivedGroup": GROUP}},
                "spec": {"hostNetwork": True, "containers": [{"name": "keepalived", "image": "x"}]},
            },
        )
        pod["status"] = {"phase": "Running", "hostIP": host_ip, "podIP": host_ip}
        return self.store.update(self.rt("/pods"), pod, subresource="status")


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    lab = Lab(tmp_path)
    for controller in lab.controllers:
        controller.start()
    yield lab
    for controller in reversed(lab.controllers):
        controller.stop()


def has_instance(lab: Lab, key: str = "demo/demo") -> bool:
    return f"vrrp_instance {key} {{" in (lab.config() or "")


def test_nothing_happens_before_the_operator_is_installed(lab: Lab) -> None:
    # The CRD alone (as if applied by hand) lets users create groups, but no operator runs yet.
    lab.store.create(lab.rt("apiextensions.k8s.io/customresourcedefinitions"), om.keepalivedgroup_crd())
    wait_for(lambda: lab.store.registry.get("redhatcop.redhat.io", "v1alpha1", "keepalivedgroups"), what="CRD")
    lab.store.create(lab.rt("/namespaces"), {"metadata": {"name": NS}})
    lab.create(keepalived_group(interface="eth0"))
    lab.demo_service()
    wait_for(lab.operator.idle, what="the operator to look at the group")
    assert lab.config() is None
    assert lab.store.try_get(lab.rt("apps/daemonsets"), NS, GROUP) is None
    assert "status" not in (lab.group() or {})
    lab.install()
    wait_for(lambda: has_instance(lab), what="the operator to catch up once installed")


def test_seed_group_and_demo_service(lab: Lab) -> None:
    lab.install()
    lab.create(keepalived_group(interface="eth0"))
    lab.demo_service()
    wait_for(lambda: lab.router_ids() == {"demo/demo": 1}, what="status.routerIDs")
    config = lab.config() or ""
    assert "vrrp_instance demo/demo {" in config
    assert "    interface eth0\n    virtual_router_id 1\n" in config
    assert f"        {VIP}\n" in config and config.count(VIP) == 1  # merged with the LB ingress, not doubled
    condition = lab.condition()
    assert condition is not None
    assert (condition["type"], condition["status"]) == ("ReconcileSuccess", "True")

    group = lab.group()
    assert group is not None
    ds = lab.store.get(lab.rt("apps/daemonsets"), NS, GROUP)
    expected = om.daemon_set(group)
    defaults.daemon_set(expected)  # what the API server fills in on every DaemonSet
    assert ds["spec"] == expected["spec"]  # the seed's pod template (see test_operator_manifests)
    assert ds["metadata"]["ownerReferences"][0]["uid"] == group["metadata"]["uid"]
    cm = lab.store.get(lab.rt("/configmaps"), NS, GROUP)
    assert cm["metadata"]["ownerReferences"][0]["kind"] == "KeepalivedGroup"

    monitor = lab.store.get(lab.rt("monitoring.coreos.com/podmonitors"), NS, GROUP)
    assert monitor["metadata"]["labels"] == {"metrics": "keepalived"}
    role_name = f"{GROUP}-prometheus-k8s"
    assert lab.store.try_get(lab.rt("rbac.authorization.k8s.io/roles"), NS, role_name) is not None
    binding = lab.store.get(lab.rt("rbac.authorization.k8s.io/rolebindings"), NS, role_name)
    assert binding["subjects"][0]["namespace"] == "openshift-monitoring"


def test_blacklisted_router_ids_are_skipped(lab: Lab) -> None:
    lab.install()
    lab.create(keepalived_group(interface="eth0", blacklist_router_ids=[1, 2]))
    lab.demo_service()
    wait_for(lambda: lab.router_ids() == {"demo/demo": 3}, what="router ID 3")
    lab.demo_service("other")
    wait_for(lambda: lab.router_ids() == {"demo/demo": 3, "demo/other": 4}, what="a second instance")
    assert "virtual_router_id 4" in (lab.config() or "")


def test_unicast_peers_follow_the_groups_pods(lab: Lab) -> None:
    lab.install()
    lab.create(keepalived_group(interface="eth0", unicast=True))
    lab.demo_service()
    wait_for(lambda: has_instance(lab), what="the instance")
    assert "unicast_peer" not in (lab.config() or "")  # no pods yet: no empty peer block
    lab.keepalived_pod("keepalivedgroup-workers-fgzv8", "192.168.7.14")
    lab.keepalived_pod("keepalivedgroup-workers-q7xlp", "192.168.7.15")
    peers = "    unicast_peer {\n        192.168.7.14\n        192.168.7.15\n    }\n"
    wait_for(lambda: peers in (lab.config() or ""), what="both peers")
    lab.store.delete(lab.rt("/pods"), NS, "keepalivedgroup-workers-q7xlp")
    wait_for(lambda: "192.168.7.15" not in (lab.config() or ""), what="the deleted pod's peer to go")
    assert "        192.168.7.14\n" in (lab.config() or "")


def test_pod_status_churn_does_not_rewrite_the_config(lab: Lab) -> None:
    lab.install()
    lab.create(keepalived_group(interface="eth0", unicast=True))
    lab.demo_service()
    pod = lab.keepalived_pod("keepalivedgroup-workers-fgzv8", "192.168.7.14")
    wait_for(lambda: "192.168.7.14" in (lab.config() or "") and lab.operator.idle(), what="the peer")
    cm_rv = lab.store.get(lab.rt("/configmaps"), NS, GROUP)["metadata"]["resourceVersion"]
    ds_rv = lab.store.get(lab.rt("apps/daemonsets"), NS, GROUP)["metadata"]["resourceVersion"]
    reconciled = lab.operator.reconciled
    pod["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    lab.store.update(lab.rt("/pods"), pod, subresource="status")
    wait_for(lab.operator.idle, what="the operator to catch up")
    assert lab.operator.reconciled == reconciled  # neither peers nor owners changed: no work queued
    assert lab.store.get(lab.rt("/configmaps"), NS, GROUP)["metadata"]["resourceVersion"] == cm_rv
    assert lab.store.get(lab.rt("apps/daemonsets"), NS, GROUP)["metadata"]["resourceVersion"] == ds_rv


def test_service_deleted_or_unannotated_drops_its_instance(lab: Lab) -> None:
    lab.install()
    lab.create(keepalived_group(interface="eth0"))
    lab.demo_service()
    other = lab.demo_service("other")
    wait_for(lambda: lab.router_ids() == {"demo/demo": 1, "demo/other": 2}, what="two instances")
    lab.store.delete(lab.rt("/services"), "demo", "demo")
    wait_for(lambda: lab.router_ids() == {"demo/other": 2}, what="demo/demo dropped")
    assert not has_instance(lab, "demo/demo") and has_instance(lab, "demo/other")
    del other["metadata"]["annotations"][GROUP_ANNOTATION]
    other["metadata"].pop("resourceVersion")
    lab.store.update(lab.rt("/services"), other)
    wait_for(lambda: lab.router_ids() == {}, what="demo/other dropped")
    assert "vrrp_instance" not in (lab.config() or "")


def test_exhausted_router_ids_report_an_error(lab: Lab) -> None:
    lab.install()
    lab.create(keepalived_group(interface="eth0", blacklist_router_ids=list(range(1, 256))))
    lab.demo_service()
    condition = wait_for(lambda: (c := lab.condition()) and c["type"] == "ReconcileError" and c, what="the error")
    assert condition["status"] == "True" and condition["reason"] == "LastReconcileCycleFailed"
    assert "needs 1 router IDs but only 0 are free" in condition["message"]
    # The group alone may have been rendered before the service arrived; the failing render is never written.
    assert "vrrp_instance" not in (lab.config() or "")
    # The event is recorded after the condition: wait for it rather than read it at once.
    warned = wait_for(
        lambda: [e for e in lab.store.list(lab.rt("/events"), NS)[0] if e["reason"] == "ProcessingError"],
        what="a ProcessingError event",
    )
    assert all(e["type"] == "Warning" for e in warned)


def test_password_auth_waits_for_its_secret(lab: Lab) -> None:
    lab.install()
    lab.create(keepalived_group(interface="eth0", password_secret="vrrp-auth"))
    lab.demo_service()
    condition = wait_for(lambda: (c := lab.condition()) and c["type"] == "ReconcileError" and c, what="the error")
    assert "Secret vrrp-auth" in condition["message"]
    secret = {
        "metadata": {"name": "vrrp-auth", "namespace": NS},
        "data": {"password": base64.b64encode(b"s3cret").decode()},
    }
    lab.store.create(lab.rt("/secrets"), secret)
    wait_for(lambda: "auth_pass s3cret" in (lab.config() or ""), what="the password in the config")
    # The status is written after the config: wait for it rather than read it once.
    wait_for(lambda: (lab.condition() or {}).get("type") == "ReconcileSuccess", what="ReconcileSuccess")


def test_rendered_objects_come_back_and_go_with_the_group(lab: Lab) -> None:
    lab.install()
    lab.create(keepalived_group(interface="eth0"))
    lab.demo_service()
    wait_for(lambda: has_instance(lab), what="the config")
    lab.store.delete(lab.rt("/configmaps"), NS, GROUP)
    wait_for(lambda: has_instance(lab), what="the ConfigMap to come back")
    ds = lab.store.get(lab.rt("apps/daemonsets"), NS, GROUP)
    ds["spec"]["template"]["spec"]["hostNetwork"] = False
    lab.store.update(lab.rt("apps/daemonsets"), ds)
    wait_for(
        lambda: lab.store.get(lab.rt("apps/daemonsets"), NS, GROUP)["spec"]["template"]["spec"]["hostNetwork"],
        what="the DaemonSet to be put back",
    )
    lab.store.delete(lab.rt("redhatcop.redhat.io/keepalivedgroups"), NS, GROUP)
    assert lab.config() is None
    assert lab.store.try_get(lab.rt("apps/daemonsets"), NS, GROUP) is None
    assert lab.store.try_get(lab.rt("monitoring.coreos.com/podmonitors"), NS, GROUP) is None


def test_apiserver_defaults_do_not_make_the_operator_rewrite(lab: Lab) -> None:
    def defaults(op: str, rt: Any, obj: Obj, old: Obj | None) -> None:
        if rt.key == "apps/daemonsets" and op in ("CREATE", "UPDATE"):
            pod = obj["spec"]["template"]["spec"]
            pod.setdefault("dnsPolicy", "ClusterFirst")
            for container in pod["containers"]:
                container.setdefault("terminationMessagePath", "/dev/termination-log")
            obj["spec"].setdefault("updateStrategy", {"type": "RollingUpdate"})

    lab.store.add_admission(defaults)
    lab.install()
    lab.create(keepalived_group(interface="eth0"))
    lab.demo_service()
    wait_for(lambda: lab.router_ids() == {"demo/demo": 1}, what="status")
    ds_rv = lab.store.get(lab.rt("apps/daemonsets"), NS, GROUP)["metadata"]["resourceVersion"]
    lab.demo_service("other")
    wait_for(lambda: has_instance(lab, "demo/other"), what="the second instance")
    assert lab.store.get(lab.rt("apps/daemonsets"), NS, GROUP)["metadata"]["resourceVersion"] == ds_rv


def test_no_pod_monitor_where_the_api_is_not_served(lab: Lab) -> None:
    lab.store.registry.remove("monitoring.coreos.com", "podmonitors")
    lab.install()
    lab.create(keepalived_group(interface="eth0"))
    lab.demo_service()
    wait_for(lambda: lab.router_ids() == {"demo/demo": 1}, what="status")
    assert lab.store.try_get(lab.rt("rbac.authorization.k8s.io/roles"), NS, f"{GROUP}-prometheus-k8s") is None


def test_removing_the_operator_stops_reconciling(lab: Lab) -> None:
    lab.install()
    lab.create(keepalived_group(interface="eth0"))
    lab.demo_service()
    wait_for(lambda: has_instance(lab), what="the config")
    lab.store.delete(lab.rt("operators.coreos.com/subscriptions"), NS, "keepalived-operator")
    lab.store.delete(lab.rt("operators.coreos.com/clusterserviceversions"), NS, om.csv_name())
    wait_for(lab.operator.idle, what="the operator to notice it is gone")  # work queued while it was installed
    lab.store.delete(lab.rt("/services"), "demo", "demo")
    wait_for(lab.operator.idle, what="the operator to see the service go")
    assert has_instance(lab)  # what the operator rendered stays, but nobody updates it any more


def test_covers_ignores_added_defaults_but_not_changes() -> None:
    want = {"a": [{"x": 1}], "b": {"c": "d"}}
    assert covers({"a": [{"x": 1, "y": 2}], "b": {"c": "d", "e": "f"}, "z": 0}, want)
    assert not covers({"a": [{"x": 2}], "b": {"c": "d"}}, want)
    assert not covers({"a": [{"x": 1}, {"x": 1}], "b": {"c": "d"}}, want)
    assert not covers({"a": [{"x": 1}]}, want)

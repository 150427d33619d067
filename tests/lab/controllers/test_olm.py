"""OLM in the lab: the seed's Subscription installs the operator; wrong ones say why and install nothing."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kalab.lab.apiserver.crds import CrdController
from kalab.lab.apiserver.resources import Registry
from kalab.lab.apiserver.store import Store
from kalab.lab.context import LabContext
from kalab.lab.controllers.olm import MARKETPLACE, OlmController, seed_catalog
from kalab.model import operator_manifests as om
from kalab.model.manifests import olm_install
from tests.support.waiting import wait_for

NS = "keepalived-operator"
CSV = om.csv_name()
PHASES = ["Pending", "InstallReady", "Installing", "Succeeded"]


class Lab:
    def __init__(self, tmp_path: Path) -> None:
        self.store = Store(Registry())
        self.ctx = LabContext(store=self.store, state_dir=tmp_path, topology=None)
        seed_catalog(self.ctx)
        self.crds = CrdController(self.ctx)
        self.olm = OlmController(self.ctx)
        self.controllers = [self.crds, self.olm]

    def rt(self, key: str) -> Any:
        return self.ctx.rt(key)

    def apply(self, objects: list[dict[str, Any]]) -> None:
        for obj in objects:
            self.store.create(self.store.registry.by_kind(obj["apiVersion"], obj["kind"]), obj)

    def get(self, key: str, name: str, namespace: str | None = NS) -> dict[str, Any] | None:
        return self.store.try_get(self.rt(key), namespace, name)

    def csv(self) -> dict[str, Any] | None:
        return self.get("operators.coreos.com/clusterserviceversions", CSV)

    def subscription(self) -> dict[str, Any]:
        sub = self.get("operators.coreos.com/subscriptions", "keepalived-operator")
        assert sub is not None
        return sub

    def csv_phase(self) -> str | None:
        csv = self.csv()
        return (csv.get("status") or {}).get("phase") if csv else None


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    lab = Lab(tmp_path)
    for controller in lab.controllers:
        controller.start()
    yield lab
    for controller in lab.controllers:
        controller.stop()


def test_seed_catalog_is_openshifts_default_sources(lab: Lab) -> None:
    sources, _ = lab.store.list(lab.rt("operators.coreos.com/catalogsources"), MARKETPLACE)
    names = [s["metadata"]["name"] for s in sources]
    assert names == ["certified-operators", "community-operators", "redhat-marketplace", "redhat-operators"]
    assert all(s["status"]["connectionState"]["lastObservedState"] == "READY" for s in sources)
    seed_catalog(lab.ctx)  # idempotent
    assert len(lab.store.list(lab.rt("operators.coreos.com/catalogsources"))[0]) == 4


def test_seed_subscription_installs_the_operator(lab: Lab) -> None:
    csvs = lab.rt("operators.coreos.com/clusterserviceversions")
    seen: list[tuple[float, str]] = []
    stop = threading.Event()

    def watch(since: int) -> None:
        for event in lab.store.watch(csvs, NS, since=since, timeout=10, stop=stop):
            phase = (event.object.get("status") or {}).get("phase")
            if phase and (not seen or seen[-1][1] != phase):
                seen.append((time.monotonic(), phase))
            if phase == "Succeeded":
                return

    watcher = threading.Thread(target=watch, args=(lab.store.resource_version,))
    watcher.start()
    lab.apply(olm_install())
    watcher.join(10)
    stop.set()
    assert [phase for _, phase in seen] == PHASES
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(seen)]
    assert all(0.15 < gap < 2.0 for gap in gaps), gaps

    csv = lab.csv()
    assert csv is not None
    reasons = [(c["phase"], c["reason"]) for c in csv["status"]["conditions"]]
    assert reasons == [
        ("Pending", "RequirementsUnknown"),
        ("InstallReady", "AllRequirementsMet"),
        ("Installing", "InstallSucceeded"),
        ("Succeeded", "InstallSucceeded"),
    ]
    assert csv["status"]["requirementStatus"][0]["status"] == "Present"
    assert csv["metadata"]["annotations"]["olm.operatorGroup"] == NS

    crd = lab.get("apiextensions.k8s.io/customresourcedefinitions", om.CRD_NAME, None)
    assert crd is not None
    assert lab.store.registry.get("redhatcop.redhat.io", "v1alpha1", "keepalivedgroups") is not None

    deployment = lab.get("apps/deployments", "keepalived-operator")
    assert deployment is not None
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "keepalived-operator"
    assert pod["containers"][0]["image"] == "quay.io/redhat-cop/keepalived-operator:latest"
    assert pod["containers"][0]["command"] == ["/manager"]
    assert deployment["metadata"]["ownerReferences"][0]["kind"] == "ClusterServiceVersion"
    assert lab.get("/serviceaccounts", "keepalived-operator") is not None
    roles = lab.store.list(lab.rt("rbac.authorization.k8s.io/clusterrolebindings"), labels=f"olm.owner={CSV}")[0]
    assert roles[0]["subjects"] == [{"kind": "ServiceAccount", "name": "keepalived-operator", "namespace": NS}]

    sub = wait_for(
        lambda: (s := lab.subscription()).get("status", {}).get("state") == "AtLatestKnown" and s, what="sub"
    )
    status = sub["status"]
    assert status["installedCSV"] == status["currentCSV"] == CSV
    plan = lab.get("operators.coreos.com/installplans", status["installPlanRef"]["name"])
    assert plan is not None
    assert plan["spec"]["approval"] == "Automatic" and plan["spec"]["approved"] is True
    assert plan["spec"]["clusterServiceVersionNames"] == [CSV]
    assert plan["status"]["phase"] == "Complete"
    assert {c["type"]: c["status"] for c in status["conditions"]} == {"CatalogSourcesUnhealthy": "False"}

    og = wait_for(lambda: (lab.get("operators.coreos.com/operatorgroups", NS) or {}).get("status"), what="og")
    assert og["namespaces"] == [""]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"channel": "beta"}, "channel beta not found in package keepalived-operator; channels: alpha"),
        (
            {"name": "keepalived"},
            f"package keepalived not found in catalog {MARKETPLACE}/community-operators; packages: keepalived-operator",
        ),
        (
            {"source": "redhat-operators"},
            f"package keepalived-operator not found in catalog {MARKETPLACE}/redhat-operators; packages: none",
        ),
        (
            {"source": "community-operator"},
            f"catalog source community-operator not found in namespace {MARKETPLACE}; "
            "catalog sources: openshift-marketplace/certified-operators",
        ),
        (
            {"sourceNamespace": "openshift-operators"},
            "catalog source community-operators not found in namespace openshift-operators",
        ),
    ],
)
def test_wrong_subscription_says_why_and_installs_nothing(lab: Lab, change: dict[str, str], message: str) -> None:
    objects = olm_install()
    objects[2]["spec"].update(change)
    lab.apply(objects)

    def failed() -> dict[str, Any] | None:
        conditions = {c["type"]: c for c in (lab.subscription().get("status") or {}).get("conditions", [])}
        return conditions.get("ResolutionFailed")

    condition = wait_for(failed, what="ResolutionFailed")
    assert condition["status"] == "True" and condition["reason"] == "ConstraintsNotSatisfiable"
    assert condition["message"].startswith(message)
    time.sleep(0.5)
    assert lab.store.list(lab.rt("operators.coreos.com/clusterserviceversions"))[0] == []
    assert lab.store.list(lab.rt("operators.coreos.com/installplans"))[0] == []
    assert "installedCSV" not in lab.subscription()["status"]


def test_missing_source_marks_catalog_unhealthy_and_a_fix_installs(lab: Lab) -> None:
    objects = olm_install(source="community")
    lab.apply(objects)
    wait_for(lambda: (lab.subscription().get("status") or {}).get("conditions"), what="conditions")
    conditions = {c["type"]: c for c in lab.subscription()["status"]["conditions"]}
    assert conditions["CatalogSourcesUnhealthy"]["status"] == "True"
    assert "openshift-marketplace/community missing" in conditions["CatalogSourcesUnhealthy"]["message"]
    sub = lab.subscription()
    sub["spec"]["source"] = "community-operators"
    lab.store.update(lab.rt("operators.coreos.com/subscriptions"), sub)
    wait_for(lambda: lab.csv_phase() == "Succeeded", what="CSV Succeeded after the fix")
    conditions = {c["type"]: c for c in lab.subscription()["status"]["conditions"]}
    assert "ResolutionFailed" not in conditions


def test_deleting_the_subscription_keeps_the_csv_and_deleting_the_csv_removes_the_operator(lab: Lab) -> None:
    lab.apply(olm_install())
    wait_for(lambda: lab.csv_phase() == "Succeeded", what="CSV Succeeded")
    lab.store.delete(lab.rt("operators.coreos.com/subscriptions"), NS, "keepalived-operator")
    time.sleep(0.3)
    assert lab.csv_phase() == "Succeeded"
    assert lab.get("apps/deployments", "keepalived-operator") is not None
    assert lab.store.list(lab.rt("operators.coreos.com/installplans"))[0] == []  # owned by the Subscription

    lab.store.delete(lab.rt("operators.coreos.com/clusterserviceversions"), NS, CSV)
    assert lab.get("apps/deployments", "keepalived-operator") is None
    assert lab.get("/serviceaccounts", "keepalived-operator") is None
    roles = lab.rt("rbac.authorization.k8s.io/clusterroles")
    wait_for(lambda: lab.store.list(roles, labels=f"olm.owner={CSV}")[0] == [], what="cluster roles removed")
    # The CRD stays, as OLM leaves CRDs (and everyone's custom objects) in place.
    assert lab.get("apiextensions.k8s.io/customresourcedefinitions", om.CRD_NAME, None) is not None


def test_without_an_operator_group_the_csv_fails_until_one_exists(lab: Lab) -> None:
    namespace, operator_group, subscription = olm_install()
    lab.apply([namespace, subscription])
    csv = wait_for(lambda: lab.csv_phase() == "Failed" and lab.csv(), what="CSV Failed")
    assert csv["status"]["reason"] == "NoOperatorGroup"
    lab.apply([operator_group])
    wait_for(lambda: lab.csv_phase() == "Succeeded", what="CSV Succeeded")


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        ([NS], "OwnNamespace InstallModeType not supported, cannot configure to watch own namespace"),
        (["default"], "SingleNamespace InstallModeType not supported, cannot configure to watch one namespace"),
        (["default", NS], "MultiNamespace InstallModeType not supported, cannot configure to watch 2 namespaces"),
    ],
)
def test_an_operator_group_the_csv_does_not_support_fails_it_until_fixed(
    lab: Lab, targets: list[str], message: str
) -> None:
    """The operator supports AllNamespaces only: an OperatorGroup narrowed to namespaces fails the installed CSV
    (its operator keeps running, as OLM leaves it), and restoring the group brings it back to Succeeded."""
    lab.apply(olm_install())
    wait_for(lambda: lab.csv_phase() == "Succeeded", what="CSV Succeeded")
    og_rt = lab.rt("operators.coreos.com/operatorgroups")
    (og,) = lab.store.list(og_rt, NS)[0]
    og["spec"]["targetNamespaces"] = targets
    lab.store.update(og_rt, og)
    csv = wait_for(lambda: lab.csv_phase() == "Failed" and lab.csv(), what="CSV Failed")
    assert (csv["status"]["reason"], csv["status"]["message"]) == ("UnsupportedOperatorGroup", message)
    assert csv["metadata"]["annotations"]["olm.targetNamespaces"] == ",".join(targets)
    assert lab.get("apps/deployments", "keepalived-operator") is not None
    time.sleep(0.5)
    assert lab.csv_phase() == "Failed"  # it stays Failed while the group is wrong

    (og,) = lab.store.list(og_rt, NS)[0]
    del og["spec"]["targetNamespaces"]
    lab.store.update(og_rt, og)
    wait_for(lambda: lab.csv_phase() == "Succeeded", what="CSV Succeeded again")
    healed = lab.csv()
    assert healed is not None and healed["metadata"]["annotations"]["olm.targetNamespaces"] == ""
    history = [(c["phase"], c["reason"], c["message"]) for c in healed["status"]["conditions"]]
    assert ("Pending", "RequirementsUnknown", "InstallModes now support target namespaces") in history


def test_a_deleted_operator_deployment_comes_back(lab: Lab) -> None:
    lab.apply(olm_install())
    wait_for(lambda: lab.csv_phase() == "Succeeded", what="CSV Succeeded")
    lab.store.delete(lab.rt("apps/deployments"), NS, "keepalived-operator")
    wait_for(lambda: lab.csv_phase() == "Failed", what="CSV Failed")
    wait_for(lambda: lab.csv_phase() == "Succeeded", what="CSV Succeeded again")
    assert lab.get("apps/deployments", "keepalived-operator") is not None


def test_status_writes_settle(lab: Lab) -> None:
    lab.apply(olm_install())
    wait_for(lambda: lab.csv_phase() == "Succeeded", what="CSV Succeeded")
    time.sleep(0.3)
    before = lab.store.resource_version
    time.sleep(0.6)
    assert lab.store.resource_version == before  # nothing keeps rewriting its own status


def test_waiting_for_the_operator_deployment_to_become_available(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    lab.olm = OlmController(lab.ctx, wait_for_available=True)
    lab.controllers = [lab.crds, lab.olm]
    for controller in lab.controllers:
        controller.start()
    try:
        lab.apply(olm_install())
        csv = wait_for(
            lambda: (c := lab.csv()) and (c.get("status") or {}).get("reason") == "InstallWaiting" and c, what="wait"
        )
        assert csv["status"]["phase"] == "Installing"
        assert "waiting for deployment keepalived-operator to become ready" in csv["status"]["message"]
        time.sleep(0.5)
        assert lab.csv_phase() == "Installing"
        deployment = lab.get("apps/deployments", "keepalived-operator")
        assert deployment is not None
        deployment["status"] = {"availableReplicas": 1, "conditions": [{"type": "Available", "status": "True"}]}
        lab.store.update(lab.rt("apps/deployments"), deployment, subresource="status")
        wait_for(lambda: lab.csv_phase() == "Succeeded", what="CSV Succeeded")
    finally:
        for controller in lab.controllers:
            controller.stop()


def test_a_broken_subscription_keeps_what_is_installed(lab: Lab) -> None:
    lab.apply(olm_install())
    wait_for(lambda: lab.csv_phase() == "Succeeded", what="CSV Succeeded")
    wait_for(lambda: lab.subscription().get("status", {}).get("installedCSV"), what="installedCSV")
    sub = lab.subscription()
    sub["spec"]["channel"] = "stable"
    lab.store.update(lab.rt("operators.coreos.com/subscriptions"), sub)
    status = wait_for(
        lambda: (
            (s := lab.subscription()["status"]) and any(c["type"] == "ResolutionFailed" for c in s["conditions"]) and s
        ),
        what="ResolutionFailed",
    )
    assert status["installedCSV"] == CSV and status["state"] == "AtLatestKnown"
    assert lab.csv_phase() == "Succeeded"

"""A fresh lab looks like the seed's OpenShift cluster before the runbook starts, and bootstrap is idempotent."""

from __future__ import annotations

from pathlib import Path

from kalab.lab.controllers.bootstrap import bootstrap
from tests.lab.controllers.cluster_kit import ControlPlane

SCC = "security.openshift.io/securitycontextconstraints"


def test_network_config_is_the_seeds_before_the_patch(tmp_path: Path) -> None:
    cp = ControlPlane(tmp_path)
    bootstrap(cp.ctx)
    network = cp.get("config.openshift.io/networks", "cluster")
    assert network is not None
    assert network["spec"] == {
        "clusterNetwork": [{"cidr": "10.254.0.0/16", "hostPrefix": 24}],
        "networkType": "OpenShiftSDN",
        "serviceNetwork": ["172.30.0.0/16"],
    }
    assert network["status"] == {
        "clusterNetwork": [{"cidr": "10.254.0.0/16", "hostPrefix": 24}],
        "clusterNetworkMTU": 1450,
        "networkType": "OpenShiftSDN",
        "serviceNetwork": ["172.30.0.0/16"],
    }


def test_namespaces_and_the_kubernetes_service(tmp_path: Path) -> None:
    cp = ControlPlane(tmp_path)
    bootstrap(cp.ctx)
    names = {ns["metadata"]["name"] for ns in cp.store.list(cp.rt("/namespaces"))[0]}
    assert {"default", "kube-system", "kube-public", "openshift-marketplace", "openshift-infra"} <= names
    svc = cp.get("/services", "kubernetes", "default")
    assert svc is not None and svc["spec"]["clusterIP"] == "172.30.0.1"


def test_security_context_constraints_like_openshifts(tmp_path: Path) -> None:
    cp = ControlPlane(tmp_path)
    bootstrap(cp.ctx)
    privileged = cp.get(SCC, "privileged")
    assert privileged is not None
    for flag in (
        "allowPrivilegedContainer",
        "allowHostNetwork",
        "allowHostPorts",
        "allowHostDirVolumePlugin",
        "allowHostPID",
        "allowHostIPC",
    ):
        assert privileged[flag] is True, flag
    assert privileged["runAsUser"] == {"type": "RunAsAny"}
    assert privileged["volumes"] == ["*"]
    assert privileged["users"] == ["system:admin", "system:serviceaccount:openshift-infra:build-controller"]
    assert privileged["groups"] == ["system:cluster-admins", "system:nodes", "system:masters"]
    restricted = cp.get(SCC, "restricted-v2")
    assert restricted is not None and restricted["groups"] == ["system:authenticated"]
    assert not restricted["allowHostNetwork"] and restricted["runAsUser"] == {"type": "MustRunAsRange"}
    for name in ("restricted", "anyuid", "hostnetwork", "nonroot", "hostaccess", "hostmount-anyuid"):
        assert cp.get(SCC, name) is not None, name
    role = cp.get("rbac.authorization.k8s.io/clusterroles", "system:openshift:scc:privileged")
    assert role is not None
    assert role["rules"] == [
        {
            "apiGroups": ["security.openshift.io"],
            "resources": ["securitycontextconstraints"],
            "resourceNames": ["privileged"],
            "verbs": ["use"],
        }
    ]


def test_nodes_are_the_seeds_masters_ready(tmp_path: Path) -> None:
    cp = ControlPlane(tmp_path)
    bootstrap(cp.ctx)
    nodes = cp.store.list(cp.rt("/nodes"))[0]
    assert [n["metadata"]["name"] for n in nodes] == ["master-0", "master-1", "master-2"]
    master1 = nodes[1]
    assert master1["status"]["addresses"] == [
        {"type": "InternalIP", "address": "192.168.7.14"},
        {"type": "Hostname", "address": "master-1"},
    ]
    labels = master1["metadata"]["labels"]
    assert labels["kubernetes.io/hostname"] == "master-1"
    assert labels["kubernetes.io/os"] == "linux"
    assert labels["node-role.kubernetes.io/master"] == "" and labels["node-role.kubernetes.io/worker"] == ""
    assert "node-role.kubernetes.io/loadbalancer" not in labels  # the runbook labels master-1/2 itself
    ready = [c for c in master1["status"]["conditions"] if c["type"] == "Ready"]
    assert ready and ready[0]["status"] == "True"
    assert master1["spec"]["podCIDR"] == "10.254.1.0/24"
    assert master1["status"]["nodeInfo"]["operatingSystem"] == "linux"
    assert master1["status"]["capacity"]["pods"] == "250"


def test_bootstrap_twice_keeps_what_users_changed(tmp_path: Path) -> None:
    cp = ControlPlane(tmp_path)
    bootstrap(cp.ctx)
    cp.patch("/nodes", "master-1", {"metadata": {"labels": {"node-role.kubernetes.io/loadbalancer": ""}}})
    cp.patch("config.openshift.io/networks", "cluster", {"spec": {"externalIP": {"autoAssignCIDRs": ["10.0.0.0/28"]}}})
    rv = cp.store.resource_version
    bootstrap(cp.ctx)
    assert cp.store.resource_version == rv  # nothing written
    node = cp.get("/nodes", "master-1")
    assert node is not None and "node-role.kubernetes.io/loadbalancer" in node["metadata"]["labels"]
    network = cp.get("config.openshift.io/networks", "cluster")
    assert network is not None and network["spec"]["externalIP"] == {"autoAssignCIDRs": ["10.0.0.0/28"]}

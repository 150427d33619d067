"""Real kubectl against the lab API server, with only the kubeconfig the server wrote (and no warnings on stderr)."""

from __future__ import annotations

import json
import queue
import re
import subprocess
import threading
from pathlib import Path

from kalab.lab.apiserver.server import RunningServer
from kalab.lab.apiserver.store import Store
from tests.lab.apiserver.api_kit import KUBECTL, Kubectl, wait_for

NAMESPACE_AND_CONFIGMAP = """\
apiVersion: v1
kind: Namespace
metadata:
  name: runbook
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: runbook
data:
  cidr: 172.21.6.32/27
"""

KEEPALIVED_CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: keepalivedgroups.redhatcop.redhat.io
spec:
  group: redhatcop.redhat.io
  names: {kind: KeepalivedGroup, listKind: KeepalivedGroupList, plural: keepalivedgroups, singular: keepalivedgroup}
  scope: Namespaced
  versions:
  - name: v1alpha1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
"""

KEEPALIVED_GROUP = """\
apiVersion: redhatcop.redhat.io/v1alpha1
kind: KeepalivedGroup
metadata:
  name: keepalivedgroup-workers
  namespace: demo
spec:
  image: registry.redhat.io/openshift4/ose-keepalived-ipfailover
  interface: ens3
  nodeSelector:
    node-role.kubernetes.io/loadbalancer: ""
"""


def table_rows(output: str) -> list[list[str]]:
    """kubectl's table output split on runs of two or more spaces (cells themselves hold single spaces)."""
    return [re.split(r"\s{2,}", line.strip()) for line in output.strip().splitlines()]


def test_get_nodes_shows_status_roles_and_version(kubectl: Kubectl) -> None:
    rows = table_rows(kubectl("get", "nodes").stdout)
    assert rows[0] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert [r[0] for r in rows[1:]] == ["master-0", "master-1", "master-2"]
    assert all(r[1] == "Ready" and r[2] == "master" and r[4] == "v1.30.4" for r in rows[1:])
    wide = table_rows(kubectl("get", "nodes", "-o", "wide").stdout)
    assert wide[0][:7] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP", "EXTERNAL-IP"]
    assert wide[2][5] == "192.168.7.14"


def test_api_resources_lists_the_short_names_users_type(kubectl: Kubectl) -> None:
    rows = {r[0]: r for r in table_rows(kubectl("api-resources").stdout)[1:]}
    assert rows["services"][1] == "svc"
    assert rows["daemonsets"][1:] == ["ds", "apps/v1", "true", "DaemonSet"]
    assert rows["clusterserviceversions"][1] == "csv,csvs"
    assert rows["securitycontextconstraints"][1:] == [
        "scc",
        "security.openshift.io/v1",
        "false",
        "SecurityContextConstraints",
    ]
    assert rows["networks"][1:] == ["config.openshift.io/v1", "false", "Network"]  # no short name
    namespaced = table_rows(kubectl("api-resources", "--namespaced=false", "-o", "name").stdout)
    assert ["nodes"] in namespaced and ["pods"] not in namespaced


def test_label_a_node_for_keepalived(kubectl: Kubectl, lab_store: Store) -> None:
    done = kubectl("label", "node", "master-1", "node-role.kubernetes.io/loadbalancer=")
    assert done.stdout.strip() == "node/master-1 labeled"
    labels = lab_store.get(lab_store.registry.by_key("/nodes"), None, "master-1")["metadata"]["labels"]
    assert labels["node-role.kubernetes.io/loadbalancer"] == ""
    assert labels["kubernetes.io/hostname"] == "master-1"
    listed = kubectl("get", "nodes", "-l", "node-role.kubernetes.io/loadbalancer", "-o", "name").stdout.split()
    assert listed == ["node/master-1"]
    rows = table_rows(kubectl("get", "node", "master-1").stdout)
    assert rows[1][2] == "loadbalancer,master"


def test_apply_twice_then_delete(kubectl: Kubectl, lab_store: Store, tmp_path: Path) -> None:
    manifest = tmp_path / "runbook.yaml"
    manifest.write_text(NAMESPACE_AND_CONFIGMAP)
    first = kubectl("apply", "-f", str(manifest))
    assert first.stdout.splitlines() == ["namespace/runbook created", "configmap/settings created"]
    second = kubectl("apply", "-f", str(manifest))
    assert second.stdout.splitlines() == ["namespace/runbook unchanged", "configmap/settings unchanged"]
    manifest.write_text(NAMESPACE_AND_CONFIGMAP.replace("172.21.6.32/27", "172.21.6.64/27"))
    third = kubectl("apply", "-f", str(manifest))
    assert third.stdout.splitlines() == ["namespace/runbook unchanged", "configmap/settings configured"]
    stored = lab_store.get(lab_store.registry.by_key("/configmaps"), "runbook", "settings")
    assert stored["data"] == {"cidr": "172.21.6.64/27"}
    assert "kubectl.kubernetes.io/last-applied-configuration" in stored["metadata"]["annotations"]
    deleted = kubectl("delete", "-f", str(manifest))
    assert deleted.stdout.splitlines() == [
        'namespace "runbook" deleted',
        'configmap "settings" deleted from runbook namespace',
    ]
    namespaces = lab_store.registry.by_key("/namespaces")
    wait_for(lambda: lab_store.try_get(namespaces, None, "runbook") is None, what="the namespace to go")


def test_get_svc_shows_the_seeds_external_ip_and_ports(kubectl: Kubectl, lab_store: Store) -> None:
    lab_store.create(
        lab_store.registry.by_key("/services"),
        {
            "metadata": {
                "name": "demo",
                "annotations": {
                    "keepalived-operator.redhat-cop.io/keepalivedgroup": "keepalived-operator/keepalivedgroup-workers"
                },
            },
            "spec": {
                "type": "LoadBalancer",
                "clusterIP": "172.30.203.237",
                "externalIPs": ["172.21.6.50"],
                "selector": {"env": "test"},
                "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 80, "nodePort": 31682}],
            },
            "status": {"loadBalancer": {"ingress": [{"ip": "172.21.6.50"}]}},
        },
        "demo",
    )
    rows = table_rows(kubectl("get", "svc", "-n", "demo").stdout)
    assert rows[0] == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert rows[1][:5] == ["demo", "LoadBalancer", "172.30.203.237", "172.21.6.50,172.21.6.50", "80:31682/TCP"]
    wide = table_rows(kubectl("get", "svc", "-A", "-o", "wide").stdout)
    assert wide[0][0] == "NAMESPACE" and wide[0][-1] == "SELECTOR"
    assert wide[1][0] == "demo" and wide[1][-1] == "env=test"


def test_patch_the_network_config_with_a_merge_patch(kubectl: Kubectl, lab_store: Store) -> None:
    patch = '{"spec":{"externalIP":{"autoAssignCIDRs":["172.21.6.32/27"]}}}'
    done = kubectl("patch", "network", "cluster", "--type=merge", "-p", patch)
    assert done.stdout.strip() == "network.config.openshift.io/cluster patched"
    spec = lab_store.get(lab_store.registry.by_key("config.openshift.io/networks"), None, "cluster")["spec"]
    assert spec["externalIP"] == {"autoAssignCIDRs": ["172.21.6.32/27"]}
    assert spec["serviceNetwork"] == ["172.30.0.0/16"]
    again = kubectl("patch", "network", "cluster", "--type=merge", "-p", patch)
    assert again.stdout.strip() == "network.config.openshift.io/cluster patched (no change)"
    shown = json.loads(kubectl("get", "network", "cluster", "-o", "json").stdout)
    assert shown["spec"]["externalIP"]["autoAssignCIDRs"] == ["172.21.6.32/27"]
    # As on OpenShift (where networks are a CRD), a strategic merge patch is refused.
    refused = kubectl("patch", "network", "cluster", "-p", patch, check=False)
    assert refused.returncode != 0 and "strategic-merge-patch" in refused.stderr


def test_crd_apply_wait_and_custom_resource(kubectl: Kubectl, tmp_path: Path) -> None:
    (tmp_path / "crd.yaml").write_text(KEEPALIVED_CRD)
    (tmp_path / "group.yaml").write_text(KEEPALIVED_GROUP)
    kubectl("apply", "-f", str(tmp_path / "crd.yaml"))
    waited = kubectl("wait", "--for=condition=Established", "crd/keepalivedgroups.redhatcop.redhat.io", "--timeout=20s")
    assert "condition met" in waited.stdout
    assert kubectl("apply", "-f", str(tmp_path / "group.yaml")).stdout.strip() == (
        "keepalivedgroup.redhatcop.redhat.io/keepalivedgroup-workers created"
    )
    assert kubectl("apply", "--server-side", "-f", str(tmp_path / "group.yaml")).stdout.strip() == (
        "keepalivedgroup.redhatcop.redhat.io/keepalivedgroup-workers serverside-applied"
    )
    rows = table_rows(kubectl("get", "keepalivedgroups", "-n", "demo").stdout)
    assert rows[0] == ["NAME", "AGE"] and rows[1][0] == "keepalivedgroup-workers"
    kubectl("delete", "-f", str(tmp_path / "crd.yaml"))


def test_get_watch_prints_changes(kubectl: Kubectl) -> None:
    watching = subprocess.Popen(
        kubectl.command("get", "nodes", "-w", "--request-timeout=30s"),
        env=kubectl.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    output = watching.stdout
    assert output is not None

    def read() -> None:
        for line in output:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        rows = [table_rows(lines.get(timeout=30))[0] for _ in range(4)]  # the header and the three nodes
        assert rows[0][0] == "NAME" and [r[0] for r in rows[1:]] == ["master-0", "master-1", "master-2"]
        kubectl("label", "node", "master-2", "node-role.kubernetes.io/loadbalancer=")  # after the list: a change
        change = table_rows(lines.get(timeout=30))[0]
        assert change[0] == "master-2" and change[2] == "loadbalancer,master"
    finally:
        watching.terminate()
        watching.wait(timeout=10)
        output.close()
        if watching.stderr is not None:
            watching.stderr.close()


def test_server_version_and_unauthorized_kubeconfig(kubectl: Kubectl, server: RunningServer, tmp_path: Path) -> None:
    version = json.loads(kubectl("version", "-o", "json", check=False).stdout)
    assert version["serverVersion"]["gitVersion"].startswith("v1.30.")
    stolen = tmp_path / "no-token"
    stolen.write_text(server.kubeconfig.read_text().replace(server.token, "not-the-token"))
    assert KUBECTL is not None
    command = [KUBECTL, "--cache-dir", str(tmp_path / "cache"), "--kubeconfig", str(stolen), "get", "nodes"]
    denied = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert denied.returncode != 0
    assert "Unauthorized" in denied.stderr or "provide credentials" in denied.stderr

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kalab.lab.apiserver.printers import age, human_duration, pod_summary, service_external_ip, service_ports
from kalab.lab.apiserver.resources import Column, Registry, ResourceType
from kalab.lab.apiserver.tables import jsonpath, table

REGISTRY = Registry()


def seed_service(**spec: Any) -> dict[str, Any]:
    """The seed's demo service after the externalIP controller assigned 172.21.6.50."""
    return {
        "metadata": {"name": "demo", "namespace": "demo", "creationTimestamp": "2021-06-09T08:51:40Z"},
        "spec": {
            "type": "LoadBalancer",
            "clusterIP": "172.30.203.237",
            "externalIPs": ["172.21.6.50"],
            "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 80, "nodePort": 31682}],
            "selector": {"env": "test"},
            **spec,
        },
        "status": {"loadBalancer": {"ingress": [{"ip": "172.21.6.50"}]}},
    }


def cells(rt_key: str, obj: dict[str, Any], wide: bool = False) -> dict[str, Any]:
    doc = table(REGISTRY.by_key(rt_key), [obj])
    columns = doc["columnDefinitions"]
    row = doc["rows"][0]["cells"]
    return {c["name"]: v for c, v in zip(columns, row, strict=True) if wide or c["priority"] == 0}


def test_service_row_matches_the_seeds_oc_get_svc() -> None:
    row = cells("/services", seed_service())
    assert list(row) == ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age"]
    assert row["Type"] == "LoadBalancer"
    assert row["Cluster-IP"] == "172.30.203.237"
    assert row["External-IP"] == "172.21.6.50,172.21.6.50"
    assert row["Port(s)"] == "80:31682/TCP"


def test_service_external_ip_cases() -> None:
    pending = seed_service(externalIPs=[])
    pending["status"] = {}
    assert service_external_ip(pending) == "<pending>"
    cluster_ip = {"spec": {"type": "ClusterIP", "ports": [{"port": 53, "protocol": "UDP"}]}}
    assert service_external_ip(cluster_ip) == "<none>"
    assert service_ports(cluster_ip) == "53/UDP"
    assert service_external_ip({"spec": {"type": "NodePort", "externalIPs": ["1.2.3.4"]}}) == "1.2.3.4"
    assert service_external_ip({"spec": {"type": "ExternalName", "externalName": "x.example"}}) == "x.example"
    long = seed_service(externalIPs=[])
    long["status"]["loadBalancer"]["ingress"] = [{"ip": "172.21.6.50"}, {"ip": "172.21.6.51"}]
    assert service_external_ip(long) == "172.21.6.50,1..."  # the printer's short form
    assert service_external_ip(long, wide=True) == "172.21.6.50,172.21.6.51"
    assert cells("/services", long)["External-IP"] == "172.21.6.50,172.21.6.51"  # tables are never shortened
    assert service_ports({"spec": {}}) == "<none>"


def test_pod_status_ready_and_restarts() -> None:
    running = {
        "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
        "status": {
            "phase": "Running",
            "containerStatuses": [
                {"name": "a", "ready": True, "restartCount": 1, "state": {"running": {}}},
                {"name": "b", "ready": True, "restartCount": 2, "state": {"running": {}}},
            ],
        },
    }
    assert pod_summary(running) == ("2/2", "Running", 3)
    pulling = {
        "spec": {"containers": [{"name": "a"}]},
        "status": {
            "phase": "Pending",
            "containerStatuses": [
                {"name": "a", "ready": False, "restartCount": 0, "state": {"waiting": {"reason": "ErrImagePull"}}}
            ],
        },
    }
    assert pod_summary(pulling) == ("0/1", "ErrImagePull", 0)
    init = {
        "spec": {"initContainers": [{"name": "config-setup"}], "containers": [{"name": "a"}]},
        "status": {
            "phase": "Pending",
            "initContainerStatuses": [{"name": "config-setup", "restartCount": 0, "state": {"running": {}}}],
        },
    }
    assert pod_summary(init) == ("0/1", "Init:0/1", 0)
    crashed_init = {
        "spec": {"initContainers": [{"name": "i"}], "containers": [{"name": "a"}]},
        "status": {
            "initContainerStatuses": [
                {"name": "i", "restartCount": 3, "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}
            ]
        },
    }
    assert pod_summary(crashed_init) == ("0/1", "Init:Error", 3)
    terminating = {
        "metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"},
        "spec": {"containers": []},
        "status": {"phase": "Running"},
    }
    assert pod_summary(terminating)[1] == "Terminating"


def test_pod_wide_columns_have_priority_one() -> None:
    pod = {
        "metadata": {"name": "test-0"},
        "spec": {"nodeName": "master-0", "containers": [{"name": "php"}]},
        "status": {"phase": "Running", "podIP": "10.254.0.5"},
    }
    doc = table(REGISTRY.by_key("/pods"), [pod])
    wide = [c["name"] for c in doc["columnDefinitions"] if c["priority"] == 1]
    assert wide == ["IP", "Node", "Nominated Node", "Readiness Gates"]
    row = cells("/pods", pod, wide=True)
    assert row["IP"] == "10.254.0.5" and row["Node"] == "master-0" and row["Nominated Node"] == "<none>"


def test_node_status_roles_and_wide_internal_ip() -> None:
    node = {
        "metadata": {
            "name": "master-1",
            "labels": {"node-role.kubernetes.io/master": "", "node-role.kubernetes.io/loadbalancer": ""},
        },
        "spec": {"unschedulable": True},
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "nodeInfo": {"kubeletVersion": "v1.30.4"},
            "addresses": [{"type": "InternalIP", "address": "192.168.7.14"}],
        },
    }
    row = cells("/nodes", node, wide=True)
    assert row["Status"] == "Ready,SchedulingDisabled"
    assert row["Roles"] == "loadbalancer,master"
    assert row["Version"] == "v1.30.4"
    assert row["Internal-IP"] == "192.168.7.14" and row["External-IP"] == "<none>"
    assert cells("/nodes", {"metadata": {"name": "n"}})["Status"] == "Unknown"


def test_daemonset_and_deployment_rows() -> None:
    ds = {
        "metadata": {"name": "keepalivedgroup-workers"},
        "spec": {
            "selector": {"matchLabels": {"keepalivedGroup": "keepalivedgroup-workers"}},
            "template": {
                "spec": {
                    "nodeSelector": {"node-role.kubernetes.io/loadbalancer": ""},
                    "containers": [{"name": "keepalived", "image": "k"}, {"name": "prometheus-exporter", "image": "e"}],
                }
            },
        },
        "status": {
            "desiredNumberScheduled": 2,
            "currentNumberScheduled": 2,
            "numberReady": 1,
            "updatedNumberScheduled": 2,
            "numberAvailable": 1,
        },
    }
    row = cells("apps/daemonsets", ds, wide=True)
    assert (row["Desired"], row["Current"], row["Ready"], row["Up-to-date"], row["Available"]) == (2, 2, 1, 2, 1)
    assert row["Node Selector"] == "node-role.kubernetes.io/loadbalancer="
    assert row["Containers"] == "keepalived,prometheus-exporter" and row["Images"] == "k,e"
    assert row["Selector"] == "keepalivedGroup=keepalivedgroup-workers"
    deploy = {
        "metadata": {"name": "op"},
        "spec": {"replicas": 2},
        "status": {"readyReplicas": 1, "availableReplicas": 1},
    }
    assert cells("apps/deployments", deploy)["Ready"] == "1/2"


def test_small_core_tables() -> None:
    assert cells("/configmaps", {"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}})["Data"] == 2
    assert cells("/namespaces", {"metadata": {"name": "demo"}})["Status"] == "Active"
    event = {
        "metadata": {"name": "e"},
        "type": "Warning",
        "reason": "FailedCreate",
        "message": "unable to validate",
        "involvedObject": {"kind": "DaemonSet", "name": "keepalivedgroup-workers"},
    }
    row = cells("/events", event)
    assert row["Object"] == "daemonset/keepalivedgroup-workers" and row["Reason"] == "FailedCreate"
    endpoints = {
        "metadata": {"name": "demo"},
        "subsets": [{"addresses": [{"ip": f"10.254.0.{i}"} for i in range(5)], "ports": [{"port": 80}]}],
    }
    assert cells("/endpoints", endpoints)["Endpoints"] == "10.254.0.0:80,10.254.0.1:80,10.254.0.2:80 + 2 more..."


def test_crd_like_and_custom_columns() -> None:
    csv = {
        "metadata": {"name": "keepalived-operator.v1.2.2"},
        "spec": {"displayName": "Keepalived Operator", "version": "1.2.2"},
        "status": {"phase": "Succeeded"},
    }
    row = cells("operators.coreos.com/clusterserviceversions", csv)
    assert row == {
        "Name": "keepalived-operator.v1.2.2",
        "Display": "Keepalived Operator",
        "Version": "1.2.2",
        "Replaces": None,
        "Phase": "Succeeded",
    }
    custom = ResourceType(
        "example.com",
        "v1",
        "Widget",
        "widgets",
        True,
        columns=(
            Column("Size", "integer", ".spec.size"),
            Column("Ports", "string", ".spec.ports[*].port"),
            Column("Ready", "boolean", "{.status.ready}", priority=1),
            Column("Age", "date", ".metadata.creationTimestamp"),
        ),
    )
    stamp = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    widget = {
        "metadata": {"name": "w", "creationTimestamp": stamp},
        "spec": {"size": 3, "ports": [{"port": 80}, {"port": 443}]},
        "status": {"ready": True},
    }
    doc = table(custom, [widget], include_object="Object")
    assert [c["name"] for c in doc["columnDefinitions"]] == ["Name", "Size", "Ports", "Ready", "Age"]
    assert doc["rows"][0]["cells"] == ["w", 3, "80,443", True, "5m"]
    assert doc["rows"][0]["object"] == widget
    plain = ResourceType("example.com", "v1", "Thing", "things", False)
    assert [c["name"] for c in table(plain, [])["columnDefinitions"]] == ["Name", "Age"]


def test_table_object_forms() -> None:
    svc = seed_service()
    as_metadata = table(REGISTRY.by_key("/services"), [svc], resource_version="7")
    assert as_metadata["kind"] == "Table" and as_metadata["apiVersion"] == "meta.k8s.io/v1"
    assert as_metadata["metadata"]["resourceVersion"] == "7"
    assert as_metadata["rows"][0]["object"] == {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": svc["metadata"],
    }
    assert "object" not in table(REGISTRY.by_key("/services"), [svc], include_object="None")["rows"][0]
    assert table(REGISTRY.by_key("/services"), [svc], with_columns=False)["columnDefinitions"] == []


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (59, "59s"),
        (119, "119s"),
        (120, "2m"),
        (150, "2m30s"),
        (600, "10m"),
        (179 * 60, "179m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 60, "3h1m"),
        (8 * 3600, "8h"),
        (47 * 3600, "47h"),
        (48 * 3600, "2d"),
        (50 * 3600, "2d2h"),
        (8 * 86400, "8d"),
        (800 * 86400, "2y70d"),
        (3000 * 86400, "8y"),
        (-5, "<invalid>"),
    ],
)
def test_human_duration_like_kubectl(seconds: int, text: str) -> None:
    assert human_duration(seconds) == text


def test_age_and_jsonpath_edges() -> None:
    now = datetime(2024, 1, 1, tzinfo=UTC)
    assert age("2023-12-31T23:59:00Z", now) == "60s"
    assert age(None, now) == "<unknown>" and age("garbage", now) == "<unknown>"
    obj = {"a": {"b.c": 1, "list": [{"x": 1}, {"x": 2}]}}
    assert jsonpath(obj, ".a['b.c']") == [1]
    assert jsonpath(obj, ".a.list[-1].x") == [2]
    assert jsonpath(obj, ".a.list[*].x") == [1, 2]
    assert jsonpath(obj, ".a.missing") == []
    assert jsonpath(obj, ".a.list[?(@.x==1)]") == []  # filters are outside the subset

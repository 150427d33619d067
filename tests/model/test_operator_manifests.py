"""What the operator renders per KeepalivedGroup, checked field by field against the seed's keepalived pod."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from kalab.model import operator_manifests as om
from kalab.model.errors import KalabError
from kalab.model.manifests import DEFAULT_IMAGE, keepalived_group
from tests.support.paths import FIXTURES

SEED_POD: dict[str, Any] = yaml.safe_load((FIXTURES / "seed_keepalived_pod.yaml").read_text())
GROUP_UID = "0d5c4b44-9f39-4a4f-9d6c-3e1a2b7c8d90"
# What the DaemonSet controller adds to every pod it creates, after the pod template's own tolerations.
DAEMONSET_TOLERATIONS = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/network-unavailable", "operator": "Exists", "effect": "NoSchedule"},
]


def seed_group(**kwargs: Any) -> dict[str, Any]:
    """The seed's group as the API returns it (with a uid), interface as in the lab."""
    group = keepalived_group(interface=kwargs.pop("interface", "eth0"), **kwargs)
    group["metadata"]["uid"] = GROUP_UID
    return group


def image_pull_policy(image: str) -> str:
    last = image.rsplit("/", 1)[-1]
    return "Always" if ":" not in last or last.endswith(":latest") else "IfNotPresent"


def apiserver_defaults(spec: dict[str, Any]) -> dict[str, Any]:
    """A pod spec with the defaults kube-apiserver fills in (and the deprecated serviceAccount alias)."""
    spec = copy.deepcopy(spec)
    for key, value in {
        "restartPolicy": "Always",
        "dnsPolicy": "ClusterFirst",
        "schedulerName": "default-scheduler",
        "terminationGracePeriodSeconds": 30,
        "securityContext": {},
        "priority": 0,
        "preemptionPolicy": "PreemptLowerPriority",
        "enableServiceLinks": True,
    }.items():
        spec.setdefault(key, value)
    spec["serviceAccount"] = spec["serviceAccountName"]
    for container in spec.get("initContainers", []) + spec["containers"]:
        container.setdefault("resources", {})
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        container.setdefault("imagePullPolicy", image_pull_policy(container["image"]))
        for port in container.get("ports", []):
            port.setdefault("protocol", "TCP")
        for env in container.get("env", []):
            if "fieldRef" in env.get("valueFrom", {}):
                env["valueFrom"]["fieldRef"].setdefault("apiVersion", "v1")
    for volume in spec["volumes"]:
        if "hostPath" in volume:
            volume["hostPath"].setdefault("type", "")
        if "configMap" in volume:
            volume["configMap"].setdefault("defaultMode", 420)
    return spec


def seed_pod_spec_from_operator() -> dict[str, Any]:
    """The seed pod's spec minus what the scheduler, the DaemonSet controller and OpenShift added to it."""
    spec = copy.deepcopy(SEED_POD["spec"])
    assert spec.pop("nodeName") == "master-1"
    assert spec.pop("affinity")["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert spec.pop("imagePullSecrets") == [{"name": "default-dockercfg-2d5d5"}]  # OpenShift's SA admission
    assert spec["tolerations"][1:] == DAEMONSET_TOLERATIONS
    spec["tolerations"] = spec["tolerations"][:1]
    return spec


@pytest.fixture
def rendered_pod() -> dict[str, Any]:
    ds = om.daemon_set(seed_group())
    return apiserver_defaults(ds["spec"]["template"]["spec"])


def test_pod_template_is_the_seed_pod(rendered_pod: dict[str, Any]) -> None:
    assert rendered_pod == seed_pod_spec_from_operator()


def _container(spec: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in spec.get("initContainers", []) + spec["containers"] if c["name"] == name)


# Every pod field FACTS.md §2 names, one by one, so a mismatch says which.
POD_FIELDS = [
    "hostNetwork",
    "shareProcessNamespace",
    "automountServiceAccountToken",
    "nodeSelector",
    "tolerations",
    "serviceAccountName",
    "volumes",
]
CONTAINER_FIELDS = ["image", "command", "args", "env", "securityContext", "ports", "volumeMounts"]


@pytest.mark.parametrize("field", POD_FIELDS)
def test_pod_field_matches_the_seed(rendered_pod: dict[str, Any], field: str) -> None:
    assert rendered_pod[field] == seed_pod_spec_from_operator()[field]


@pytest.mark.parametrize("container", ["config-setup", "keepalived", "config-reloader", "prometheus-exporter"])
@pytest.mark.parametrize("field", CONTAINER_FIELDS)
def test_container_field_matches_the_seed(rendered_pod: dict[str, Any], container: str, field: str) -> None:
    seed = _container(seed_pod_spec_from_operator(), container)
    assert _container(rendered_pod, container).get(field) == seed.get(field)


def test_container_order_and_names(rendered_pod: dict[str, Any]) -> None:
    assert [c["name"] for c in rendered_pod["initContainers"]] == ["config-setup"]
    assert [c["name"] for c in rendered_pod["containers"]] == ["keepalived", "config-reloader", "prometheus-exporter"]


def test_template_labels_and_selector_follow_the_group() -> None:
    ds = om.daemon_set(seed_group())
    seed_labels = SEED_POD["metadata"]["labels"]
    # controller-revision-hash and pod-template-generation are the DaemonSet controller's.
    assert ds["spec"]["template"]["metadata"]["labels"] == {"keepalivedGroup": seed_labels["keepalivedGroup"]}
    assert ds["spec"]["selector"] == {"matchLabels": {"keepalivedGroup": "keepalivedgroup-workers"}}
    assert ds["metadata"]["name"] == SEED_POD["metadata"]["ownerReferences"][0]["name"]
    assert ds["metadata"]["namespace"] == SEED_POD["metadata"]["namespace"]


def test_owned_by_the_group() -> None:
    for obj in (
        om.config_map(seed_group(), "x"),
        om.daemon_set(seed_group()),
        om.pod_monitor(seed_group()),
        om.prometheus_role(seed_group()),
        om.prometheus_role_binding(seed_group()),
    ):
        assert obj["metadata"]["ownerReferences"] == [
            {
                "apiVersion": "redhatcop.redhat.io/v1alpha1",
                "kind": "KeepalivedGroup",
                "name": "keepalivedgroup-workers",
                "uid": GROUP_UID,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        assert obj["metadata"]["namespace"] == "keepalived-operator"


def test_offline_group_renders_without_owner() -> None:
    group = keepalived_group(interface="eth0")
    assert "ownerReferences" not in om.config_map(group, "x")["metadata"]


def test_config_map_carries_the_text_under_keepalived_conf() -> None:
    cm = om.config_map(seed_group(), "global_defs {\n}\n")
    assert cm["kind"] == "ConfigMap" and cm["metadata"]["name"] == "keepalivedgroup-workers"
    assert cm["data"] == {"keepalived.conf": "global_defs {\n}\n"}


def test_group_options_reach_the_pod() -> None:
    group = seed_group(
        interface=None,
        interface_from_ip="192.168.7.1",
        image="quay.io/example/keepalived:2.2.7",
        node_selector={"role": "edge"},
        priority_class="system-node-critical",
        pod_annotations={"example.com/owner": "netops"},
    )
    template = om.daemon_set(group, operator_image="quay.io/example/operator:v1")["spec"]["template"]
    spec = template["spec"]
    assert template["metadata"]["annotations"] == {"example.com/owner": "netops"}
    assert spec["priorityClassName"] == "system-node-critical"
    assert spec["nodeSelector"] == {"role": "edge"}
    assert _container(spec, "keepalived")["image"] == "quay.io/example/keepalived:2.2.7"
    for name in ("config-setup", "config-reloader", "prometheus-exporter"):
        assert _container(spec, name)["image"] == "quay.io/example/operator:v1"
    for name in ("config-setup", "config-reloader"):
        assert {"name": "reachip", "value": "192.168.7.1"} in _container(spec, name)["env"]


def test_missing_image_falls_back_to_the_crd_default() -> None:
    group = seed_group()
    del group["spec"]["image"]
    assert _container(om.pod_template_spec(group), "keepalived")["image"] == DEFAULT_IMAGE


def test_rejects_what_is_not_a_group() -> None:
    with pytest.raises(KalabError, match="Expected a KeepalivedGroup"):
        om.daemon_set({"kind": "Service", "metadata": {"name": "demo"}})
    with pytest.raises(KalabError, match=r"no metadata\.name"):
        om.config_map({"kind": "KeepalivedGroup", "metadata": {}}, "")


def test_pod_monitor_scrapes_the_metrics_port() -> None:
    pm = om.pod_monitor(seed_group())
    assert pm["apiVersion"] == "monitoring.coreos.com/v1" and pm["kind"] == "PodMonitor"
    assert pm["metadata"]["labels"] == {"metrics": "keepalived"}
    assert pm["spec"]["selector"] == {"matchLabels": {"keepalivedGroup": "keepalivedgroup-workers"}}
    assert pm["spec"]["podMetricsEndpoints"] == [{"port": "metrics", "path": "/metrics"}]
    port = _container(SEED_POD["spec"], "prometheus-exporter")["ports"][0]
    assert port["name"] == "metrics" and port["containerPort"] == 9650


def test_prometheus_may_discover_the_pods() -> None:
    role, binding = om.prometheus_role(seed_group()), om.prometheus_role_binding(seed_group())
    assert role["kind"] == "Role" and "pods" in role["rules"][0]["resources"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "prometheus-k8s", "namespace": "openshift-monitoring"}
    ]


def test_crd_matches_facts() -> None:
    crd = om.keepalivedgroup_crd()
    spec = crd["spec"]
    assert crd["metadata"]["name"] == "keepalivedgroups.redhatcop.redhat.io"
    assert spec["group"] == "redhatcop.redhat.io" and spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == "KeepalivedGroup" and spec["names"]["plural"] == "keepalivedgroups"
    (version,) = spec["versions"]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    schema = version["schema"]["openAPIV3Schema"]["properties"]
    assert schema["spec"]["required"] == ["interface"]
    assert schema["spec"]["properties"]["image"]["default"] == DEFAULT_IMAGE
    assert schema["status"]["x-kubernetes-preserve-unknown-fields"] is True
    # Every spec field FACTS.md §2 lists is in the schema.
    for field in (
        "image",
        "interface",
        "interfaceFromIP",
        "nodeSelector",
        "blacklistRouterIDs",
        "unicastEnabled",
        "passwordAuth",
        "verbatimConfig",
        "daemonsetPodPriorityClassName",
        "daemonsetPodAnnotations",
    ):
        assert field in schema["spec"]["properties"]


def test_operator_csv_owns_the_crd_and_runs_the_manager() -> None:
    csv = om.operator_csv("keepalived-operator")
    assert csv["metadata"]["name"] == om.csv_name() == f"keepalived-operator.v{om.OPERATOR_VERSION}"
    owned = csv["spec"]["customresourcedefinitions"]["owned"]
    assert [c["name"] for c in owned] == [om.CRD_NAME]
    (deployment,) = csv["spec"]["install"]["spec"]["deployments"]
    assert deployment["name"] == "keepalived-operator"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "keepalived-operator"
    assert pod["containers"][0]["image"] == om.OPERATOR_IMAGE
    assert pod["containers"][0]["command"] == ["/manager"]
    modes = {m["type"]: m["supported"] for m in csv["spec"]["installModes"]}
    assert modes["AllNamespaces"] is True  # the seed's OperatorGroup targets all namespaces

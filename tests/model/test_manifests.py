"""Manifests: checked against the seed's own templates (network-patch.yaml, demo.yaml) and FACTS §2."""

from __future__ import annotations

import json
import re
import string
from typing import Any

import pytest
import yaml

from kalab.model import manifests as m
from kalab.model.errors import KalabError
from tests.support.paths import FIXTURES, SEED

SEED_CIDR = "172.21.6.33/27"

# What `envsubst < network-patch.yaml | yq eval -j -` prints for the seed's exports.
SEED_PATCH_JSON = (FIXTURES / "seed_network_patch.json").read_text()


def seed_heredoc(filename: str) -> str:
    """The body of the seed's `cat << ... > /data/install/<filename>` block."""
    text = SEED.read_text(encoding="utf-8")
    match = re.search(rf"cat << '?EOF'? > /data/install/{re.escape(filename)}\n(.*?)\nEOF\n", text, re.S)
    assert match, f"{filename} not found in the seed"
    return match.group(1)


# --- network patch ---------------------------------------------------------------------------------------------


def test_network_patch_json_is_byte_identical_to_the_seed_pipeline() -> None:
    assert m.network_patch_json(SEED_CIDR, SEED_CIDR) == SEED_PATCH_JSON


def test_network_patch_matches_the_seed_template_after_envsubst() -> None:
    template = string.Template(seed_heredoc("network-patch.yaml"))
    for allowed, auto in [(SEED_CIDR, SEED_CIDR), ("172.21.0.0/16", "172.21.6.32/28")]:
        rendered = template.substitute(ALLOWED_CIDR=allowed, AUTOASSIGNED_CIDR=auto)
        from_seed = yaml.safe_load(rendered)
        assert m.network_patch(allowed, auto) == from_seed
        # yq keeps the template's key order: the JSON text must too.
        assert m.network_patch_json(allowed, auto) == json.dumps(from_seed, indent=2) + "\n"


def test_network_patch_keeps_values_verbatim_and_policy_first() -> None:
    patch = m.network_patch("172.21.6.33/27", "172.21.6.40/29")
    external = patch["spec"]["externalIP"]
    assert list(external) == ["policy", "autoAssignCIDRs"]
    assert external == {"policy": {"allowedCIDRs": ["172.21.6.33/27"]}, "autoAssignCIDRs": ["172.21.6.40/29"]}


@pytest.mark.parametrize(
    ("allowed", "auto", "needle"),
    [
        ("banana", SEED_CIDR, 'The allowed range "banana" is not a CIDR'),
        (SEED_CIDR, "fd00::/64", 'The auto-assign range "fd00::/64" is an IPv6 network'),
        (SEED_CIDR, "172.21.6.50", "single address"),
    ],
)
def test_network_patch_rejects_what_is_not_an_ipv4_cidr(allowed: str, auto: str, needle: str) -> None:
    with pytest.raises(KalabError, match=re.escape(needle)):
        m.network_patch(allowed, auto)


# --- demo ------------------------------------------------------------------------------------------------------


def test_demo_defaults_are_the_seed_demo_yaml_plus_namespace() -> None:
    seed_docs = [d for d in yaml.safe_load_all(seed_heredoc("demo.yaml")) if d]
    ours = m.demo()
    assert len(ours) == len(seed_docs) == 3
    for mine, theirs in zip(ours, seed_docs, strict=True):
        assert mine["metadata"].pop("namespace") == "demo"
        theirs.setdefault("apiVersion", "v1")
        assert mine == theirs


def test_demo_pins_one_pod_per_chosen_node() -> None:
    objects = m.demo("shop", nodes=("worker-a", "worker-b", "worker-c"), image="example.com/php:1", service="web")
    pods, service = objects[:-1], objects[-1]
    assert [p["metadata"]["name"] for p in pods] == ["test-0", "test-1", "test-2"]
    assert [p["spec"]["nodeSelector"] for p in pods] == [
        {"kubernetes.io/hostname": n} for n in ("worker-a", "worker-b", "worker-c")
    ]
    assert {p["spec"]["containers"][0]["image"] for p in pods} == {"example.com/php:1"}
    assert {o["metadata"]["namespace"] for o in objects} == {"shop"}
    assert service["metadata"]["name"] == "web"
    assert service["spec"]["selector"] == pods[0]["metadata"]["labels"] == {"env": "test"}


def test_demo_service_points_at_the_chosen_group() -> None:
    service = m.demo(group="lb/edge")[-1]
    assert service["metadata"]["annotations"] == {"keepalived-operator.redhat-cop.io/keepalivedgroup": "lb/edge"}
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["ports"] == [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 80}]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"nodes": ()}, "at least one node"),
        ({"nodes": ("Master_0",)}, 'The node name "Master_0"'),
        ({"namespace": "Demo"}, 'The namespace "Demo"'),
        ({"group": "keepalivedgroup-workers"}, "<namespace>/<name>"),
        ({"group": "a/b/c"}, "<namespace>/<name>"),
        ({"service": "1demo"}, "starting with a letter"),
        ({"image": "php demo"}, "not an image reference"),
    ],
)
def test_demo_validation(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(KalabError, match=re.escape(needle)):
        m.demo(**kwargs)


# --- OLM -------------------------------------------------------------------------------------------------------


def test_olm_install_matches_facts() -> None:
    namespace, group, sub = m.olm_install()
    assert namespace == {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "keepalived-operator"}}
    assert group["kind"] == "OperatorGroup" and group["apiVersion"] == "operators.coreos.com/v1"
    assert group["metadata"]["namespace"] == "keepalived-operator"
    assert "targetNamespaces" not in group["spec"]  # all namespaces
    assert sub["apiVersion"] == "operators.coreos.com/v1alpha1" and sub["kind"] == "Subscription"
    assert sub["metadata"] == {"name": "keepalived-operator", "namespace": "keepalived-operator"}
    assert sub["spec"] == {
        "channel": "alpha",
        "installPlanApproval": "Automatic",
        "name": "keepalived-operator",
        "source": "community-operators",
        "sourceNamespace": "openshift-marketplace",
    }


def test_olm_install_options() -> None:
    objects = m.olm_install("lb", channel="stable", source="my-catalog", source_namespace="olm", package="kad")
    assert {o["metadata"].get("namespace", o["metadata"]["name"]) for o in objects} == {"lb"}
    assert objects[2]["metadata"]["name"] == "kad"
    assert objects[2]["spec"]["source"] == "my-catalog" and objects[2]["spec"]["sourceNamespace"] == "olm"


@pytest.mark.parametrize("kwargs", [{"namespace": "Keepalived"}, {"channel": "al pha"}, {"source": "a_b"}])
def test_olm_install_validation(kwargs: dict[str, Any]) -> None:
    with pytest.raises(KalabError):
        m.olm_install(**kwargs)


# --- KeepalivedGroup -------------------------------------------------------------------------------------------


def test_minimal_group() -> None:
    group = m.keepalived_group(interface="ens3")
    assert group["apiVersion"] == "redhatcop.redhat.io/v1alpha1" and group["kind"] == "KeepalivedGroup"
    assert group["metadata"] == {"name": "keepalivedgroup-workers", "namespace": "keepalived-operator"}
    assert group["spec"] == {
        "image": "registry.redhat.io/openshift4/ose-keepalived-ipfailover",
        "interface": "ens3",
        "nodeSelector": {"node-role.kubernetes.io/loadbalancer": ""},
    }


def test_group_with_every_field_uses_the_crd_field_names() -> None:
    spec = m.keepalived_group(
        interface="ens3",
        node_selector={"kubernetes.io/hostname": "master-1"},
        image="example.com/keepalived:2",
        blacklist_router_ids=[1, 2, 254],
        unicast=True,
        password_secret="vrrp",
        password_key="pass",
        verbatim={"vrrp_garp_master_delay": "1"},
        priority_class="system-node-critical",
        pod_annotations={"example.com/team": "net"},
    )["spec"]
    assert spec == {
        "image": "example.com/keepalived:2",
        "interface": "ens3",
        "nodeSelector": {"kubernetes.io/hostname": "master-1"},
        "blacklistRouterIDs": [1, 2, 254],
        "unicastEnabled": True,
        "passwordAuth": {"secretRef": {"name": "vrrp"}, "secretKey": "pass"},
        "verbatimConfig": {"vrrp_garp_master_delay": "1"},
        "daemonsetPodPriorityClassName": "system-node-critical",
        "daemonsetPodAnnotations": {"example.com/team": "net"},
    }


def test_group_from_ip_keeps_the_required_interface_field() -> None:
    spec = m.keepalived_group(interface_from_ip="192.168.7.1")["spec"]
    assert spec["interfaceFromIP"] == "192.168.7.1"
    assert spec["interface"] == ""  # the CRD requires the field; the operator ignores it here


def test_group_empty_node_selector_means_all_nodes() -> None:
    assert m.keepalived_group(interface="ens3", node_selector={})["spec"]["nodeSelector"] == {}


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({}, "needs an interface"),
        ({"interface_from_ip": "192.168.7.1/24"}, "not an IPv4 address"),
        ({"interface_from_ip": "fd00::1"}, "not an IPv4 address"),
        ({"interface": "a-very-long-interface0"}, "not a valid Linux interface name"),
        ({"interface": "eth 0"}, "not a valid Linux interface name"),
        ({"interface": "ens3", "blacklist_router_ids": [0]}, "1 to 255"),
        ({"interface": "ens3", "blacklist_router_ids": [256]}, "1 to 255"),
        ({"interface": "ens3", "blacklist_router_ids": [True]}, "1 to 255"),
        ({"interface": "ens3", "node_selector": {"bad key!": ""}}, "not a valid key"),
        ({"interface": "ens3", "node_selector": {"role": "a b"}}, "not a valid label value"),
        ({"interface": "ens3", "verbatim": {"global": "x\ny"}}, "cannot become one keepalived line"),
        ({"interface": "ens3", "password_secret": "vrrp", "password_key": "a/b"}, "not a valid Secret key"),
        ({"interface": "ens3", "name": "Workers"}, "KeepalivedGroup name"),
        ({"interface": "ens3", "priority_class": "High"}, "priority class"),
    ],
)
def test_group_validation(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(KalabError, match=re.escape(needle)) as err:
        m.keepalived_group(**kwargs)
    assert "\n" not in str(err.value) and str(err.value).endswith(".")


# --- SCC -------------------------------------------------------------------------------------------------------


def test_scc_user_is_what_add_scc_to_user_adds() -> None:
    assert m.scc_user("keepalived-operator", "default") == "system:serviceaccount:keepalived-operator:default"


def test_scc_grant_users_form_is_a_json_patch_appending_the_user() -> None:
    assert m.scc_grant() == [
        {"op": "add", "path": "/users/-", "value": "system:serviceaccount:keepalived-operator:default"}
    ]
    patch = m.scc_grant("lb", "keepalived")
    assert isinstance(patch, list)
    assert patch[0]["value"] == "system:serviceaccount:lb:keepalived"


def test_scc_grant_rbac_form_binds_the_scc_cluster_role() -> None:
    binding = m.scc_grant("lb", "keepalived", "privileged", form="rbac")
    assert binding == {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "system:openshift:scc:privileged", "namespace": "lb"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "system:openshift:scc:privileged",
        },
        "subjects": [{"kind": "ServiceAccount", "name": "keepalived", "namespace": "lb"}],
    }
    other = m.scc_grant(scc="hostnetwork", form="rbac")
    assert isinstance(other, dict)
    assert other["roleRef"]["name"] == "system:openshift:scc:hostnetwork"


def test_scc_grant_validation() -> None:
    with pytest.raises(KalabError, match=r'"users".*"rbac"'):
        m.scc_grant(form="both")  # type: ignore[arg-type]  # the CLI passes any string
    with pytest.raises(KalabError, match="namespace"):
        m.scc_grant(namespace="Bad_NS")

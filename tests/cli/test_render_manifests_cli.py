"""`kalab render olm|keepalivedgroup|scc-grant|network-patch|demo` run as a real process."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
import yaml

from tests.support.kalabcli import one_stderr_line
from tests.support.kalabcli import run_kalab as kalab
from tests.support.paths import FIXTURES

# What `envsubst < network-patch.yaml | yq eval -j -` prints for the seed's exports.
SEED_PATCH_JSON = (FIXTURES / "seed_network_patch.json").read_text()


def yaml_docs(result: subprocess.CompletedProcess[str]) -> list[Any]:
    assert result.returncode == 0, result.stderr
    return list(yaml.safe_load_all(result.stdout))


def test_network_patch_json_is_the_seed_pipeline_output_and_warns_about_host_bits() -> None:
    result = kalab(
        "render", "network-patch", "--allowed", "172.21.6.33/27", "--auto-assign", "172.21.6.33/27", "--json"
    )
    assert result.returncode == 0
    assert result.stdout == SEED_PATCH_JSON
    warning = one_stderr_line(result)  # the same CIDR twice gives one warning
    assert warning.startswith("kalab: warning: 172.21.6.33/27 has host bits set: the network is 172.21.6.32/27")


def test_network_patch_yaml_without_host_bits_is_silent() -> None:
    result = kalab("render", "network-patch", "--allowed", "172.21.6.0/24", "--auto-assign", "172.21.6.32/27")
    assert result.stderr == ""
    (patch,) = yaml_docs(result)
    assert patch == {
        "spec": {"externalIP": {"policy": {"allowedCIDRs": ["172.21.6.0/24"]}, "autoAssignCIDRs": ["172.21.6.32/27"]}}
    }


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--allowed", "banana", "--auto-assign", "172.21.6.32/27"], 'The allowed range "banana" is not a CIDR'),
        (["--allowed", "172.21.6.0/24", "--auto-assign", "fd00::/64"], "IPv6"),
    ],
)
def test_network_patch_bad_cidr(args: list[str], needle: str) -> None:
    result = kalab("render", "network-patch", *args)
    assert result.returncode == 1
    assert result.stdout == ""
    line = one_stderr_line(result)
    assert line.startswith("kalab: error: ") and needle in line


def test_olm() -> None:
    docs = yaml_docs(kalab("render", "olm"))
    assert [d["kind"] for d in docs] == ["Namespace", "OperatorGroup", "Subscription"]
    assert docs[2]["spec"]["installPlanApproval"] == "Automatic"
    as_json = json.loads(kalab("render", "olm", "--namespace", "lb", "--channel", "stable", "--json").stdout)
    assert as_json[0]["metadata"]["name"] == "lb" and as_json[2]["spec"]["channel"] == "stable"


def test_keepalivedgroup_options_reach_the_spec() -> None:
    result = kalab(
        "render",
        "keepalivedgroup",
        "--interface",
        "ens3",
        "--node-selector",
        "node-role.kubernetes.io/loadbalancer=",
        "--node-selector",
        "zone=a",
        "--blacklist-router-ids",
        "1,2",
        "--blacklist-router-ids",
        "9",
        "--unicast",
        "--password-secret",
        "vrrp",
        "--verbatim",
        "vrrp_garp_master_delay=1",
        "--priority-class",
        "system-node-critical",
        "--pod-annotation",
        "example.com/team=net",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    spec = json.loads(result.stdout)["spec"]
    assert spec["nodeSelector"] == {"node-role.kubernetes.io/loadbalancer": "", "zone": "a"}
    assert spec["blacklistRouterIDs"] == [1, 2, 9]
    assert spec["unicastEnabled"] is True
    assert spec["passwordAuth"] == {"secretRef": {"name": "vrrp"}, "secretKey": "password"}
    assert spec["verbatimConfig"] == {"vrrp_garp_master_delay": "1"}
    assert spec["daemonsetPodPriorityClassName"] == "system-node-critical"
    assert spec["daemonsetPodAnnotations"] == {"example.com/team": "net"}


def test_keepalivedgroup_defaults_and_all_nodes() -> None:
    (group,) = yaml_docs(kalab("render", "keepalivedgroup", "--interface-from-ip", "192.168.7.1"))
    assert group["spec"]["interfaceFromIP"] == "192.168.7.1"
    assert group["spec"]["nodeSelector"] == {"node-role.kubernetes.io/loadbalancer": ""}
    (everywhere,) = yaml_docs(kalab("render", "keepalivedgroup", "--interface", "ens3", "--all-nodes"))
    assert everywhere["spec"]["nodeSelector"] == {}


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ([], "needs an interface"),
        (["--interface", "ens3", "--blacklist-router-ids", "1,x"], '"x" is not one'),
        (["--interface", "ens3", "--blacklist-router-ids", "300"], "1 to 255"),
        (["--interface", "ens3", "--node-selector", "zone"], "--node-selector takes KEY=VALUE"),
        (["--interface", "ens3", "--verbatim", "=1"], "--verbatim takes KEY=VALUE"),
        (["--interface-from-ip", "192.168.7.0/24"], "not an IPv4 address"),
    ],
)
def test_keepalivedgroup_bad_values(args: list[str], needle: str) -> None:
    result = kalab("render", "keepalivedgroup", *args)
    assert result.returncode == 1
    assert result.stdout == ""
    line = one_stderr_line(result)
    assert line.startswith("kalab: error: ") and needle in line


def test_scc_grant_users_is_an_applicable_json_patch() -> None:
    result = kalab("render", "scc-grant", "--json")
    assert result.returncode == 0
    assert json.loads(result.stdout) == [
        {"op": "add", "path": "/users/-", "value": "system:serviceaccount:keepalived-operator:default"}
    ]
    # In YAML it is one document holding the list, which `oc patch -p` accepts just the same.
    assert yaml_docs(kalab("render", "scc-grant")) == [json.loads(result.stdout)]


def test_scc_grant_rbac() -> None:
    (binding,) = yaml_docs(kalab("render", "scc-grant", "--form", "rbac", "--namespace", "lb"))
    assert binding["kind"] == "RoleBinding"
    assert binding["metadata"] == {"name": "system:openshift:scc:privileged", "namespace": "lb"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "default", "namespace": "lb"}]


def test_scc_grant_unknown_form() -> None:
    result = kalab("render", "scc-grant", "--form", "both")
    assert result.returncode == 1
    assert '"users"' in one_stderr_line(result)


def test_demo_defaults_and_options() -> None:
    docs = yaml_docs(kalab("render", "demo"))
    assert [(d["kind"], d["metadata"]["name"]) for d in docs] == [
        ("Pod", "test-0"),
        ("Pod", "test-1"),
        ("Service", "demo"),
    ]
    assert [d["spec"]["nodeSelector"]["kubernetes.io/hostname"] for d in docs[:2]] == ["master-0", "master-2"]
    docs = json.loads(
        kalab("render", "demo", "--namespace", "shop", "--nodes", "master-1", "--group", "lb/edge", "--json").stdout
    )
    assert len(docs) == 2
    assert {d["metadata"]["namespace"] for d in docs} == {"shop"}
    assert docs[1]["metadata"]["annotations"]["keepalived-operator.redhat-cop.io/keepalivedgroup"] == "lb/edge"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--nodes", "master-0,,master-2"], "--nodes takes node names"),
        (["--group", "workers"], "<namespace>/<name>"),
        (["--namespace", "Demo"], 'The namespace "Demo"'),
    ],
)
def test_demo_bad_values(args: list[str], needle: str) -> None:
    result = kalab("render", "demo", *args)
    assert result.returncode == 1
    line = one_stderr_line(result)
    assert line.startswith("kalab: error: ") and needle in line

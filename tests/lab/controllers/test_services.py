"""Services: cluster IPs and node ports as kube-apiserver allocates them, OpenShift's externalIP policy, and the
auto-assignment of LoadBalancer addresses from the network config — live, as `oc patch network cluster` changes it."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kalab.lab.apiserver.errors import ApiError
from kalab.lab.controllers.bootstrap import bootstrap
from kalab.lab.controllers.service_ranges import ExternalIPPolicy, first_free, pick_cluster_ip
from kalab.lab.controllers.services import ExternalIPController, install_service_admission
from tests.lab.controllers.cluster_kit import ControlPlane, wait_for
from tests.support.paths import FIXTURES

NETWORK = "config.openshift.io/networks"
SEED_PATCH: dict[str, Any] = json.loads((FIXTURES / "seed_network_patch.json").read_text())


@pytest.fixture
def cp(tmp_path: Path) -> Iterator[ControlPlane]:
    plane = ControlPlane(tmp_path)
    bootstrap(plane.ctx)
    install_service_admission(plane.ctx)
    plane.namespace("demo")
    yield plane
    plane.stop()


def demo_service(name: str = "demo", type_: str = "LoadBalancer", **spec: Any) -> dict[str, Any]:
    """The seed's demo Service."""
    return {
        "metadata": {
            "name": name,
            "annotations": {
                "keepalived-operator.redhat-cop.io/keepalivedgroup": "keepalived-operator/keepalivedgroup-workers"
            },
        },
        "spec": {
            "type": type_,
            "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 80}],
            "selector": {"env": "test"},
            **spec,
        },
    }


def create(cp: ControlPlane, svc: dict[str, Any]) -> dict[str, Any]:
    return cp.create("/services", svc, "demo")


def refused(cp: ControlPlane, svc: dict[str, Any]) -> ApiError:
    with pytest.raises(ApiError) as err:
        create(cp, svc)
    assert err.value.code == 422 and err.value.reason == "Invalid"
    return err.value


def external_column(svc: dict[str, Any]) -> str:
    """What `oc get svc` shows as EXTERNAL-IP: load-balancer ingress, then spec.externalIPs."""
    ingress = [i["ip"] for i in (svc.get("status") or {}).get("loadBalancer", {}).get("ingress", [])]
    shown = ingress + list(svc["spec"].get("externalIPs") or [])
    return ",".join(shown) if shown else "<pending>"


# ------------------------------------------------------------------------------------------- cluster IPs, ports


def test_cluster_ip_and_node_port_are_allocated(cp: ControlPlane) -> None:
    svc = create(cp, demo_service())
    spec = svc["spec"]
    ip = ipaddress.IPv4Address(spec["clusterIP"])
    assert ip in ipaddress.IPv4Network("172.30.0.0/16") and str(ip) not in ("172.30.0.0", "172.30.0.1")
    assert spec["clusterIPs"] == [spec["clusterIP"]]
    assert 30000 <= spec["ports"][0]["nodePort"] <= 32767
    assert spec["externalTrafficPolicy"] == "Cluster"
    assert "healthCheckNodePort" not in spec
    assert svc["status"] == {"loadBalancer": {}}


def test_allocation_is_repeatable_for_the_same_name(cp: ControlPlane) -> None:
    first = create(cp, demo_service())
    cp.store.delete(cp.rt("/services"), "demo", "demo")
    again = create(cp, demo_service())
    assert again["spec"]["clusterIP"] == first["spec"]["clusterIP"]
    other = create(cp, demo_service("other"))
    assert other["spec"]["clusterIP"] != first["spec"]["clusterIP"]
    assert other["spec"]["ports"][0]["nodePort"] != first["spec"]["ports"][0]["nodePort"]


def test_pick_cluster_ip_skips_network_and_first_address() -> None:
    tiny = ipaddress.IPv4Network("10.0.0.0/29")  # .0 network, .1 kubernetes, .7 broadcast
    picked = {pick_cluster_ip(tiny, set(), f"svc-{i}") for i in range(50)}
    assert picked <= {f"10.0.0.{i}" for i in range(2, 7)}
    assert pick_cluster_ip(tiny, {f"10.0.0.{i}" for i in range(2, 7)}, "x") is None


def test_cluster_ip_kinds(cp: ControlPlane) -> None:
    plain = create(cp, {"metadata": {"name": "plain"}, "spec": {"ports": [{"port": 8080}]}})
    assert plain["spec"]["type"] == "ClusterIP" and "externalTrafficPolicy" not in plain["spec"]
    assert plain["spec"]["ports"][0] == {"port": 8080, "protocol": "TCP", "targetPort": 8080}
    assert "nodePort" not in plain["spec"]["ports"][0]
    headless = create(cp, {"metadata": {"name": "headless"}, "spec": {"clusterIP": "None", "ports": [{"port": 80}]}})
    assert headless["spec"]["clusterIP"] == "None"
    chosen = create(cp, demo_service("seed", clusterIP="172.30.203.237"))
    assert chosen["spec"]["clusterIP"] == "172.30.203.237"
    err = refused(cp, demo_service("again", clusterIP="172.30.203.237"))
    assert "failed to allocate IP 172.30.203.237: provided IP is already allocated" in err.message
    err = refused(cp, demo_service("outside", clusterIP="10.0.0.5"))
    assert "The range of valid IPs is 172.30.0.0/16" in err.message


def test_updates_keep_what_was_allocated(cp: ControlPlane) -> None:
    svc = create(cp, demo_service())
    ip, port = svc["spec"]["clusterIP"], svc["spec"]["ports"][0]["nodePort"]
    # A replace that leaves the allocated values out (like `kubectl replace` of the original YAML) keeps them.
    fresh = demo_service()
    fresh["metadata"]["labels"] = {"app": "demo"}
    updated = cp.store.update(cp.rt("/services"), fresh, "demo")
    assert updated["spec"]["clusterIP"] == ip and updated["spec"]["ports"][0]["nodePort"] == port
    with pytest.raises(ApiError) as err:
        cp.patch("/services", "demo", {"spec": {"clusterIP": "172.30.0.9", "clusterIPs": ["172.30.0.9"]}}, "demo")
    assert err.value.code == 422 and "may not change once set" in err.value.message
    as_cluster_ip = cp.patch("/services", "demo", {"spec": {"type": "ClusterIP"}}, "demo")
    assert "nodePort" not in as_cluster_ip["spec"]["ports"][0]


def test_node_ports_are_checked(cp: ControlPlane) -> None:
    create(cp, demo_service(ports=[{"name": "http", "port": 80, "nodePort": 31682}]))
    err = refused(cp, demo_service("taken", ports=[{"name": "http", "port": 80, "nodePort": 31682}]))
    assert "spec.ports[0].nodePort: Invalid value: 31682: provided port is already allocated" in err.message
    err = refused(cp, demo_service("low", ports=[{"name": "http", "port": 80, "nodePort": 8080}]))
    assert "The range of valid ports is 30000-32767" in err.message
    err = refused(
        cp,
        demo_service(
            "twice", ports=[{"name": "a", "port": 80, "nodePort": 31000}, {"name": "b", "port": 81, "nodePort": 31000}]
        ),
    )
    assert "Duplicate value: 31000" in err.message


def test_local_load_balancer_gets_a_health_check_port(cp: ControlPlane) -> None:
    svc = create(cp, demo_service(externalTrafficPolicy="Local"))
    health = svc["spec"]["healthCheckNodePort"]
    assert 30000 <= health <= 32767 and health != svc["spec"]["ports"][0]["nodePort"]
    kept = cp.patch("/services", "demo", {"metadata": {"labels": {"x": "y"}}}, "demo")
    assert kept["spec"]["healthCheckNodePort"] == health
    cluster = cp.patch("/services", "demo", {"spec": {"externalTrafficPolicy": "Cluster"}}, "demo")
    assert "healthCheckNodePort" not in cluster["spec"]


# ------------------------------------------------------------------------------------------- externalIP policy


def test_without_a_policy_every_external_ip_is_rejected(cp: ControlPlane) -> None:
    err = refused(cp, demo_service("manual", "ClusterIP", externalIPs=["172.21.6.40"]))
    assert 'spec.externalIPs[0]: Invalid value: "172.21.6.40": externalIP is not allowed' in err.message
    assert "no spec.externalIP.policy" in err.message


def test_the_policy_allows_and_rejects(cp: ControlPlane) -> None:
    cp.patch(NETWORK, "cluster", SEED_PATCH)
    ok = create(cp, demo_service("inside", "ClusterIP", externalIPs=["172.21.6.40"]))
    assert ok["spec"]["externalIPs"] == ["172.21.6.40"]
    err = refused(cp, demo_service("outside", "ClusterIP", externalIPs=["172.21.7.40"]))
    assert '"172.21.7.40": externalIP is not allowed' in err.message
    assert "not in spec.externalIP.policy.allowedCIDRs [172.21.6.32/27]" in err.message
    policy = {"allowedCIDRs": ["172.21.6.0/24"], "rejectedCIDRs": ["172.21.6.48/28"]}
    cp.patch(NETWORK, "cluster", {"spec": {"externalIP": {"policy": policy}}})
    err = refused(cp, demo_service("rejected", "ClusterIP", externalIPs=["172.21.6.50"]))
    assert "172.21.6.50 is in spec.externalIP.policy.rejectedCIDRs (172.21.6.48/28)" in err.message
    assert create(cp, demo_service("allowed", "ClusterIP", externalIPs=["172.21.6.20"]))
    # An update that does not add an address is not re-checked against a policy that changed meanwhile.
    cp.patch(NETWORK, "cluster", {"spec": {"externalIP": {"policy": {"allowedCIDRs": ["10.0.0.0/8"]}}}})
    assert cp.patch("/services", "inside", {"metadata": {"labels": {"x": "y"}}}, "demo")


def test_policy_rules() -> None:
    def policy(**fields: Any) -> ExternalIPPolicy:
        return ExternalIPPolicy.of({"spec": {"externalIP": {"policy": fields}}})

    ip = ipaddress.IPv4Address("192.0.2.10")
    assert ExternalIPPolicy.of(None).refusal(ip)
    assert policy().refusal(ip)  # an empty policy allows nothing either
    assert policy(rejectedCIDRs=["198.51.100.0/24"]).refusal(ip) is None  # only rejections: the rest is allowed
    assert policy(allowedCIDRs=["192.0.2.0/24"], rejectedCIDRs=["192.0.2.8/29"]).refusal(ip)
    assert policy(allowedCIDRs=["192.0.2.0/24"]).refusal(ip) is None


# ------------------------------------------------------------------------------------------- auto-assignment


def test_first_free_avoids_network_and_broadcast() -> None:
    block = ipaddress.IPv4Network("172.21.6.33/27", strict=False)
    assert first_free(block, set()) == "172.21.6.33"
    assert first_free(block, {"172.21.6.33"}) == "172.21.6.34"
    assert first_free(block, {f"172.21.6.{i}" for i in range(33, 63)}) is None  # .63 is the broadcast


@pytest.fixture
def assigning(cp: ControlPlane) -> ControlPlane:
    cp.start(ExternalIPController(cp.ctx))
    return cp


def service(cp: ControlPlane, name: str = "demo") -> dict[str, Any]:
    found = cp.get("/services", name, "demo")
    assert found is not None
    return found


def wait_external(cp: ControlPlane, shown: str, name: str = "demo") -> dict[str, Any]:
    return wait_for(
        lambda: (svc := service(cp, name)) and external_column(svc) == shown and svc,
        what=f"{name} to show EXTERNAL-IP {shown} (has {external_column(service(cp, name))})",
    )


def test_no_block_means_pending(assigning: ControlPlane) -> None:
    create(assigning, demo_service())
    controller = assigning.controllers[0]
    wait_for(lambda: controller.reconciled >= 2 and controller.idle(), what="reconciles of kubernetes and demo")
    assert external_column(service(assigning)) == "<pending>"


def test_seed_patch_assigns_the_first_free_address_into_both_fields(assigning: ControlPlane) -> None:
    create(assigning, demo_service())
    assigning.patch(NETWORK, "cluster", SEED_PATCH)
    svc = wait_external(assigning, "172.21.6.33,172.21.6.33")
    assert svc["spec"]["externalIPs"] == ["172.21.6.33"]
    assert svc["status"]["loadBalancer"]["ingress"] == [{"ip": "172.21.6.33"}]
    create(assigning, demo_service("second"))
    wait_external(assigning, "172.21.6.34,172.21.6.34", "second")
    # ClusterIP services get nothing.
    plain = create(assigning, demo_service("plain", "ClusterIP"))
    assert external_column(plain) == "<pending>"


def test_changing_the_block_moves_the_address_live(assigning: ControlPlane) -> None:
    assigning.patch(NETWORK, "cluster", SEED_PATCH)
    create(assigning, demo_service())
    wait_external(assigning, "172.21.6.33,172.21.6.33")
    moved = {"spec": {"externalIP": {"autoAssignCIDRs": ["172.21.7.0/28"]}}}
    assigning.patch(NETWORK, "cluster", moved)
    svc = wait_external(assigning, "172.21.7.1,172.21.7.1")
    assert svc["spec"]["externalIPs"] == ["172.21.7.1"]
    # Taking the block away leaves the service pending again.
    assigning.patch(NETWORK, "cluster", {"spec": {"externalIP": {"autoAssignCIDRs": None}}})
    svc = wait_external(assigning, "<pending>")
    assert "externalIPs" not in svc["spec"]


def test_manual_addresses_survive_and_released_addresses_are_reused(assigning: ControlPlane) -> None:
    assigning.patch(
        NETWORK,
        "cluster",
        {"spec": {"externalIP": {"autoAssignCIDRs": ["172.21.6.32/30"], "policy": {"allowedCIDRs": ["10.1.0.0/16"]}}}},
    )
    create(assigning, demo_service(externalIPs=["10.1.2.3"]))
    wait_external(assigning, "172.21.6.33,10.1.2.3,172.21.6.33")
    create(assigning, demo_service("second"))
    wait_external(assigning, "172.21.6.34,172.21.6.34", "second")
    create(assigning, demo_service("third"))  # a /30 has two usable addresses: the third waits
    wait_for(assigning.controllers[0].idle, what="the controller to catch up")
    assert external_column(service(assigning, "third")) == "<pending>"
    assigning.patch("/services", "demo", {"spec": {"type": "ClusterIP"}}, "demo")
    first = wait_external(assigning, "10.1.2.3")
    assert first["spec"]["externalIPs"] == ["10.1.2.3"]
    wait_external(assigning, "172.21.6.33,172.21.6.33", "third")

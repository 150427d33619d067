"""kube-proxy: Services and Endpoints in the store become every node's nat table, one sync per burst of changes."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from kalab.lab.controllers import kubeproxy as proxy_module
from kalab.lab.controllers.bootstrap import bootstrap
from kalab.lab.controllers.kubeproxy import KubeProxyController, all_service_ports, service_ports
from kalab.lab.controllers.services import install_service_admission
from kalab.lab.dataplane import netlink
from kalab.lab.dataplane.kubeproxy import nat_table
from kalab.lab.dataplane.topology import Topology, TopologySpec, build, lab_namespaces, sweep
from kalab.model.iptables import parse_listing_line, parse_save, trace
from kalab.model.kubeproxy import Endpoint
from tests.lab.controllers.cluster_kit import ControlPlane, wait_for
from tests.support.markers import needs_root_tools
from tests.support.paths import FIXTURES

PREFIX = f"kalab-t{os.getpid()}-cp-"
SEED_PATCH: dict[str, Any] = json.loads((FIXTURES / "seed_network_patch.json").read_text())
SEED_FW = "KUBE-FW-ZFZLPEKTCJ3DBGAL"


def seed_service() -> dict[str, Any]:
    """The demo Service as the seed's cluster had it once everything ran."""
    return {
        "metadata": {"name": "demo", "namespace": "demo"},
        "spec": {
            "type": "LoadBalancer",
            "clusterIP": "172.30.203.237",
            "externalIPs": ["172.21.6.50"],
            "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 80, "nodePort": 31682}],
            "selector": {"env": "test"},
        },
        "status": {"loadBalancer": {"ingress": [{"ip": "172.21.6.50"}]}},
    }


def seed_endpoints() -> dict[str, Any]:
    """test-0 on master-0 and test-1 on master-2, ready, plus one not-ready pod kube-proxy must ignore."""
    return {
        "metadata": {"name": "demo", "namespace": "demo"},
        "subsets": [
            {
                "addresses": [
                    {"ip": "10.254.0.10", "nodeName": "master-0"},
                    {"ip": "10.254.2.10", "nodeName": "master-2"},
                ],
                "notReadyAddresses": [{"ip": "10.254.1.10", "nodeName": "master-1"}],
                "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
            }
        ],
    }


def test_service_ports_carry_everything_kube_proxy_needs() -> None:
    [port] = service_ports(seed_service(), seed_endpoints())
    assert port.service_port_name == "demo/demo:http"
    assert port.fw_chain == SEED_FW
    assert port.cluster_ip == "172.30.203.237" and port.node_port == 31682
    assert port.external_ips == ("172.21.6.50",) and port.load_balancer_ips == ("172.21.6.50",)
    assert set(port.endpoints) == {Endpoint("10.254.0.10", 80, "master-0"), Endpoint("10.254.2.10", 80, "master-2")}
    assert port.external_traffic_policy == "Cluster"


def test_headless_external_name_and_broken_services_program_nothing() -> None:
    headless = seed_service()
    headless["spec"]["clusterIP"] = "None"
    assert service_ports(headless, seed_endpoints()) == []
    external_name = {"metadata": {"name": "x", "namespace": "demo"}, "spec": {"type": "ExternalName"}}
    assert service_ports(external_name, None) == []
    broken = seed_service()
    broken["spec"]["externalIPs"] = ["fd00::1"]  # IPv6: the lab's rules are IPv4 only; skipped, not fatal
    assert service_ports(broken, seed_endpoints()) == []
    assert len(all_service_ports([seed_service(), broken], [seed_endpoints()])) == 1


def test_a_burst_of_changes_is_one_sync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(proxy_module, "program_all", lambda topology, ports: calls.append(len(list(ports))))
    plane = ControlPlane(tmp_path)
    plane.ctx.topology = object()  # type: ignore[assignment]  # only passed through to program_all
    plane.namespace("demo")
    controller = KubeProxyController(plane.ctx, debounce=0.1)
    plane.start(controller)
    try:
        wait_for(lambda: calls == [0], what="the initial sync")
        for index in range(20):
            plane.create(
                "/services",
                {
                    "metadata": {"name": f"s{index}"},
                    "spec": {"clusterIP": f"172.30.0.{index + 10}", "ports": [{"port": 80}]},
                },
                "demo",
            )
        wait_for(lambda: calls[-1] == 20, what="a sync with all 20 services")
        time.sleep(0.3)
        # One sync for the burst (a very slow machine might split it once, never per service).
        assert calls[0] == 0 and len(calls) <= 3, calls
        done = len(calls)
        # Writes that change nothing kube-proxy uses do not reprogram the nodes.
        plane.patch("/services", "s0", {"metadata": {"labels": {"x": "y"}}}, "demo")
        time.sleep(0.3)
        assert len(calls) == done
    finally:
        plane.stop()


def test_without_a_data_plane_nothing_is_programmed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(proxy_module, "program_all", lambda *_: pytest.fail("programmed without a topology"))
    plane = ControlPlane(tmp_path)
    controller = KubeProxyController(plane.ctx)
    plane.start(controller)
    try:
        wait_for(lambda: controller.reconciled >= 1, what="the initial sync")
        assert controller.syncs == 0
    finally:
        plane.stop()


def _seed_fw_listed(topology: Topology) -> bool:
    done = netlink.run_in(
        topology.node_ns("master-2"), ["iptables", "-t", "nat", "-L", "KUBE-SERVICES", "-n", "-v"], check=False
    )
    if done.returncode != 0:
        return False  # a listing that overlaps a table swap can fail; the next poll sees the new table
    listing = done.stdout
    seed = parse_listing_line((FIXTURES / "seed_iptables_line.txt").read_text())
    rules = [parse_listing_line(line) for line in listing.splitlines() if "KUBE-FW-" in line]
    return seed.signature in [rule.signature for rule in rules]


def _nat(topology: Topology, node: str) -> str | None:
    """`iptables-save -t nat` of `node`, or None when it overlapped a table swap and failed."""
    try:
        return nat_table(topology, node)
    except netlink.NetlinkError:
        return None


@needs_root_tools("iptables-restore", "iptables", "ip")
def test_nodes_nat_tables_follow_the_demo_service(tmp_path: Path) -> None:
    topology = build(TopologySpec.seed(PREFIX))
    plane: ControlPlane | None = None
    try:
        plane = ControlPlane(tmp_path, topology)
        bootstrap(plane.ctx)
        install_service_admission(plane.ctx)
        plane.patch("config.openshift.io/networks", "cluster", SEED_PATCH)
        plane.namespace("demo")
        plane.start(KubeProxyController(plane.ctx))
        created = plane.create("/services", seed_service(), "demo")
        assert created["spec"]["clusterIP"] == "172.30.203.237"
        plane.patch_status("/services", "demo", seed_service()["status"], "demo")
        plane.create("/endpoints", seed_endpoints(), "demo")

        wait_for(lambda: _seed_fw_listed(topology), timeout=10, what=f"{SEED_FW} for 172.21.6.50 on master-2")
        save = nat_table(topology, "master-2")
        assert "-A KUBE-SERVICES -d 172.21.6.50/32 -p tcp" in save and f"-j {SEED_FW}" in save
        routes = trace(parse_save(save), "172.21.6.50", 80).endpoint_probabilities()
        assert routes == pytest.approx({"10.254.0.10:80": 0.5, "10.254.2.10:80": 0.5})
        for node in ("master-0", "master-1"):
            assert SEED_FW in nat_table(topology, node)  # every node programs every service

        plane.store.delete(plane.rt("/services"), "demo", "demo")
        wait_for(
            lambda: all(SEED_FW not in (_nat(topology, n) or SEED_FW) for n in topology.node_names),
            timeout=10,
            what=f"{SEED_FW} to disappear from every node",
        )
        assert "172.21.6.50" not in nat_table(topology, "master-2")
    finally:
        if plane is not None:
            plane.stop()
        sweep(PREFIX)
        assert lab_namespaces(PREFIX) == []

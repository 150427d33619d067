"""Pod sandboxes on a real topology: addresses, routes, MTU, pod-to-pod across nodes, and clean removal.

All traffic here runs between lab namespaces (`ip netns exec`); the lab uses a test-only prefix and is always swept.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from kalab.lab.dataplane import naming, netlink
from kalab.lab.dataplane.netlink import addresses, ip_json, run_in
from kalab.lab.dataplane.sandbox import (
    Sandbox,
    create_sandbox,
    delete_sandbox,
    find_sandbox,
    list_sandboxes,
)
from kalab.lab.dataplane.topology import Topology
from kalab.model.errors import KalabError
from tests.lab.nets import seed_topology
from tests.support.markers import needs_root_tools

PREFIX = f"kalab-t{os.getpid()}-sb-"
pytestmark = needs_root_tools("ip", "ping")


@pytest.fixture
def lab() -> Iterator[Topology]:
    yield from seed_topology(PREFIX)


def ping(ns: str, address: str) -> bool:
    return run_in(ns, ["ping", "-c1", "-W1", address], check=False).returncode == 0


def test_pod_gets_namespace_address_route_and_mtu(lab: Topology) -> None:
    pod = create_sandbox(lab, "master-0", "demo/test-0")
    assert pod.netns == f"{PREFIX}pod-{naming.pod_hash('demo/test-0')}"
    assert (pod.ip, pod.cidr, pod.gateway, pod.interface) == ("10.254.0.2", "10.254.0.2/24", "10.254.0.1", "kalab-eth0")
    assert addresses(pod.netns, "kalab-eth0") == ["10.254.0.2/24"]
    [default] = [r for r in ip_json(pod.netns, "route", "show") if r["dst"] == "default"]
    assert (default["gateway"], default["dev"]) == ("10.254.0.1", "kalab-eth0")
    [pod_side] = ip_json(pod.netns, "link", "show", "dev", "kalab-eth0")
    [node_side] = ip_json(lab.node_ns("master-0"), "link", "show", "dev", pod.host_link or "")
    assert pod_side["mtu"] == node_side["mtu"] == 1450
    assert node_side["master"] == "kalab-cni0"
    assert pod.host_link is not None and pod.host_link.startswith("kalab-") and len(pod.host_link) <= 15
    assert ping(pod.netns, "10.254.0.1")


def test_pod_on_master_0_reaches_pod_on_master_2(lab: Topology) -> None:
    test0 = create_sandbox(lab, "master-0", "demo/test-0")
    test1 = create_sandbox(lab, "master-2", "demo/test-1")
    assert test1.ip == "10.254.2.2"
    assert ping(test0.netns, test1.ip)
    assert ping(test1.netns, test0.ip)
    # A full-size pod packet (pod MTU minus IP and ICMP headers) crosses the segment without fragmenting.
    assert run_in(test0.netns, ["ping", "-c1", "-W1", "-M", "do", "-s", "1422", test1.ip], check=False).returncode == 0


def test_allocation_is_deterministic_and_reuses_freed_addresses(lab: Topology) -> None:
    a = create_sandbox(lab, "master-1", "demo/a")
    b = create_sandbox(lab, "master-1", "demo/b")
    assert (a.ip, b.ip) == ("10.254.1.2", "10.254.1.3")
    assert create_sandbox(lab, "master-1", "demo/a") == a  # asking again gives the same sandbox
    delete_sandbox(lab, a)
    assert not netlink.netns_exists(a.netns)
    c = create_sandbox(lab, "master-1", "demo/c")
    assert c.ip == "10.254.1.2"
    assert [(s.pod_key, s.ip) for s in list_sandboxes(lab)] == [("demo/c", "10.254.1.2"), ("demo/b", "10.254.1.3")]
    assert find_sandbox(lab, "demo/b") == b
    assert find_sandbox(lab, "demo/a") is None


def test_delete_leaves_no_link_or_namespace(lab: Topology) -> None:
    pod = create_sandbox(lab, "master-2", "demo/test-1")
    delete_sandbox(lab, "demo/test-1")
    assert ip_json(lab.node_ns("master-2"), "link", "show", "master", "kalab-cni0") == []
    assert not netlink.netns_exists(pod.netns)
    delete_sandbox(lab, pod)  # twice is harmless
    # The same pod can come back at once: its link name is free again.
    assert create_sandbox(lab, "master-2", "demo/test-1").ip == pod.ip


def test_host_network_pod_uses_the_node(lab: Topology) -> None:
    pod = create_sandbox(lab, "master-1", "keepalived-operator/keepalived-abc", host_network=True)
    assert (pod.pod_key, pod.netns, pod.ip, pod.interface, pod.host_network) == (
        "keepalived-operator/keepalived-abc",
        f"{PREFIX}master-1",
        "192.168.7.14",
        "kalab-eth0",
        True,
    )
    delete_sandbox(lab, pod)
    assert lab.is_up()


def test_a_pod_cannot_be_on_two_nodes(lab: Topology) -> None:
    create_sandbox(lab, "master-0", "demo/test-0")
    with pytest.raises(KalabError, match="already has a sandbox on master-0"):
        create_sandbox(lab, "master-1", "demo/test-0")


@pytest.mark.parametrize("leftover", ["pod namespace", "node-side link"])
def test_leftovers_of_an_interrupted_create_are_replaced(lab: Topology, leftover: str) -> None:
    if leftover == "pod namespace":
        subprocess.run(["ip", "netns", "add", naming.pod_ns(PREFIX, "demo/test-0")], check=True, timeout=10)
    else:  # a link with the pod's name but no pod behind it (its peer stays inside the node)
        link = naming.pod_host_link("demo/test-0")
        argv = ["ip", "-n", lab.node_ns("master-0"), "link", "add", link, "type", "veth", "peer", "name", "kalab-x"]
        subprocess.run(argv, check=True, timeout=10)
    pod = create_sandbox(lab, "master-0", "demo/test-0")
    assert addresses(pod.netns, "kalab-eth0") == ["10.254.0.2/24"]
    assert ping(pod.netns, "10.254.0.1")


def test_bad_pod_keys_are_refused(lab: Topology) -> None:
    for key in ("", "demo/test 0", "demo#1", "a@b"):
        with pytest.raises(KalabError, match="pod key"):
            create_sandbox(lab, "master-0", key)


def test_teardown_removes_sandboxes(lab: Topology) -> None:
    pods = [create_sandbox(lab, node, f"demo/p-{node}") for node in lab.node_names]
    report = lab.teardown()
    assert {p.netns for p in pods} <= set(report.removed)
    assert not [ns for ns in netlink.list_netns() if ns.startswith(PREFIX)]


def test_sandbox_round_trips_through_a_dict() -> None:
    pod = Sandbox("demo/test-0", "master-0", "kalab-pod-x", "10.254.0.2", "kalab-eth0", prefixlen=24)
    assert Sandbox.from_dict(pod.to_dict()) == pod

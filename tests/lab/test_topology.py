"""The lab's topology: the seed's defaults, the naming/ownership rule, and real builds in network namespaces.

Kernel tests build under a test-only prefix `kalab-t<pid>-` and always tear down; they never touch the host
namespace (pings run inside the bastion) and never sweep a user's lab at `kalab-`.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kalab.lab.dataplane import naming, netlink
from kalab.lab.dataplane.netlink import addresses, ip_json, run_in, set_link
from kalab.lab.dataplane.topology import (
    BastionSpec,
    NodeSpec,
    Topology,
    TopologySpec,
    build,
    lab_namespaces,
    measure_build_teardown,
    node_specs,
    pod_subnet,
    sweep,
)
from kalab.model.errors import KalabError
from tests.lab.nets import seed_topology
from tests.support.markers import needs_root_tools
from tests.support.waiting import wait_for

PREFIX = f"kalab-t{os.getpid()}-"
kernel = needs_root_tools("ip", "ping")


def host_state() -> tuple[str, str, str]:
    """What the lab must never change: the host's links, routes and forwarding switch."""

    def out(*argv: str) -> str:
        return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=10).stdout

    return out("ip", "-o", "link"), out("ip", "route"), Path("/proc/sys/net/ipv4/ip_forward").read_text()


def ping(ns: str, address: str) -> bool:
    return run_in(ns, ["ping", "-c1", "-W1", address], check=False).returncode == 0


def link(ns: str, ifname: str) -> dict[str, Any]:
    [found] = ip_json(ns, "link", "show", "dev", ifname)
    return found


@pytest.fixture
def lab() -> Iterator[Topology]:
    yield from seed_topology(PREFIX)


# --- the description ---------------------------------------------------------------------------------------------


def test_seed_defaults() -> None:
    spec = TopologySpec.seed()
    assert spec.prefix == "kalab-"
    assert [(n.name, n.address, n.pod_cidr) for n in spec.nodes] == [
        ("master-0", "192.168.7.13/24", "10.254.0.0/24"),
        ("master-1", "192.168.7.14/24", "10.254.1.0/24"),
        ("master-2", "192.168.7.15/24", "10.254.2.0/24"),
    ]
    assert spec.node("master-1").ip == "192.168.7.14"
    assert spec.node("master-2").pod_gateway_cidr == "10.254.2.1/24"
    assert spec.bastion == BastionSpec(("192.168.7.1/24", "172.21.6.10/24"))
    assert (spec.cluster_network, spec.host_prefix, spec.pod_mtu, spec.segment_mtu) == ("10.254.0.0/16", 24, 1450, 1500)
    assert spec.interface == "kalab-eth0"
    assert spec.gateway == "192.168.7.1"
    assert TopologySpec() == spec


def test_names_follow_the_grammar() -> None:
    topology = Topology(TopologySpec.seed("kalab-t9-"))
    assert topology.namespaces() == [
        "kalab-t9-seg",
        "kalab-t9-bastion",
        "kalab-t9-master-0",
        "kalab-t9-master-1",
        "kalab-t9-master-2",
    ]
    assert topology.node_ns("master-1") == "kalab-t9-master-1"
    assert [naming.node_port(n) for n in topology.node_names] == ["kalab-p-m0", "kalab-p-m1", "kalab-p-m2"]
    assert naming.pod_ns("kalab-t9-", "demo/test-0") == f"kalab-t9-pod-{naming.pod_hash('demo/test-0')}"
    assert len(naming.pod_host_link("demo/test-0")) <= naming.MAX_LINK_NAME
    assert naming.pod_hash("demo/test-0") == naming.pod_hash("demo/test-0") != naming.pod_hash("demo/test-1")


def test_pod_subnets_follow_cluster_network_and_host_prefix() -> None:
    assert pod_subnet("10.254.0.0/16", 24, 2) == "10.254.2.0/24"
    assert pod_subnet("10.128.0.0/14", 23, 1) == "10.128.2.0/23"
    with pytest.raises(KalabError, match="no room"):
        pod_subnet("10.254.0.0/23", 24, 2)
    nodes = node_specs([("worker-0", "10.0.0.5/24"), ("worker-1", "10.0.0.6/24")], "10.128.0.0/14", 23)
    spec = TopologySpec(
        nodes=nodes, bastion=BastionSpec(("10.0.0.1/24",)), cluster_network="10.128.0.0/14", host_prefix=23
    )
    assert [n.pod_cidr for n in spec.nodes] == ["10.128.0.0/23", "10.128.2.0/23"]


@pytest.mark.parametrize(
    ("prefix", "name", "owned"),
    [
        ("kalab-", "kalab-seg", True),
        ("kalab-", "kalab-bastion", True),
        ("kalab-", "kalab-master-1", True),
        ("kalab-", "kalab-pod-0123456ab", True),
        ("kalab-", "kalab-t123-master-1", False),  # a test lab's node is not the user's
        ("kalab-", "kalab-t123-seg", False),
        ("kalab-", "kalab-t123-pod-0123456ab", False),
        ("kalab-", "kalab-exp0", False),  # merely starts with the prefix
        ("kalab-", "kalab-pod-0123", False),
        ("kalab-", "other-master-1", False),
        ("kalab-t123-", "kalab-t123-master-1", True),
        ("kalab-t123-", "kalab-master-1", False),  # the user's lab is not the test lab's
        ("kalab-t123-", "kalab-t123-0", False),  # tests/support/netns.py's scratch namespaces
        ("kalab-master-", "kalab-master-1", False),
    ],
)
def test_ownership_rule(prefix: str, name: str, owned: bool) -> None:
    assert naming.belongs_to(prefix, name) is owned


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: TopologySpec(prefix="lab-"), "naming rule"),
        (lambda: TopologySpec(prefix="kalab-T1-"), "naming rule"),
        (lambda: NodeSpec("master0", "192.168.7.13/24", "10.254.0.0/24"), "node name"),
        (lambda: NodeSpec("pod-1", "192.168.7.13/24", "10.254.0.0/24"), "node name"),
        (lambda: NodeSpec("master-0", "192.168.7.13", "10.254.0.0/24"), "prefix length"),
        (lambda: NodeSpec("master-0", "192.168.7.13/24", "10.254.0.1/24"), "network address"),
        (lambda: TopologySpec(interface="eth0"), "must start with"),
        (lambda: TopologySpec(interface="kalab-cni0"), "taken"),
        (lambda: TopologySpec(pod_mtu=1600), "MTU"),
        (lambda: TopologySpec(bastion=BastionSpec(("172.21.6.10/24",))), "bastion needs an address"),
        (lambda: TopologySpec(bastion=BastionSpec(("192.168.7.13/24",))), "already a node"),
        (
            lambda: TopologySpec(nodes=node_specs([("master-0", "192.168.7.13/24"), ("mgmt-0", "192.168.7.14/24")])),
            "bridge port",
        ),
        (
            lambda: TopologySpec(nodes=node_specs([("master-0", "192.168.7.13/24"), ("master-1", "192.168.8.14/24")])),
            "not in the segment",
        ),
        (
            lambda: TopologySpec(
                nodes=(
                    NodeSpec("master-0", "192.168.7.13/24", "10.254.0.0/24"),
                    NodeSpec("master-1", "192.168.7.14/24", "10.254.0.0/24"),
                )
            ),
            "overlaps",
        ),
        (
            lambda: TopologySpec(nodes=node_specs([("master-0", "192.168.7.13/24")], "10.254.0.0/16", 16)),
            "must be a /24",
        ),
    ],
)
def test_spec_validation(make: Callable[[], object], message: str) -> None:
    with pytest.raises(KalabError, match=message):
        make()


def test_host_commands_are_refused() -> None:
    with pytest.raises(KalabError, match="not a lab namespace"):
        run_in("default", ["true"])
    with pytest.raises(netlink.NetlinkError, match="Refusing"):
        netlink.host_batch(["link add kalab-x type veth peer name kalab-y"])
    with pytest.raises(netlink.NetlinkError, match="Refusing"):
        netlink.host_batch(["route add 10.254.0.0/16 via 192.168.7.13"])


# --- the real thing ----------------------------------------------------------------------------------------------


@kernel
def test_build_creates_the_seed_topology(lab: Topology) -> None:
    spec = lab.spec
    assert set(lab_namespaces(PREFIX)) == set(lab.namespaces())
    for ns in lab.namespaces():
        names = [entry["ifname"] for entry in ip_json(ns, "link", "show")]
        assert all(name == "lo" or name.startswith("kalab-") for name in names), (ns, names)

    bridge = link(lab.segment_ns, "kalab-br0")
    assert bridge["linkinfo"]["info_kind"] == "bridge"
    ports = {entry["ifname"] for entry in ip_json(lab.segment_ns, "link", "show", "master", "kalab-br0")}
    assert ports == {"kalab-p-bastion", "kalab-p-m0", "kalab-p-m1", "kalab-p-m2"}

    assert addresses(lab.bastion_ns, lab.interface) == ["192.168.7.1/24", "172.21.6.10/24"]
    bastion_routes = {r["dst"] for r in ip_json(lab.bastion_ns, "route", "show")}
    assert bastion_routes == {"192.168.7.0/24", "172.21.6.0/24"}  # no pod routes, no default
    assert run_in(lab.bastion_ns, ["sysctl", "-n", "net.ipv4.ip_forward"]).stdout.strip() == "0"

    for index, node in enumerate(spec.nodes):
        ns = lab.node_ns(node.name)
        assert ns == f"{PREFIX}{node.name}"
        uplink, cni = link(ns, "kalab-eth0"), link(ns, "kalab-cni0")
        assert (uplink["mtu"], "UP" in uplink["flags"]) == (1500, True)
        assert (cni["mtu"], "UP" in cni["flags"]) == (1450, True)
        assert addresses(ns, "kalab-eth0") == [node.address]
        assert addresses(ns, "kalab-cni0") == [f"10.254.{index}.1/24"]
        routes = {r["dst"]: r.get("gateway") for r in ip_json(ns, "route", "show")}
        others = {other.pod_cidr: other.ip for other in spec.nodes if other != node}
        assert routes == {
            "default": "192.168.7.1",
            "192.168.7.0/24": None,
            node.pod_cidr: None,
            **others,
        }
        assert run_in(ns, ["sysctl", "-n", "net.ipv4.ip_forward"]).stdout.strip() == "1"
        assert "UP" in link(ns, "lo")["flags"]


@kernel
def test_bastion_reaches_every_node(lab: Topology) -> None:
    for node in lab.spec.nodes:
        assert ping(lab.bastion_ns, node.ip), node.name
    # Nodes reach each other's pod bridges through the routes (the pods' gateways).
    assert ping(lab.node_ns("master-0"), "10.254.2.1")


@kernel
def test_link_down_cuts_a_node_off_and_up_restores_it(lab: Topology) -> None:
    ns = lab.node_ns("master-1")
    set_link(ns, lab.interface, up=False)
    assert "UP" not in link(ns, lab.interface)["flags"]
    assert not ping(lab.bastion_ns, "192.168.7.14")
    set_link(ns, lab.interface, up=True)
    wait_for(lambda: ping(lab.bastion_ns, "192.168.7.14"), what="the bastion to reach master-1 again")


@kernel
def test_host_namespace_is_untouched_and_teardown_leaves_nothing() -> None:
    before = host_state()
    topology = build(TopologySpec.seed(PREFIX))
    try:
        assert host_state() == before
    finally:
        report = topology.teardown()
    assert set(report.removed) == set(topology.namespaces())
    assert not [ns for ns in netlink.list_netns() if ns.startswith(PREFIX)]
    assert host_state() == before


@kernel
@pytest.mark.parametrize("damage", ["deleted namespace", "stray namespace"])
def test_build_over_a_half_built_lab(damage: str) -> None:
    stray = f"{PREFIX}master-1"
    try:
        if damage == "deleted namespace":
            build(TopologySpec.seed(PREFIX))
            netlink.delete_netns([stray])
        else:
            subprocess.run(["ip", "netns", "add", stray], check=True, timeout=10)
        topology = build(TopologySpec.seed(PREFIX))
        assert topology.is_up()
        assert addresses(topology.node_ns("master-1"), topology.interface) == ["192.168.7.14/24"]
        assert ping(topology.bastion_ns, "192.168.7.14")
    finally:
        sweep(PREFIX)
    assert lab_namespaces(PREFIX) == []


@kernel
def test_sweep_spares_other_prefixes() -> None:
    inner = f"{PREFIX}x-"  # a longer prefix that starts with ours, like kalab-t123- under kalab-
    bystanders = [f"{PREFIX}exp0", f"{PREFIX}0"]
    try:
        outer_lab = build(TopologySpec.seed(PREFIX))
        inner_lab = build(TopologySpec.seed(inner))
        for ns in bystanders:
            subprocess.run(["ip", "netns", "add", ns], check=True, timeout=10)
        sweep(inner)
        assert outer_lab.is_up() and not inner_lab.is_up()
        inner_lab = build(TopologySpec.seed(inner))
        sweep(PREFIX)
        assert inner_lab.is_up() and not outer_lab.is_up()
        assert all(netlink.netns_exists(ns) for ns in bystanders)
    finally:
        sweep(inner)
        sweep(PREFIX)
        netlink.delete_netns(bystanders)
    assert not [ns for ns in netlink.list_netns() if ns.startswith(PREFIX)]


@kernel
def test_attach_finds_a_running_lab(lab: Topology) -> None:
    assert Topology.attach(lab.spec).namespaces() == lab.namespaces()
    with pytest.raises(KalabError, match="not fully up"):
        Topology.attach(TopologySpec.seed(f"{PREFIX}absent-"))


@kernel
def test_build_and_teardown_are_fast() -> None:
    timing = measure_build_teardown(TopologySpec.seed(PREFIX), rounds=3)
    assert timing["build_s_max"] + timing["teardown_s_max"] < 3.0, timing
    assert lab_namespaces(PREFIX) == []


@kernel
def test_sweep_reports_a_busy_namespace_and_leaves_it_no_links() -> None:
    topology = build(TopologySpec.seed(PREFIX))
    ns = topology.node_ns("master-1")
    # `ip netns exec` execs the command, so this PID (ours to stop) is the process inside the namespace.
    sleeper = subprocess.Popen(["ip", "netns", "exec", ns, "sleep", "30"])
    try:
        wait_for(lambda: netlink.netns_pids([ns]).get(ns) == [sleeper.pid], what=f"the sleeper to show up in {ns}")
        report = sweep(PREFIX)
        assert report.busy == {ns: [sleeper.pid]}
        assert ns in report.removed and not netlink.netns_exists(ns)
        inside = subprocess.run(
            ["nsenter", "-t", str(sleeper.pid), "-n", "ip", "-j", "link", "show"],
            check=True,
            capture_output=True,
            text=True,
            timeout=10,
        )
        assert [entry["ifname"] for entry in json.loads(inside.stdout)] == ["lo"]
    finally:
        sleeper.kill()
        sleeper.wait(timeout=10)
        sweep(PREFIX)
    assert lab_namespaces(PREFIX) == []

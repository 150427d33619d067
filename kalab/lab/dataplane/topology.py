"""The lab's network: a declarative description (nodes, bastion, segment) and the build/teardown that makes it real.

Picture (defaults follow the seed)::

        bastion 192.168.7.1/24 + 172.21.6.10/24
           │ kalab-eth0
           │ kalab-p-bastion
      ┌────┴──────────── kalab-br0 (namespace <prefix>seg) ───────────────┐
      │ kalab-p-m0              │ kalab-p-m1               │ kalab-p-m2     │
      │ kalab-eth0              │ kalab-eth0               │ kalab-eth0     │
    master-0 .13              master-1 .14              master-2 .15
    kalab-cni0 10.254.0.1/24  kalab-cni0 10.254.1.1/24  kalab-cni0 10.254.2.1/24
      └ pods (sandbox.py)       └ pods                    └ pods

Each node forwards, routes every other node's pod subnet via that node's segment address, and uses the bastion's
segment address as its default gateway (the lab's choice; the seed does not show its gateway): that is how a node
holding a VIP answers the trainee at 172.21.6.10, an address outside the nodes' subnet. The bastion itself has no
route to pods and does not forward — trainees reach services through VIPs only.

    from kalab.lab.dataplane.netlink import run_in
    with build(TopologySpec.seed(prefix="kalab-")) as topo:
        run_in(topo.bastion_ns, ["ping", "-c1", "192.168.7.14"])
"""

from __future__ import annotations

import ipaddress
import logging
import statistics
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType

from kalab.lab.dataplane import naming, netlink
from kalab.lab.dataplane.entry import HERE, Entry
from kalab.model.errors import KalabError

log = logging.getLogger(__name__)

SEED_CLUSTER_NETWORK = "10.254.0.0/16"
SEED_HOST_PREFIX = 24
SEED_NODES: tuple[tuple[str, str], ...] = (
    ("master-0", "192.168.7.13/24"),
    ("master-1", "192.168.7.14/24"),
    ("master-2", "192.168.7.15/24"),
)
SEED_BASTION: tuple[str, ...] = ("192.168.7.1/24", "172.21.6.10/24")


def _interface_cidr(text: str, what: str) -> ipaddress.IPv4Interface:
    try:
        iface = ipaddress.IPv4Interface(text)
    except ValueError:
        raise KalabError(
            f'{what} "{text}" is not an IPv4 address with a prefix length, e.g. 192.168.7.13/24.'
        ) from None
    if "/" not in text:
        raise KalabError(f'{what} "{text}" has no prefix length; write it like 192.168.7.13/24.')
    return iface


def _network(text: str, what: str) -> ipaddress.IPv4Network:
    try:
        return ipaddress.IPv4Network(text)
    except ValueError:
        raise KalabError(
            f'{what} "{text}" is not an IPv4 network address with prefix length, e.g. 10.254.0.0/24.'
        ) from None


def pod_subnet(cluster_network: str, host_prefix: int, index: int) -> str:
    """The `index`-th /host_prefix of the cluster network: how OpenShift gives each node its pod subnet."""
    network = _network(cluster_network, "The cluster network")
    if not network.prefixlen <= host_prefix <= 30:
        raise KalabError(
            f"hostPrefix /{host_prefix} must lie between the cluster network's /{network.prefixlen} and /30."
        )
    subnets = network.subnets(new_prefix=host_prefix)
    for i, subnet in enumerate(subnets):
        if i == index:
            return str(subnet)
    raise KalabError(f"The cluster network {cluster_network} has no room for a node subnet number {index}.")


@dataclass(frozen=True)
class NodeSpec:
    """A node: its name (``<letters>-<digits>``), its address on the segment and its pod subnet."""

    name: str
    address: str
    pod_cidr: str

    def __post_init__(self) -> None:
        naming.check_node_name(self.name)
        naming.node_port(self.name)  # raises if the port name would not fit a link name
        _interface_cidr(self.address, f"The address of {self.name}")
        subnet = _network(self.pod_cidr, f"The pod subnet of {self.name}")
        if subnet.num_addresses < 4:
            raise KalabError(f"The pod subnet {self.pod_cidr} of {self.name} is too small; use /30 or larger.")

    @property
    def ip(self) -> str:
        """The bare address, e.g. 192.168.7.14."""
        return str(ipaddress.IPv4Interface(self.address).ip)

    @property
    def pod_gateway(self) -> str:
        """The node's pod bridge address, first host of its pod subnet (10.254.N.1): the pods' default route."""
        return str(next(ipaddress.IPv4Network(self.pod_cidr).hosts()))

    @property
    def pod_gateway_cidr(self) -> str:
        return f"{self.pod_gateway}/{ipaddress.IPv4Network(self.pod_cidr).prefixlen}"


@dataclass(frozen=True)
class BastionSpec:
    """The trainee's machine: addresses on the segment (one in the nodes' subnet, others e.g. the VIP range's)."""

    addresses: tuple[str, ...] = SEED_BASTION

    def __post_init__(self) -> None:
        for address in self.addresses:
            _interface_cidr(address, "The bastion address")


def node_specs(
    addresses: Sequence[tuple[str, str]],
    cluster_network: str = SEED_CLUSTER_NETWORK,
    host_prefix: int = SEED_HOST_PREFIX,
) -> tuple[NodeSpec, ...]:
    """Nodes from (name, address) pairs, the i-th getting the i-th pod subnet of the cluster network."""
    return tuple(
        NodeSpec(name, address, pod_subnet(cluster_network, host_prefix, index))
        for index, (name, address) in enumerate(addresses)
    )


@dataclass(frozen=True)
class TopologySpec:
    """The whole lab network. Left empty, `nodes` becomes the seed's three masters with derived pod subnets."""

    prefix: str = naming.DEFAULT_PREFIX
    nodes: tuple[NodeSpec, ...] = ()
    bastion: BastionSpec = BastionSpec()
    cluster_network: str = SEED_CLUSTER_NETWORK
    host_prefix: int = SEED_HOST_PREFIX
    pod_mtu: int = 1450
    segment_mtu: int = 1500
    interface: str = naming.POD_INTERFACE

    @classmethod
    def seed(cls, prefix: str = naming.DEFAULT_PREFIX) -> TopologySpec:
        """The seed's environment: master-0..2 at 192.168.7.13–15/24, bastion 192.168.7.1/24 + 172.21.6.10/24."""
        return cls(prefix=prefix)

    def __post_init__(self) -> None:
        naming.check_prefix(self.prefix)
        naming.check_link_name(self.interface)
        if not self.nodes:
            object.__setattr__(self, "nodes", node_specs(SEED_NODES, self.cluster_network, self.host_prefix))
        if not 68 <= self.pod_mtu <= self.segment_mtu <= 65535:
            raise KalabError(f"MTUs must satisfy 68 ≤ pod MTU ({self.pod_mtu}) ≤ segment MTU ({self.segment_mtu}).")
        if self.interface in (naming.SEGMENT_BRIDGE, naming.POD_BRIDGE) or self.interface.startswith("kalab-p-"):
            raise KalabError(
                f'The interface name "{self.interface}" is taken by the lab\'s own links; keep kalab-eth0.'
            )
        self._check_nodes()

    def _check_nodes(self) -> None:
        cluster = _network(self.cluster_network, "The cluster network")
        names = [n.name for n in self.nodes]
        ports = [naming.node_port(n) for n in names]
        for label, values in (("node name", names), ("bridge port", ports), ("address", [n.ip for n in self.nodes])):
            dupes = sorted({v for v in values if values.count(v) > 1})
            if dupes:
                raise KalabError(f"Each node needs its own {label}, but {', '.join(dupes)} is used twice.")
        segment = self.segment_network
        subnets: list[ipaddress.IPv4Network] = []
        for node in self.nodes:
            if ipaddress.IPv4Interface(node.address).network != segment:
                raise KalabError(f"{node.name}'s address {node.address} is not in the segment {segment} of the others.")
            subnet = ipaddress.IPv4Network(node.pod_cidr)
            if not subnet.subnet_of(cluster) or subnet.prefixlen != self.host_prefix:
                raise KalabError(
                    f"{node.name}'s pod subnet {node.pod_cidr} must be a /{self.host_prefix} of {self.cluster_network}."
                )
            if any(subnet.overlaps(other) for other in subnets):
                raise KalabError(f"{node.name}'s pod subnet {node.pod_cidr} overlaps another node's.")
            subnets.append(subnet)
        _ = self.gateway  # raises when the bastion has no address on the nodes' segment

    @property
    def segment_network(self) -> ipaddress.IPv4Network:
        """The nodes' subnet on the segment (192.168.7.0/24)."""
        if not self.nodes:
            raise KalabError("A lab needs at least one node.")
        return ipaddress.IPv4Interface(self.nodes[0].address).network

    @property
    def gateway(self) -> str:
        """The bastion's address in the nodes' subnet: the nodes' default gateway (192.168.7.1)."""
        for address in self.bastion.addresses:
            iface = ipaddress.IPv4Interface(address)
            if iface.network == self.segment_network:
                if any(iface.ip == ipaddress.IPv4Address(n.ip) for n in self.nodes):
                    raise KalabError(f"The bastion address {address} is already a node's address.")
                return str(iface.ip)
        raise KalabError(f"The bastion needs an address in the nodes' subnet {self.segment_network}.")

    def node(self, name: str) -> NodeSpec:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KalabError(f'There is no node "{name}"; the lab has {", ".join(n.name for n in self.nodes)}.')


@dataclass(frozen=True)
class SweepReport:
    """What a sweep removed; `busy` lists namespaces that still had processes (they linger, unnamed, until those
    processes exit — stopping them is the supervisor's job)."""

    removed: tuple[str, ...] = ()
    busy: dict[str, list[int]] = field(default_factory=dict)


@dataclass(frozen=True)
class Topology:
    """A built lab network; the names other modules use to `ip netns exec` into it."""

    spec: TopologySpec
    # Serialises pod address allocation (sandbox.py) so two pods created at once never get the same IP.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    # How set_uplink reaches the nodes: from inside the lab's tree (the default), or from outside it.
    entry: Entry = field(default=HERE, repr=False, compare=False)

    @property
    def prefix(self) -> str:
        return self.spec.prefix

    @property
    def interface(self) -> str:
        """The uplink's name inside every node and the bastion (what a KeepalivedGroup's `interface` names)."""
        return self.spec.interface

    @property
    def segment_ns(self) -> str:
        return naming.segment_ns(self.prefix)

    @property
    def bastion_ns(self) -> str:
        return naming.bastion_ns(self.prefix)

    @property
    def node_names(self) -> list[str]:
        return [n.name for n in self.spec.nodes]

    def node(self, name: str) -> NodeSpec:
        return self.spec.node(name)

    def node_ns(self, name: str) -> str:
        return naming.node_ns(self.prefix, self.spec.node(name).name)

    def set_uplink(self, name: str, up: bool) -> None:
        """Take a node off the segment or put it back (how the lab simulates losing a node).

        The kernel deletes routes through a link that goes down and does not bring them back, so putting the
        node back also restores its routes, as the node's network manager would.
        """
        ns = self.node_ns(name)
        netlink.set_link(ns, self.interface, up, self.entry)
        if up:
            netlink.ns_batches({ns: _node_routes(self.spec, self.spec.node(name))}, self.entry)

    def namespaces(self) -> list[str]:
        """The fixed namespaces (segment, bastion, nodes); pod sandboxes come and go on top of these."""
        return [self.segment_ns, self.bastion_ns, *(self.node_ns(n) for n in self.node_names)]

    def is_up(self) -> bool:
        present = set(netlink.list_netns())
        return all(ns in present for ns in self.namespaces())

    def teardown(self) -> SweepReport:
        """Remove everything of this lab, pod sandboxes included."""
        return sweep(self.prefix)

    def __enter__(self) -> Topology:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.teardown()

    @classmethod
    def attach(cls, spec: TopologySpec) -> Topology:
        """A handle on a lab that is already built (e.g. by another process); raises if any namespace is missing."""
        topology = cls(spec)
        missing = sorted(set(topology.namespaces()) - set(netlink.list_netns()))
        if missing:
            raise KalabError(
                f"The lab at prefix {spec.prefix} is not fully up ({', '.join(missing)} missing); build it."
            )
        return topology


def lab_namespaces(prefix: str) -> list[str]:
    """Every namespace on this machine that the lab at `prefix` owns (see naming's ownership rule)."""
    return [ns for ns in netlink.list_netns() if naming.belongs_to(prefix, ns)]


def sweep(prefix: str) -> SweepReport:
    """Remove every namespace of the lab at `prefix` (and with them their links): after a crash, a half-built
    lab or a normal teardown. Namespaces of other prefixes (``kalab-t123-`` vs ``kalab-``) are never touched."""
    doomed = lab_namespaces(prefix)
    if not doomed:
        return SweepReport()
    busy = {ns: pids for ns, pids in netlink.netns_pids(doomed).items() if pids}
    for ns, pids in busy.items():
        # A namespace with processes outlives its name. Deleting its links now leaves those processes (which the
        # supervisor must stop by PID) no network at all, instead of a lingering copy of the lab.
        log.warning("namespace %s still has processes %s; removing its links, it lingers until they exit", ns, pids)
        netlink.strip_links(ns)
    # The reverse of building (pods, bastion and nodes, segment last), so the report reads naturally.
    doomed.sort(key=lambda ns: (not naming.is_pod_ns(prefix, ns), ns == naming.segment_ns(prefix), ns))
    left = netlink.delete_netns(doomed)
    if left:
        raise KalabError(f"Could not delete namespaces {', '.join(left)}; check `ip netns` and remove them by hand.")
    return SweepReport(removed=tuple(doomed), busy=busy)


def _host_lines(spec: TopologySpec) -> list[str]:
    """Namespaces, and each veth created with both ends already inside lab namespaces (never on the host)."""
    seg, mtu = naming.segment_ns(spec.prefix), spec.segment_mtu
    uplinks = [(naming.bastion_ns(spec.prefix), naming.BASTION_PORT)]
    uplinks += [(naming.node_ns(spec.prefix, n.name), naming.node_port(n.name)) for n in spec.nodes]
    lines = [f"netns add {ns}" for ns in (seg, *(ns for ns, _ in uplinks))]
    # The bridge comes first so that it, not a port, takes ifindex 2 in the segment namespace: a port numbered
    # like its peer (the bastion's uplink is ifindex 2 too) gets its carrier applied up to a second late.
    lines.append(f"link add {naming.SEGMENT_BRIDGE} netns {seg} mtu {mtu} type bridge stp_state 0 mcast_snooping 0")
    lines += [
        f"link add {spec.interface} netns {ns} mtu {mtu} type veth peer name {port} netns {seg} mtu {mtu}"
        for ns, port in uplinks
    ]
    return lines


def _ports(spec: TopologySpec) -> list[str]:
    return [naming.BASTION_PORT, *(naming.node_port(n.name) for n in spec.nodes)]


def _segment_lines(spec: TopologySpec) -> list[str]:
    ports = _ports(spec)
    # kalab-br0 (created with the namespaces) is a plain learning switch: no STP, so ports forward at once, and no
    # multicast snooping, so VRRP's 224.0.0.18 adverts simply flood, as on the seed's flat network.
    return [
        f"link set {naming.SEGMENT_BRIDGE} up",
        *(f"link set {port} master {naming.SEGMENT_BRIDGE} up" for port in ports),
    ]


def _bastion_lines(spec: TopologySpec) -> list[str]:
    return [
        "link set lo up",
        f"link set {spec.interface} up",
        *(f"addr add {address} dev {spec.interface}" for address in spec.bastion.addresses),
    ]


def _node_lines(spec: TopologySpec, node: NodeSpec) -> list[str]:
    # The uplink goes up before its address so the connected route exists when the gateway routes are added.
    lines = [
        "link set lo up",
        f"link set {spec.interface} up",
        f"addr add {node.address} dev {spec.interface}",
        f"link add {naming.POD_BRIDGE} mtu {spec.pod_mtu} type bridge stp_state 0 mcast_snooping 0",
        f"addr add {node.pod_gateway_cidr} dev {naming.POD_BRIDGE}",
        f"link set {naming.POD_BRIDGE} up",
    ]
    return lines + _node_routes(spec, node)


def _node_routes(spec: TopologySpec, node: NodeSpec) -> list[str]:
    """Routes to the other nodes' pod subnets and the default route, all through the uplink."""
    routes = [f"route replace {o.pod_cidr} via {o.ip} dev {spec.interface}" for o in spec.nodes if o != node]
    return [*routes, f"route replace default via {spec.gateway} dev {spec.interface}"]


def build(spec: TopologySpec) -> Topology:
    """Sweep whatever a previous lab at this prefix left, then create the segment, bastion and nodes.

    Each step is one process per namespace at most: one host `ip -batch` creates every namespace, the segment
    bridge and the veth pairs; one `ip -n <ns> -batch` per namespace (all concurrently) configures links, addresses
    and routes; `sysctl` turns forwarding on in each node (off in the bastion); then a poll waits until every
    segment link is operational. On any failure the half-built lab is swept again.
    """
    sweep(spec.prefix)
    topology = Topology(spec)
    try:
        netlink.host_batch(_host_lines(spec))
        batches = {topology.segment_ns: _segment_lines(spec), topology.bastion_ns: _bastion_lines(spec)}
        batches.update({topology.node_ns(n.name): _node_lines(spec, n) for n in spec.nodes})
        netlink.ns_batches(batches)
        netlink.set_forwarding({topology.bastion_ns: False, **{topology.node_ns(n.name): True for n in spec.nodes}})
        uplinks = {ns: [spec.interface] for ns in topology.namespaces() if ns != topology.segment_ns}
        netlink.wait_operational({topology.segment_ns: _ports(spec), **uplinks})
    except BaseException:
        sweep(spec.prefix)
        raise
    return topology


def measure_build_teardown(spec: TopologySpec, rounds: int = 5) -> dict[str, float]:
    """Build and tear down `spec` `rounds` times; seconds as median and max of each (for the lab benchmark)."""
    builds: list[float] = []
    teardowns: list[float] = []
    for _ in range(rounds):
        start = time.perf_counter()
        topology = build(spec)
        middle = time.perf_counter()
        topology.teardown()
        builds.append(middle - start)
        teardowns.append(time.perf_counter() - middle)
    return {
        "build_s_median": statistics.median(builds),
        "build_s_max": max(builds),
        "teardown_s_median": statistics.median(teardowns),
        "teardown_s_max": max(teardowns),
        "rounds": float(rounds),
    }

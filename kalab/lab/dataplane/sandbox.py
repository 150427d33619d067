"""Pod sandboxes: a network namespace per (non-hostNetwork) pod, wired into its node like a CNI plugin would.

    node <prefix>master-0                        pod <prefix>pod-<hash>
    kalab-cni0 10.254.0.1/24 ── kalab-<hash> ═══ kalab-eth0 10.254.0.2/24, default via 10.254.0.1

The kernel is the record: the node-side veth carries the alias ``<pod_key>@<ip>``, so `list_sandboxes` (and the
address allocator) read the live state instead of trusting a file that a crash could leave stale. hostNetwork pods
get no namespace of their own; their Sandbox simply points at the node's namespace and address.
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass
from typing import Any

from kalab.lab.dataplane import naming, netlink
from kalab.lab.dataplane.topology import Topology
from kalab.model.errors import KalabError

_ALIAS_SEPARATOR = "@"  # not allowed in pod keys, so "<pod_key>@<ip>" splits unambiguously


@dataclass(frozen=True)
class Sandbox:
    """Where a pod's network lives: `netns` to `ip netns exec` into, its `ip`, and the interface carrying it."""

    pod_key: str
    node: str
    netns: str
    ip: str
    interface: str
    host_network: bool = False
    prefixlen: int = 32
    host_link: str | None = None  # the node-side veth end; None for hostNetwork pods
    gateway: str | None = None  # the pod's default route; None for hostNetwork pods

    @property
    def cidr(self) -> str:
        return f"{self.ip}/{self.prefixlen}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sandbox:
        return cls(**data)


def _pod_sandbox(topology: Topology, node: str, pod_key: str, ip: str) -> Sandbox:
    spec = topology.node(node)
    return Sandbox(
        pod_key=pod_key,
        node=node,
        netns=naming.pod_ns(topology.prefix, pod_key),
        ip=ip,
        interface=naming.POD_INTERFACE,
        prefixlen=ipaddress.IPv4Network(spec.pod_cidr).prefixlen,
        host_link=naming.pod_host_link(pod_key),
        gateway=spec.pod_gateway,
    )


def host_network_sandbox(topology: Topology, node: str, pod_key: str = "") -> Sandbox:
    """A hostNetwork pod's view: the node's own namespace, uplink and address (nothing is created)."""
    spec = topology.node(node)
    return Sandbox(
        pod_key=pod_key,
        node=node,
        netns=topology.node_ns(node),
        ip=spec.ip,
        interface=topology.interface,
        host_network=True,
        prefixlen=ipaddress.IPv4Interface(spec.address).network.prefixlen,
    )


def list_sandboxes(topology: Topology, node: str | None = None) -> list[Sandbox]:
    """The pod sandboxes the kernel knows of, on one node or all, ordered by node then IP."""
    found = []
    names = [node] if node is not None else topology.node_names
    query = ("link", "show", "master", naming.POD_BRIDGE)
    for name, links in zip(names, netlink.ip_json_each([(topology.node_ns(n), query) for n in names]), strict=True):
        for link in links:
            pod_key, separator, ip = str(link.get("ifalias", "")).rpartition(_ALIAS_SEPARATOR)
            if separator and link.get("ifname") == naming.LINK_PREFIX + naming.pod_hash(pod_key):
                found.append(_pod_sandbox(topology, name, pod_key, ip))
    return sorted(found, key=lambda s: (topology.node_names.index(s.node), ipaddress.IPv4Address(s.ip)))


def find_sandbox(topology: Topology, pod_key: str) -> Sandbox | None:
    """The sandbox of `pod_key` on any node, or None."""
    return next((s for s in list_sandboxes(topology) if s.pod_key == pod_key), None)


def _next_free_ip(topology: Topology, node: str, taken: set[str]) -> str:
    """Lowest free address of the node's pod subnet: deterministic, and freed addresses are reused first.

    hosts() already leaves out the network and broadcast addresses; the first host is the node's bridge.
    """
    spec = topology.node(node)
    for host in ipaddress.IPv4Network(spec.pod_cidr).hosts():
        if str(host) != spec.pod_gateway and str(host) not in taken:
            return str(host)
    raise KalabError(f"The pod subnet {spec.pod_cidr} of {node} is full; delete some pods or use a larger subnet.")


def create_sandbox(topology: Topology, node: str, pod_key: str, *, host_network: bool = False) -> Sandbox:
    """Give the pod `pod_key` (e.g. ``demo/test-0``) its network on `node`; asking again returns the same sandbox.

    The namespace is ``<prefix>pod-<hash of pod_key>`` and the pod's address the lowest free one of the node's pod
    subnet. Like `build`: the host `ip -batch` creates the namespace and the veth with its ends already inside node
    and pod; then the node side (alias, bridge port) and the pod side (address, route) are configured concurrently.
    Allocation is serialised by `topology.lock`, so one process (the lab's kubelet) should create the sandboxes.
    """
    if host_network:
        return host_network_sandbox(topology, node, pod_key)
    naming.check_pod_key(pod_key)
    with topology.lock:
        existing = list_sandboxes(topology, node)
        mine = next((s for s in existing if s.pod_key == pod_key), None)
        if mine is not None and netlink.netns_exists(mine.netns):
            return mine
        _clear_stale(topology, node, pod_key)
        # Whatever an interrupted earlier attempt left on this node (a link whose pod side is gone) goes too.
        netlink.delete_link(topology.node_ns(node), naming.pod_host_link(pod_key))
        taken = {s.ip for s in existing if s.pod_key != pod_key}
        sandbox = _pod_sandbox(topology, node, pod_key, _next_free_ip(topology, node, taken))
        try:
            _wire(topology, sandbox)
        except BaseException:
            _unwire(topology, sandbox)
            raise
        return sandbox


def _clear_stale(topology: Topology, node: str, pod_key: str) -> None:
    """Refuse a pod that lives on another node or whose hash collides; remove a crashed, half-made namespace."""
    ns = naming.pod_ns(topology.prefix, pod_key)
    if not netlink.netns_exists(ns):
        return
    for other in list_sandboxes(topology):
        if other.netns == ns and other.pod_key == pod_key:
            raise KalabError(f"Pod {pod_key} already has a sandbox on {other.node}; delete it before moving the pod.")
        if other.netns == ns:
            raise KalabError(f"Pods {other.pod_key} and {pod_key} hash to the same sandbox {ns}; rename one of them.")
    netlink.delete_netns([ns])


def _wire(topology: Topology, sandbox: Sandbox) -> None:
    assert sandbox.host_link is not None and sandbox.gateway is not None
    node_ns, mtu = topology.node_ns(sandbox.node), topology.spec.pod_mtu
    netlink.host_batch(
        [
            f"netns add {sandbox.netns}",
            f"link add {sandbox.host_link} netns {node_ns} mtu {mtu} "
            f"type veth peer name {sandbox.interface} netns {sandbox.netns} mtu {mtu}",
        ]
    )
    netlink.ns_batches(
        {
            node_ns: [
                f"link set dev {sandbox.host_link} alias {sandbox.pod_key}{_ALIAS_SEPARATOR}{sandbox.ip}",
                f"link set dev {sandbox.host_link} master {naming.POD_BRIDGE} up",
            ],
            sandbox.netns: [
                "link set lo up",
                f"link set dev {sandbox.interface} up",
                f"addr add {sandbox.cidr} dev {sandbox.interface}",
                f"route add default via {sandbox.gateway} dev {sandbox.interface}",
            ],
        }
    )
    netlink.wait_operational({node_ns: [sandbox.host_link], sandbox.netns: [sandbox.interface]})


def _unwire(topology: Topology, sandbox: Sandbox) -> None:
    # Deleting the node-side end first removes both ends at once, even if something still holds the pod's
    # namespace (a process the supervisor has not stopped yet), so no orphaned veth can stay on the node.
    assert sandbox.host_link is not None
    netlink.delete_link(topology.node_ns(sandbox.node), sandbox.host_link)
    left = netlink.delete_netns([sandbox.netns])
    if left:
        raise KalabError(f"Could not delete the sandbox namespace {left[0]}; remove it with `ip netns del`.")


def delete_sandbox(topology: Topology, sandbox: Sandbox | str) -> None:
    """Remove a pod's sandbox (given as the Sandbox or its pod key); its address becomes free. Deleting twice,
    or a hostNetwork sandbox, does nothing."""
    if isinstance(sandbox, str):
        found = find_sandbox(topology, sandbox)
        if found is None:
            stale = naming.pod_ns(topology.prefix, sandbox)
            if netlink.netns_exists(stale):
                netlink.delete_netns([stale])
            return
        sandbox = found
    if sandbox.host_network:
        return
    with topology.lock:
        _unwire(topology, sandbox)

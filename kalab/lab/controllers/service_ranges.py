"""The ranges a Service draws from, as pure functions of the network config `networks.config.openshift.io/cluster`:
its service network (cluster IPs), the node port range, and `spec.externalIP` (the auto-assign block and the
policy on requested external IPs); and how a free address or port is picked from each.

services.py applies them when a Service is written (admission) and when LoadBalancer addresses are handed out.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kalab.model import objects

DEFAULT_SERVICE_NETWORK = "172.30.0.0/16"
NODE_PORT_MIN, NODE_PORT_MAX = 30000, 32767


def _networks(texts: Iterable[Any]) -> list[ipaddress.IPv4Network]:
    """IPv4 blocks from CIDR strings; host bits are masked off (172.21.6.33/27 is 172.21.6.32/27), junk skipped."""
    found: list[ipaddress.IPv4Network] = []
    for text in texts:
        try:
            net = ipaddress.ip_network(str(text), strict=False)
        except ValueError:
            continue
        if isinstance(net, ipaddress.IPv4Network):
            found.append(net)
    return found


def service_network(config: Mapping[str, Any] | None) -> ipaddress.IPv4Network:
    nets = _networks(objects.spec(config).get("serviceNetwork") or [])
    return nets[0] if nets else ipaddress.IPv4Network(DEFAULT_SERVICE_NETWORK)


def _external_ip(config: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return objects.spec(config).get("externalIP") or {}


def auto_assign_block(config: Mapping[str, Any] | None) -> ipaddress.IPv4Network | None:
    """The block LoadBalancer addresses come from (OpenShift uses the first entry of autoAssignCIDRs)."""
    nets = _networks(_external_ip(config).get("autoAssignCIDRs") or [])
    return nets[0] if nets else None


@dataclass(frozen=True)
class ExternalIPPolicy:
    """`spec.externalIP.policy`: rejectedCIDRs win over allowedCIDRs; no policy (or an empty one) allows nothing."""

    allowed: tuple[ipaddress.IPv4Network, ...] = ()
    rejected: tuple[ipaddress.IPv4Network, ...] = ()
    present: bool = False

    @classmethod
    def of(cls, config: Mapping[str, Any] | None) -> ExternalIPPolicy:
        policy = _external_ip(config).get("policy")
        if not isinstance(policy, Mapping):
            return cls()
        allowed = tuple(_networks(policy.get("allowedCIDRs") or []))
        return cls(allowed, tuple(_networks(policy.get("rejectedCIDRs") or [])), present=True)

    def refusal(self, ip: ipaddress.IPv4Address) -> str | None:
        """Why `ip` may not be requested, or None when the policy allows it."""
        if not self.allowed and not self.rejected:
            if not self.present:
                return (
                    "the network config networks.config.openshift.io/cluster has no spec.externalIP.policy, and "
                    "without one every requested external IP is rejected; set policy.allowedCIDRs"
                )
            return "spec.externalIP.policy lists no allowedCIDRs or rejectedCIDRs, so every external IP is rejected"
        for net in self.rejected:
            if ip in net:
                return f"{ip} is in spec.externalIP.policy.rejectedCIDRs ({net})"
        if self.allowed and not any(ip in net for net in self.allowed):
            listed = ", ".join(str(n) for n in self.allowed)
            return f"{ip} is not in spec.externalIP.policy.allowedCIDRs [{listed}]"
        return None


def _offset(seed: str, size: int) -> int:
    # kube-apiserver starts at a random offset; a hash of the service's name is as spread out and repeatable.
    return int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big") % size


def pick_cluster_ip(network: ipaddress.IPv4Network, used: set[str], seed: str) -> str | None:
    """A free address of the service network, never its network address, .1 (the `kubernetes` service's) or
    broadcast; None when the network is full."""
    first = int(network.network_address) + 2
    size = int(network.broadcast_address) - first
    if size <= 0:
        return None
    start = _offset(seed, size)
    for step in range(size):
        candidate = str(ipaddress.IPv4Address(first + (start + step) % size))
        if candidate not in used:
            return candidate
    return None


def pick_node_port(used: set[int], seed: str) -> int | None:
    size = NODE_PORT_MAX - NODE_PORT_MIN + 1
    start = _offset(seed, size)
    for step in range(size):
        candidate = NODE_PORT_MIN + (start + step) % size
        if candidate not in used:
            return candidate
    return None


def first_free(block: ipaddress.IPv4Network, used: set[str]) -> str | None:
    """The lowest usable address of `block` (network and broadcast excluded, as hosts() does) not in `used`."""
    hosts = block.hosts() if block.prefixlen < 31 else iter(block)
    return next((str(ip) for ip in hosts if str(ip) not in used), None)

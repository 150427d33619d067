"""kube-proxy for lab nodes: each node's nat table follows the services and endpoints it is given.

The rules come from `kalab.model.kubeproxy`; this module only loads them. A full `iptables-restore` of the nat
table is atomic (the kernel swaps the whole table) and idempotent (same services, same table), and it is safe
here because a lab node namespace has no nat rules of anyone else's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from kalab.lab.dataplane.netlink import run_in
from kalab.lab.dataplane.topology import Topology
from kalab.model.errors import KalabError
from kalab.model.kubeproxy import ServicePort, nat_rules


def program_node(topology: Topology, node: str, services: Iterable[ServicePort]) -> str:
    """Replace `node`'s nat table with the rules for `services`; returns the document that was loaded."""
    spec = topology.spec.node(node)
    document = nat_rules(services, node_ip=spec.ip, cluster_cidr=topology.spec.cluster_network, node_name=node)
    result = run_in(topology.node_ns(node), ["iptables-restore"], input=document, check=False)
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise KalabError(f"iptables-restore refused the nat rules on {node}: {reason}")
    return document


def program_all(topology: Topology, services: Iterable[ServicePort]) -> Mapping[str, str]:
    """Program every node with the same services, as kube-proxy on each node would."""
    ports = list(services)
    return {node: program_node(topology, node, ports) for node in topology.node_names}


def nat_table(topology: Topology, node: str) -> str:
    """`iptables-save -t nat` as the node sees it (what `oc debug node/…` would show)."""
    return run_in(topology.node_ns(node), ["iptables-save", "-t", "nat"]).stdout
